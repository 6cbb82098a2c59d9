"""The depthwise engine: line buffers and a ``k x k`` window per channel lane per cycle.

Engine generation 2 (issue 15, docs/engine2.md): depthwise convolutions off the systolic
array, as the DPU and most published MobileNet accelerators run them. Standalone and
tested here; not yet wired into the accelerator (docs/engine2.md says what that needs).

Dataflow for one frame of one channel block (``lanes`` channels, NHWC pixels)::

    i_pixel ─▶ x - x_zp ─┬──────────────────────────────▶ col[k-1]     window
                         └▶ line buffer k-2 ─▶ col[k-2]   ──────────▶  k x k x lanes
              line buffer j+1 ─▶ line buffer j ─▶ col[j]                  │ x w
                                                                        adder trees
                                                                          ▼
                                                 credit-gated FIFO ─▶ o_acc (int32)

The engine scans the *padded* frame (``pad_top + height + pad_bottom`` rows of
``pad_left + width + pad_right`` columns) in raster order, one position per cycle. A
position inside the image takes one ``i_pixel`` beat; a padding position takes none and
enters 0, the zero-point corrected code of ``x_zp`` (the real zero, Ref:
../shared/numerics.md, "Conv": padding uses ``x_zp``), exactly as the array's
``x - x_zp`` path (hw/compute.py). Each position's ``k``-high column (``k - 1`` rows from
the line buffers, one new) shifts into the window; positions ``(r, c)`` with
``r, c >= k - 1`` that the stride keeps emit ``acc[l] = sum_{ky,kx} win[ky][kx][l] *
w[l][ky][kx]``, the accumulator of output pixel ``((r - k + 1) / s, (c - k + 1) / s)``.
Bias and requantization follow in hw/postproc.py (its lanes take ``acc`` and add the
bias), as for the array.

A kernel smaller than ``kernel`` (3x3 on a 5x5 engine) runs embedded: its taps in the
centre, zeros around, and ``(kernel - kh) / 2`` more padding on every side
(:func:`embed_kernel`). That is the same convolution.

Flow control: the datapath is a free-running pipeline (no clock enable on the adder
trees). A position that emits is admitted only with a credit, i.e. when the output FIFO
is sure to have room, so ``i_pixel.ready`` is a register compare with no combinational
path from ``o_acc.ready``; input bubbles stall the scan, not the pipeline.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from bamboo.arch import AcceleratorConfig
from bamboo.hw.pipeline import delay_chain, register

__all__ = ["DepthwiseEngine", "embed_kernel", "params_layout"]

#: ``x - x_zp`` of 8-bit codes and zero points, signed or unsigned: -255..255.
X_WIDTH = 9


def embed_kernel(w, kernel):
    """``(w', extra_pad)``: the ``(..., kh, kw)`` taps ``w`` centred in a ``kernel x kernel``
    grid of zeros, and the padding each side gains (``(kernel - kh) // 2``)."""
    import numpy as np

    w = np.asarray(w)
    kh, kw = w.shape[-2:]
    if kh != kw or kh % 2 == 0 or kh > kernel:
        raise ValueError(f"kernel must be square, odd and at most {kernel}, not {kh} x {kw}")
    e = (kernel - kh) // 2
    out = np.zeros((*w.shape[:-2], kernel, kernel), dtype=w.dtype)
    out[..., e : e + kh, e : e + kw] = w
    return out, e


def params_layout(lanes, kernel, width):
    """One frame's parameters (an ``i_params`` beat)."""
    dim = range(width + 1)
    pad = range(kernel)
    return data.StructLayout(
        {
            "width": dim,  # image columns (without padding)
            "height": unsigned(16),  # image rows
            "pad_top": pad,
            "pad_left": pad,
            "pad_bottom": pad,
            "pad_right": pad,
            "stride2": 1,  # 0: stride 1, 1: stride 2
            "signed": 1,  # codes and zero point int8 (else uint8)
            "zp": unsigned(8),  # input zero point, as CONV.in_zp
            # w[l][ky * kernel + kx]: channel lane l's taps.
            "w": data.ArrayLayout(data.ArrayLayout(signed(8), kernel * kernel), lanes),
        }
    )


def _lut_partials(x, w):
    """``x * w`` (signed 8-bit ``w``) in LUTs as two halves to register before their sum,
    so synthesis infers no DSP48E2. Radix-4 Booth: ``w = sum_i d_i 4**i`` with digits
    ``d_i = -2 w[2i+1] + w[2i] + w[2i-1]`` in -2..2, four partial products ``d_i x``
    instead of eight. A negative digit adds ``~|d_i x| = -|d_i x| - 1`` and its carry-in
    ``+1`` separately (one small constant per half), so no partial product needs a negator.
    Ref: Booth, "A signed binary multiplication technique" (1951); MacSorley (1961)."""
    partials = []
    for i in range(len(w) // 2):
        b2, b1 = w[2 * i + 1], w[2 * i]
        b0 = w[2 * i - 1] if i else 0
        one = b1 ^ b0
        two = (b2 & ~b1 & ~b0) | (~b2 & b1 & b0)
        neg = b2 & ~(b1 & b0)
        mag = Mux(one, x, Mux(two, x << 1, 0))
        partials.append((Mux(neg, ~mag, mag) << (2 * i), neg << (2 * i)))
    return [p0 + p1 + (c0 | c1) for (p0, c0), (p1, c1) in (partials[:2], partials[2:])]


class DepthwiseEngine(wiring.Component):
    """Depthwise convolution of one channel block: ``lanes`` windows per cycle.

    Parameters
    ----------
    lanes : int
        Channels per cycle (``cfg.dw_lanes``), a power of two.
    kernel : int
        Kernel height and width (``cfg.dw_kernel``): 3 or 5.
    width : int
        Longest padded row (``cfg.dw_width``): the line buffers' depth.
    multiplier : str
        ``"dsp"``: ``*`` (Yosys infers one DSP48E2 per 9 x 8 product); ``"lut"``:
        shift-and-add in LUTs (:func:`_lut_partials`), registered halfway.

    Attributes
    ----------
    LATENCY : int
        Cycles from the last input beat of an output's window (its scan position) to
        that output on ``o_acc`` (valid, with ``o_acc.ready`` high).
    CREDITS : int
        Emitting positions admitted but not yet delivered (the FIFO depth).
    FRAME_GAP : int
        Idle cycles between two frames' scans when the next ``i_params`` beat waits: the
        last position passes stage 2, then the three setup steps.

    Members
    -------
    i_params : ``In(stream.Signature(params_layout(...)))``
        One beat per frame, taken when the engine is idle and held in registers for the
        frame (its geometry, zero point and the ``lanes x kernel**2`` weights).
        ``pad_* < kernel``; the padded width at most ``width`` and at least ``kernel``,
        the padded height at least ``kernel`` (the compiler checks; the engine trusts).
    i_pixel : ``In(stream.Signature(ArrayLayout(unsigned(8), lanes)))``
        The frame's ``height x width`` pixels in raster order, ``lanes`` channel codes a
        beat (NHWC, one pixel's channel block).
    o_acc : ``Out(stream.Signature(ArrayLayout(signed(32), lanes)))``
        The output pixels' int32 accumulators in raster order (no bias).
    busy : ``Out(1)``
        A frame is being scanned (outputs may still be in flight after it falls).
    """

    FRAME_GAP = 5

    def __init__(self, lanes, kernel=3, width=256, *, multiplier="dsp"):
        if not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
            raise ValueError(f"lanes must be a power of two, not {lanes!r}")
        if kernel not in (3, 5):
            raise ValueError(f"kernel must be 3 or 5, not {kernel!r}")
        if not isinstance(width, int) or width < 8 or width & (width - 1):
            raise ValueError(f"width must be a power of two of at least 8, not {width!r}")
        if multiplier not in ("dsp", "lut"):
            raise ValueError(f"multiplier must be 'dsp' or 'lut', not {multiplier!r}")
        self.lanes, self.kernel, self.width, self.multiplier = lanes, kernel, width, multiplier
        taps = kernel * kernel
        # Stage 1 x and line-buffer read, stage 2 window, stage 3 operands (DSP A/B),
        # stage 4 product (M), stage 5 product (P), then one register per adder level.
        self.tree_levels = (taps - 1).bit_length()
        # Then the FIFO: its write, its output register.
        self.LATENCY = 5 + self.tree_levels + 2
        self.CREDITS = 32
        self.acc_width = X_WIDTH + 8 + self.tree_levels
        super().__init__(
            {
                "i_params": In(stream.Signature(params_layout(lanes, kernel, width))),
                "i_pixel": In(stream.Signature(data.ArrayLayout(unsigned(8), lanes))),
                "o_acc": Out(stream.Signature(data.ArrayLayout(signed(32), lanes))),
                "busy": Out(1),
            }
        )

    @classmethod
    def from_config(cls, cfg, **kwargs):
        """The engine of ``cfg`` (``dw_lanes``, ``dw_kernel``, ``dw_width``)."""
        if not isinstance(cfg, AcceleratorConfig):
            raise TypeError(f"cfg must be an AcceleratorConfig, not {cfg!r}")
        if not cfg.dw_lanes:
            raise ValueError(f"config {cfg.name!r} has no depthwise engine (dw_lanes = 0)")
        return cls(cfg.dw_lanes, cfg.dw_kernel, cfg.dw_width, **kwargs)

    @staticmethod
    def scan_cycles(height, width, pads):
        """Cycles one frame's scan takes when the input never stalls: one per padded
        position, ``(pad_top + height + pad_bottom) * (pad_left + width + pad_right)``
        (``pads`` as ONNX: top, left, bottom, right); add :attr:`FRAME_GAP` between frames."""
        top, left, bottom, right = pads
        return (top + height + bottom) * (left + width + right)

    def elaborate(self, platform):
        m = Module()
        L, K = self.lanes, self.kernel
        assert self.CREDITS - 1 > self.LATENCY + 2  # else the credits limit the rate

        # Frame parameters, latched when a frame starts, and the scan positions where the
        # flags below change (one less: the flags are set a position ahead).
        prm = Signal(params_layout(L, K, self.width))
        rw, cw = 16 + 2, (self.width + 2 * K).bit_length()
        in_r, out_r, out_r2, last_r1 = (
            Signal(rw, name=n) for n in ("in_r", "out_r", "out_r2", "last_r1")
        )
        in_c, out_c, out_c2, last_c1 = (
            Signal(cw, name=n) for n in ("in_c", "out_c", "out_c2", "last_c1")
        )
        left0 = Signal()  # pad_left == 0: column 0 of every row is inside the image
        busy = Signal()
        fire = Signal()
        # The weights feed stage 3: the next frame's replace them once the last position
        # of this one has passed stage 2, so the engine is idle two cycles after a scan.
        valid = delay_chain(m, fire, 1)
        idle = Signal(init=1)
        start = Signal()
        m.d.comb += [
            self.busy.eq(busy),
            self.i_params.ready.eq(idle),
            start.eq(self.i_params.valid & idle),
        ]
        # A frame starts in three steps: `start` takes the beat, `begin` derives the scan
        # limits from the registered parameters (one adder each), `begin2` the last
        # position from those and starts the scan.
        begin, begin2 = Signal(), Signal()
        m.d.sync += [
            idle.eq(~busy & ~valid[1] & ~start & ~begin & ~begin2),
            begin.eq(start),
            begin2.eq(begin),
        ]
        with m.If(start):
            m.d.sync += prm.eq(self.i_params.payload)
        with m.If(begin):
            m.d.sync += [
                in_r.eq(prm.pad_top - 1),  # all ones (never reached) when 0
                in_c.eq(prm.pad_left - 1),
                out_r.eq(prm.pad_top + prm.height - 1),
                out_c.eq(prm.pad_left + prm.width - 1),
                out_r2.eq(prm.pad_top + prm.height - 2),
                out_c2.eq(prm.pad_left + prm.width - 2),
                left0.eq(prm.pad_left == 0),
            ]
        with m.If(begin2):
            m.d.sync += [
                busy.eq(1),
                last_r1.eq(out_r2 + prm.pad_bottom),  # padded height - 2
                last_c1.eq(out_c2 + prm.pad_right),  # padded width - 2
            ]

        # Stage 0: the scan. Position (r, c) of the padded frame. The flags are registers
        # updated a position ahead from equality compares, so the handshake is one or two
        # LUTs from flip-flops and no adder sits between a counter and a flag.
        r = Signal(rw)
        c = Signal(cw)
        row_in = Signal()  # pad_top <= r < pad_top + height
        col_in = Signal()  # pad_left <= c < pad_left + width
        row_emit = Signal()  # r >= K - 1 and the stride keeps row r
        col_emit = Signal()  # c >= K - 1 and the stride keeps column c
        # Credits: emitting positions in flight or in the FIFO. `room` lags the count by a
        # cycle, so it keeps one in reserve for the position admitted meanwhile.
        # Two free-running counters, so `fire` only enables an increment (no adder after it).
        taken = Signal(range(2 * self.CREDITS))
        given = Signal(range(2 * self.CREDITS))
        room = Signal()
        real = row_in & col_in
        emit = row_emit & col_emit
        can = busy & (~emit | room)
        m.d.comb += [
            self.i_pixel.ready.eq(can & real),
            fire.eq(can & (~real | self.i_pixel.valid)),
        ]
        give = self.o_acc.valid & self.o_acc.ready
        with m.If(fire & emit):
            m.d.sync += taken.eq(taken + 1)
        with m.If(give):
            m.d.sync += given.eq(given + 1)
        in_flight = (taken - given)[: len(taken)]  # modulo 2 * CREDITS
        m.d.sync += room.eq(in_flight < self.CREDITS - 1)

        def keeps_next(n):  # n + 1 >= K - 1 and, at stride 2, n + 1 - (K - 1) even (K odd)
            return (n >= K - 2) & (~prm.stride2 | n[0])

        def flag_next(flag, n, on, off):
            return Mux(n == on, 1, Mux(n == off, 0, flag))

        at_last_c = Signal()  # c is the last column (set a position ahead)
        at_last_r = Signal()  # r is the last row
        with m.If(fire):
            with m.If(at_last_c):
                m.d.sync += [
                    c.eq(0),
                    r.eq(r + 1),
                    at_last_c.eq(0),
                    at_last_r.eq(r == last_r1),
                    col_in.eq(left0),
                    col_emit.eq(0),
                    row_in.eq(flag_next(row_in, r, in_r, out_r)),
                    row_emit.eq(keeps_next(r)),
                ]
                with m.If(at_last_r):
                    m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [
                    c.eq(c + 1),
                    at_last_c.eq(c == last_c1),
                    col_in.eq(flag_next(col_in, c, in_c, out_c)),
                    col_emit.eq(keeps_next(c)),
                ]
        with m.If(begin2):  # a new frame starts at (0, 0)
            m.d.sync += [
                r.eq(0),
                c.eq(0),
                at_last_c.eq(0),
                at_last_r.eq(0),
                row_in.eq(prm.pad_top == 0),
                col_in.eq(left0),
                row_emit.eq(0),
                col_emit.eq(0),
            ]

        # Line buffers: buffer j holds row r - K + 1 + j at the columns not yet scanned
        # in row r. Read in stage 0 (synchronous), written back shifted in stage 1.
        lbs = []
        for j in range(K - 1):
            mem = Memory(shape=data.ArrayLayout(signed(X_WIDTH), L), depth=self.width, init=[])
            m.submodules[f"line{j}"] = mem
            rd, wr = mem.read_port(), mem.write_port()
            m.d.comb += rd.addr.eq(c)
            lbs.append((rd, wr))

        # Stage 1: x - x_zp (0 at padding positions), the buffered rows arrive.
        emits = delay_chain(m, fire & emit, self.LATENCY - 2, prefix="emit")
        zp = Mux(prm.signed, prm.zp.as_signed(), prm.zp)
        x1 = Signal(data.ArrayLayout(signed(X_WIDTH), L), reset_less=True)
        for lane in range(L):
            code = self.i_pixel.payload[lane]
            m.d.sync += x1[lane].eq(Mux(real, Mux(prm.signed, code.as_signed(), code) - zp, 0))
        c1 = register(m, c, "c1")
        col = [rd.data for rd, _ in lbs] + [x1]  # rows r - K + 1 .. r
        for j, (_, wr) in enumerate(lbs):
            m.d.comb += [wr.addr.eq(c1), wr.data.eq(col[j + 1]), wr.en.eq(valid[1])]

        # Stage 2: the window, win[ky][kx], shifted left by one column per position.
        win = [
            [
                Signal(data.ArrayLayout(signed(X_WIDTH), L), name=f"win{ky}_{kx}", reset_less=True)
                for kx in range(K)
            ]
            for ky in range(K)
        ]
        with m.If(valid[1]):
            for ky in range(K):
                for kx in range(K - 1):
                    m.d.sync += win[ky][kx].eq(win[ky][kx + 1])
                m.d.sync += win[ky][K - 1].eq(col[ky])

        # Stages 3-5: per lane and tap, operands, product, product (DSP48E2 A/B, M, P).
        sums = []
        for lane in range(L):
            prods = []
            for t in range(K * K):
                ky, kx = divmod(t, K)
                a = register(m, win[ky][kx][lane], f"a{lane}_{t}")
                b = register(m, prm.w[lane][t], f"b{lane}_{t}")
                if self.multiplier == "dsp":
                    p4 = register(m, a * b, f"m{lane}_{t}", signed(X_WIDTH + 8))
                    prods.append(register(m, p4, f"p{lane}_{t}"))
                else:  # the partial sums' halves, then their sum
                    lo, hi = (
                        register(m, h, f"m{lane}_{t}_{n}", signed(X_WIDTH + 8))
                        for n, h in enumerate(_lut_partials(a, b))
                    )
                    prods.append(register(m, lo + hi, f"p{lane}_{t}", signed(X_WIDTH + 8)))
            # Stages 6..: the adder tree, one registered level of pairwise sums each.
            level = 0
            while len(prods) > 1:
                nxt = [
                    register(m, prods[i] + prods[i + 1], f"s{lane}_{level}_{i // 2}")
                    for i in range(0, len(prods) - 1, 2)
                ]
                if len(prods) % 2:
                    nxt.append(register(m, prods[-1], f"s{lane}_{level}_{len(prods) // 2}"))
                prods, level = nxt, level + 1
            assert level == self.tree_levels
            sums.append(prods[0])

        wide = [Signal(signed(32), name=f"acc{lane}") for lane in range(L)]
        m.d.comb += [w.eq(s) for w, s in zip(wide, sums)]  # sign-extended
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=32 * L, depth=self.CREDITS)
        m.d.comb += [
            fifo.w_en.eq(emits[-1]),
            fifo.w_data.eq(Cat(*wide)),
            self.o_acc.valid.eq(fifo.r_rdy),
            self.o_acc.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o_acc.ready),
        ]
        return m
