"""The weight-stationary systolic array: ``rows x cols`` INT8 multiply-accumulate cells.

Dataflow (Ref: Jouppi et al., "In-Datacenter Performance Analysis of a Tensor
Processing Unit", ISCA 2017; Genc et al., "Gemmini", DAC 2021)::

    x[0] ─▶ PE(0,0) ─▶ PE(0,1) ─▶ ... ─▶ PE(0,C-1)        x flows right
    x[1] ─▶ PE(1,0) ─▶ PE(1,1) ─▶ ...                       psum flows down
      ...      │          │
               ▼          ▼
            psum[0]    psum[1]  ...  psum[C-1]

``PE(r, c)`` holds the weight ``w[c][r]`` (output channel ``c``, input channel ``r``)
in one of two banks. An input word is one pixel: ``rows`` zero-point corrected
codes ``x[r] = code[r] - x_zp``. Row ``r`` enters ``r`` cycles late (the skew) so it
meets the partial sum of rows ``0..r-1`` of the same pixel; column ``c`` leaves the
bottom ``c`` cycles late and is deskewed, so ``o_psum`` carries
``psum[c] = sum_r x[r] * w[c][r]`` for all columns of one pixel at once.

Double buffering: every input word names the weight bank it uses, and that bank bit
travels through the array with the word, so two taps with different weights can be
in flight on the same diagonal. ``i_weight`` writes one whole bank of every PE in
one cycle (a broadcast of the ``cols x rows`` weight word). Writing a bank is safe
from :attr:`SystolicArray.WEIGHT_GAP` cycles after the last word that used it
entered; the sequencer enforces this (it costs nothing while a tap streams at least
``WEIGHT_GAP`` pixels).

Packed (``packed=True``, Xilinx WP486): columns ``2k`` and ``2k + 1`` share their
activation, so one multiplier serves both. PE pair ``(r, k)`` holds the 27-bit weight
``W = w[2k+1][r] * 2**S + w[2k][r]`` (``S = 15 + log2(rows)``) and multiplies it by the
8-bit ``x[r]``; the pair's partial sum carries both lanes, ``H * 2**S + L``, down the
column, and the bottom splits it: ``L = signext(P[0:S])``, ``H = (P >> S) + P[S-1]`` (a
negative low lane borrowed one from the high lane). Exact while every ``|L|, |H| <
2**(S-1)``: 8-bit ``x`` (the compiler picks ``in_zp`` so that ``x - in_zp`` is 8-bit)
and weights in ``[-127, 127]`` (onnxruntime's symmetric int8 range; the compiler
refuses -128). One DSP48E2 per pair: ``x * W`` is 8 x 27 bits, the column sum its
post-adder cascade. Depthwise in a packed array: pair ``k`` computes channel ``k`` in
its low lane, so its WGT word holds channel ``k``'s taps in column ``2k`` and zeros in
column ``2k + 1`` (``AcceleratorConfig.depthwise_column_step``), and the bottom routes
the lane to column ``k``; ``rows`` channels need ``cols / 2 >= rows`` pairs. The array
is ``cols / 2`` DSP columns wide: ``LATENCY = rows + cols / 2 + 2``.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SystolicArray", "weight_layout", "input_layout"]


def weight_layout(rows, cols):
    """One WGT word: ``w[c][r]``, byte ``c * rows + r`` of the word (output channel major)."""
    return data.ArrayLayout(data.ArrayLayout(signed(8), rows), cols)


def input_layout(rows, x_width=9):
    """One zero-point corrected pixel entering the array: ``rows`` signed values."""
    return data.ArrayLayout(signed(x_width), rows)


class SystolicArray(wiring.Component):
    """Weight-stationary ``rows x cols`` array of signed multiply-accumulate cells.

    Parameters
    ----------
    rows : int
        Input channels consumed per cycle (``config.rows``).
    cols : int
        Output channels produced per cycle (``config.cols``).
    x_width : int
        Width of the signed activations (9: an 8-bit code minus an 8-bit zero point).
    tag_shape : shape
        Side data carried from ``i_data`` to ``o_psum`` unchanged (the sequencer's
        accumulator address), so the consumer needs no delay line of its own.
    packed : bool
        Two multiplies per DSP48E2 (``config.dsp_packing``): needs an even ``cols``,
        ``rows <= 16``; only the low 8 bits of each ``x`` are used.
    dw_channels : int or None
        Depthwise channels (``config.depthwise_channels``), at most the multiplier
        columns (``cols``, packed ``cols / 2``); ``None``: as many as rows fit.
    dw_groups : int
        Depthwise row groups (``config.depthwise_groups``), dividing ``rows``.

    Attributes
    ----------
    LATENCY : int
        A word accepted on ``i_data`` in cycle ``t`` appears on ``o_psum`` in cycle
        ``t + LATENCY`` (``rows + cols + 2``; packed ``rows + cols / 2 + 2``: the
        skew, one cycle per PE, and the PE's operand and product registers).
    WEIGHT_GAP : int
        Cycles from the last ``i_data`` word using a bank to the earliest safe
        ``i_weight`` write of that bank (``LATENCY - 1``: a PE reads its weight bank two
        cycles before its sum, so this is two cycles conservative).

    Members
    -------
    i_data : ``In(stream.Signature({x, dw, bank, tag}, always_ready=True))``
        ``x``: the dense word (``rows`` values); ``dw``: the depthwise words,
        ``dw_groups x dw_channels`` values (group ``g`` is one input row).
    i_weight : ``In(stream.Signature({w, bank}, always_ready=True))``
        ``valid`` writes ``w`` (:func:`weight_layout`) into ``bank`` of every PE.
    depthwise : ``In(1)``
        Depthwise mode, held while words are in flight: ``PE(r, c)`` multiplies
        channel ``c`` of ``i_data.payload.dw[g]``, the group ``g`` of row ``r``, entered
        ``r`` cycles after the output's own word (``c < dw_channels``), so ``psum[c]`` of
        word ``t`` is ``sum_r dw_{t+r}[g(r)][c] * w[c][r]``: rows are the horizontal taps
        of a 1-D convolution along the stream. Packed: channel ``c``'s weights in column
        ``2c``, its sum in the pair's low lane, routed to column ``c``.
    dw_grouped : ``In(1)``
        With ``depthwise``: row ``r`` belongs to group ``g(r) = r // (rows / dw_groups)``
        and hears group ``g``'s stream ``g * rows / dw_groups`` cycles late (the partial
        sum reaches the group that much later), so each group is a 1-D convolution of
        its own input row and the column adds them. Else every row hears group 0.
    o_psum : ``Out(stream.Signature({psum, tag}, always_ready=True))``
        ``psum`` is ``cols`` int32; the consumer cannot stall the array.
    """

    def __init__(
        self, rows, cols, *, x_width=9, tag_shape=1, packed=False, dw_channels=None, dw_groups=1
    ):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(x_width, int) or not 2 <= x_width <= 18:
            raise ValueError(f"x_width must be an integer from 2 to 18, not {x_width!r}")
        if packed and (cols % 2 or rows > 16 or x_width < 8):
            raise ValueError(
                f"a packed array needs an even cols, rows <= 16 and "
                f"x_width >= 8, not {rows} x {cols}, x_width {x_width}"
            )
        mult_cols = cols // 2 if packed else cols
        if dw_channels is None:
            dw_channels = min(rows, mult_cols)
        if not isinstance(dw_channels, int) or not 1 <= dw_channels <= mult_cols:
            raise ValueError(
                f"dw_channels must be an integer from 1 to {mult_cols}, not {dw_channels!r}"
            )
        if not isinstance(dw_groups, int) or dw_groups < 1 or rows % dw_groups:
            raise ValueError(f"dw_groups must divide rows ({rows}), not {dw_groups!r}")
        self.rows, self.cols, self.x_width, self.packed = rows, cols, x_width, packed
        self.dw_channels, self.dw_groups = dw_channels, dw_groups
        self.LATENCY = rows + (cols // 2 if packed else cols) + 2
        self.WEIGHT_GAP = self.LATENCY - 1
        # A product needs x_width + 8 bits; a column sum of `rows` products needs
        # log2(rows) more. Keep the chain narrow and sign-extend once at the bottom.
        # Packed: each lane holds |sum| <= rows * 128 * 127 < 2**(S - 1).
        self.lane_shift = 15 + (rows - 1).bit_length()
        self.psum_width = (
            2 * self.lane_shift + 1 if packed else x_width + 8 + (rows - 1).bit_length()
        )
        super().__init__(
            {
                "i_data": In(
                    stream.Signature(
                        data.StructLayout(
                            {
                                "x": input_layout(rows, x_width),
                                "dw": data.ArrayLayout(
                                    input_layout(dw_channels, x_width), dw_groups
                                ),
                                "bank": 1,
                                "tag": tag_shape,
                            }
                        ),
                        always_ready=True,
                    )
                ),
                "i_weight": In(
                    stream.Signature(
                        data.StructLayout(
                            {
                                "w": weight_layout(rows, cols),
                                "bank": 1,
                            }
                        ),
                        always_ready=True,
                    )
                ),
                "depthwise": In(1),
                "dw_grouped": In(1),
                "o_psum": Out(
                    stream.Signature(
                        data.StructLayout(
                            {
                                "psum": data.ArrayLayout(signed(32), cols),
                                "tag": tag_shape,
                            }
                        ),
                        always_ready=True,
                    )
                ),
            }
        )

    def elaborate(self, platform):
        m = Module()
        R = self.rows
        # Multiplier columns: one per output column, or one per column pair when packed.
        C = self.cols // 2 if self.packed else self.cols

        # Stage 0: skew. Row r waits r cycles so it meets the partial sum of rows
        # 0..r-1 of the same pixel, which reaches row r one cycle per row later.
        left_x, left_b = [], []
        for r in range(R):
            x, b = self.i_data.payload.x[r], self.i_data.payload.bank
            for k in range(r):
                x_d = Signal(signed(self.x_width), name=f"skew_x{r}_{k}")
                b_d = Signal(name=f"skew_b{r}_{k}")
                m.d.sync += [x_d.eq(x), b_d.eq(b)]
                x, b = x_d, b_d
            left_x.append(x)
            left_b.append(b)

        # Stage 1 .. R+C+1: the PE grid. PE(r, c) sees the pixel entered in cycle t
        # during cycle t + r + c + 1 and registers its operands at the end of it, its
        # product at the end of the next and its partial sum at the end of the third.
        grid = {
            (r, c): (
                Signal(signed(self.x_width), name=f"pe{r}_{c}_x"),
                Signal(name=f"pe{r}_{c}_bank"),
            )
            for r in range(R)
            for c in range(C)
        }
        for (r, c), (a, b) in grid.items():
            src_x, src_b = (left_x[r], left_b[r]) if c == 0 else grid[r, c - 1]
            m.d.sync += [a.eq(src_x), b.eq(src_b)]

        # Depthwise: column c instead hears channel c of the word entered c + 1 cycles
        # ago, on all rows at once. The partial sum still steps down one row per
        # cycle, so the wavefront of the word entered in cycle t meets, in row r, the
        # word entered in cycle t + r: a transposed FIR whose taps are the rows.
        # Group g (rows g*Rg ..) hears its own stream g*Rg cycles later still.
        N, G = self.dw_channels, self.dw_groups
        Rg = R // G

        def delayed(v, n, name):
            for k in range(n):
                v_d = Signal.like(v, name=f"{name}_{k}")
                m.d.sync += v_d.eq(v)
                v = v_d
            return v

        col = {}  # (g, c) -> (x, bank) of PE column c's depthwise input for group g
        for c in range(N):
            bank = self.i_data.payload.bank
            for g in range(G):
                bank = delayed(bank, c + 1 if g == 0 else Rg, f"col_b{c}_{g}")
                col[g, c] = (
                    delayed(self.i_data.payload.dw[g][c], c + 1 + g * Rg, f"col_x{c}_{g}"),
                    bank,
                )

        def dw_input(r, c):
            if c >= N:
                return 0, 0
            if r < Rg:
                return col[0, c]
            (x0, b0), (xg, bg) = col[0, c], col[r // Rg, c]
            return Mux(self.dw_grouped, xg, x0), Mux(self.dw_grouped, bg, b0)

        bottom = []
        for c in range(C):
            above = 0
            for r in range(R):
                dx, db = dw_input(r, c)
                a = Mux(self.depthwise, dx, grid[r, c][0])
                b = Mux(self.depthwise, db, grid[r, c][1])
                w_in = self.i_weight.payload.w
                if self.packed:
                    # W = w_hi * 2**S + w_lo, built once per weight write. Depthwise
                    # words hold channel c in column 2c and 0 in 2c + 1: the low lane.
                    a = a[:8].as_signed()
                    new_w = (w_in[2 * c + 1][r] << self.lane_shift) + w_in[2 * c][r]
                    w_shape = signed(8 + self.lane_shift)
                else:
                    new_w, w_shape = w_in[c][r], signed(8)
                w = [Signal(w_shape, name=f"pe{r}_{c}_w{k}") for k in range(2)]
                s = Signal(signed(self.psum_width), name=f"pe{r}_{c}_psum")
                with m.If(self.i_weight.valid):
                    with m.If(self.i_weight.payload.bank):
                        m.d.sync += w[1].eq(new_w)
                    with m.Else():
                        m.d.sync += w[0].eq(new_w)
                # The multiplier's operands and its product are registers (the DSP48E2's
                # AREG/BREG and MREG): the mode and bank multiplexers and the column's
                # adder each get a cycle of their own.
                a_reg = Signal(signed(len(a)), name=f"pe{r}_{c}_a")
                w_reg = Signal(w_shape, name=f"pe{r}_{c}_wsel")
                prod = Signal(signed(len(a) + len(w_reg)), name=f"pe{r}_{c}_prod")
                m.d.sync += [
                    a_reg.eq(a),
                    w_reg.eq(Mux(b, w[1], w[0])),
                    prod.eq(a_reg * w_reg),
                    s.eq(above + prod),
                ]
                above = s
            bottom.append(above)
        # Stage R+C+2: deskew. Column c leaves c cycles before column C-1; delay it so
        # one output word holds one pixel.
        out = []
        for c in range(C):
            v = bottom[c]
            for k in range(C - 1 - c):
                v_d = Signal(signed(self.psum_width), name=f"deskew{c}_{k}")
                m.d.sync += v_d.eq(v)
                v = v_d
            out.append(v)
        if not self.packed:
            for c in range(C):
                m.d.comb += self.o_psum.payload.psum[c].eq(out[c])
        else:
            # Split each pair's lanes; depthwise routes pair k's low lane to column k.
            S = self.lane_shift
            lanes = []
            for c in range(C):
                lo = Signal(signed(S), name=f"lane{2 * c}")
                hi = Signal(signed(self.psum_width - S + 1), name=f"lane{2 * c + 1}")
                m.d.comb += [lo.eq(out[c][:S].as_signed()), hi.eq((out[c] >> S) + out[c][S - 1])]
                lanes += [lo, hi]
            for c in range(self.cols):
                dw = lanes[2 * c] if c < N else 0
                m.d.comb += self.o_psum.payload.psum[c].eq(Mux(self.depthwise, dw, lanes[c]))

        # valid and tag ride a delay line of LATENCY registers beside the data.
        valid, tag = self.i_data.valid, self.i_data.payload.tag
        for k in range(self.LATENCY):
            valid_d = Signal(name=f"valid_d{k}")
            tag_d = Signal.like(self.i_data.payload.tag, name=f"tag_d{k}")
            m.d.sync += [valid_d.eq(valid), tag_d.eq(tag)]
            valid, tag = valid_d, tag_d
        m.d.comb += [self.o_psum.valid.eq(valid), self.o_psum.payload.tag.eq(tag)]
        return m
