"""The Bamboo instruction set: one table, read by the hardware, the compiler and the simulators.

Every instruction is ``INSN_BITS`` wide and starts with the same header: a 4-bit
opcode and four dependency-token flags. The rest of the word is laid out by the
opcode's field table below, least significant bit first. The hardware builds its
``amaranth.lib.data`` layouts from :data:`FORMATS`; the compiler encodes and the
instruction simulator decodes with :func:`encode` and :func:`decode`. Nothing else
may define a field, an opcode or a width.

Queues and tokens (the access-execute split of VTA, Ref: Moreau et al., "A Hardware-
Software Blueprint for Flexible Deep Learning Specialization", 2019): the fetch
unit dispatches ``LOAD`` to the load queue, ``CONV``/``VEC`` to the compute queue,
``STORE`` to the store queue. ``FINISH`` goes to the compute queue. Between
neighbouring queues (load <-> compute <-> store) run token FIFOs in both directions;
an instruction with ``pop_prev``/``pop_next`` waits for a token from its
previous/next neighbour before it starts, and one with ``push_prev``/``push_next``
sends one when it ends. The compiler uses tokens to double-buffer: loads of tile
n+1 overlap compute of tile n, stores of tile n-1 overlap both.

On-chip buffers and their word sizes (``B`` = config.rows, ``C`` = config.cols):

============  ===========================  ===================================
buffer        one word                     filled by
============  ===========================  ===================================
``INP``       B int8 codes (one pixel of   LOAD (2-D strided, zero-point
              a B-channel block)           padding inserted on the fly)
``WGT``       C x B int8 weights           LOAD
``PARAM``     C x 64 bits: per output      LOAD
              channel int32 bias, 24-bit
              mantissa m, signed shift e
``LUT``       256 codes (one table)        LOAD
``OUT``       C codes                      CONV / VEC; read by STORE
============  ===========================  ===================================

Activations live in DRAM channel-blocked, ``[C/B][H][W][B]`` per image (``B``-byte
pixels), so a tile of one channel block is a 2-D strided transfer of ``y_size``
rows of ``x_size`` pixels. Byte layouts of the words: ``arch/layout.py`` (PARAM),
docs/compute.md (WGT). ``bamboo.sim.isa`` executes exactly the pseudo-code below.

Semantics (pseudo-code; ``E`` = element bytes of the buffer: INP ``B``, WGT ``C*B``,
PARAM ``C*8``, LUT 256; codes are int8 when ``signed`` else uint8; ``zp``, ``qmin``,
``qmax`` fields are 8-bit codes read the same way)::

    LOAD:   W = pad_left + x_size + pad_right
            for r < pad_top + y_size + pad_bottom, q < W:
                y, x = r - pad_top, q - pad_left
                buf[sram_addr + r*W + q] = DRAM[dram_addr + (y*x_stride + x)*E : +E]
                                           if 0 <= y < y_size and 0 <= x < x_size
                                           else pad_value repeated E times
            (LUT: sram_addr is the slot; PARAM words are C little-endian 64-bit lanes)
    STORE:  for y < y_size, x < x_size:
                DRAM[dram_addr + (y*x_stride + x)*B : +B] =
                    OUT[sram_addr + y*x_size + x][lane*B : (lane+1)*B]
    CONV DENSE:  T = in_blocks*kernel_h*kernel_w taps, t = (blk*kernel_h + ky)*kernel_w + kx
            for t, oy < out_h, ox < out_w, c < C:
                p = oy*out_w + ox
                x = INP[inp_addr + blk*inp_block_stride + (oy*stride_h + ky*dilation_h)*in_w
                        + ox*stride_w + kx*dilation_w]          (B codes)
                part[p][c] += sum_r (x[r] - in_zp) * WGT[wgt_addr + t][c][r]
    CONV DEPTHWISE: (dilation_w = 1, kernel_w <= B; channel c < N = config.depthwise_channels,
            lanes >= N are 0; s = config.depthwise_column_step: 2 when dsp_packing, else 1;
            G = config.depthwise_row_groups(kernel_w), Rg = B / G row groups; kernel_h
            takes ceil(kernel_h / G) WGT words (passes); WGT rows outside the kernel are 0)
            for ky, oy, ox, c: q, g = ky // G, ky % G      (pass q, row group g)
                part[p][c] += sum_{kx < kernel_w} (x[c % B] - in_zp) *
                    WGT[wgt_addr + q][c*s][g*Rg + kx],
                x = INP[inp_addr + (c // B)*inp_block_stride + (oy*stride_h + ky*dilation_h)*in_w
                        + ox*stride_w + kx]
            (dsp_packing: x - in_zp is taken as 8 bits and weights must be in [-127, 127])
    CONV (both): ACC[p] = (acc_init ? 0 : ACC[p]) + part[p]      (int32, wrapping)
            if acc_emit: OUT[out_addr + p] = post(ACC[p], PARAM[param_addr])
            (DEPTHWISE or narrow: OUT lanes c >= N are written 0)
    post(acc, P)[c] = act(requantize(acc[c] + P[c].bias, P[c].m, P[c].e, out_zp, qmin, qmax))
            requantize: bamboo.runtime.requant (24-bit rounding steps, then saturation)
            act NONE: y; LEAKY_SHIFT: v = y - out_zp, v < 0 ? out_zp + ((v*13) >> 7) : y;
            LEAKY_ROUNDED: as LEAKY_SHIFT with ((v*13 + 64) >> 7);
            LUT: LUT[lut_slot][y & 0xFF]
    VEC:    out_h = 0 or out_w = 0: no pixels (a barrier that only moves tokens). Else for
            oy < out_h, ox < out_w, lane c < B (OUT lanes >= B are written 0):
                a  = INP[src_a + oy*in_w + ox],  b = INP[src_b + oy*in_w + ox]
                win = {INP[src_a + (oy*stride_h + ky)*in_w + ox*stride_w + kx]
                       for ky < kernel_h, kx < kernel_w}
            ADD:        y = sat(rint(fma(a, rA, fma(b, rB, K))))   float32 FMAs, as
                        onnxruntime x86; PARAM lane 0 = rA | rB << 32, lane 1 = K (f32 bits)
            MAX_POOL:   y = clamp(max(win), qmin, qmax)
            AVG_POOL:   y = requantize(sum(win - a_zp) + P[c].bias, P[c].m, P[c].e, ...)
            MUL_CHANNEL: s = INP[src_b] (one word); p = (a - a_zp) * (s - b_zp);
                        y = sat(RNE(round24(round24(p*m) + out_zp*2**-e) * 2**e)), m, e of
                        PARAM lane 0 (runtime.elementwise.mul_channel's integer form)
            MUL:        as MUL_CHANNEL with s = b (one operand word per pixel)
            COPY:       y = clamp(a, qmin, qmax)
            then OUT[out_addr + oy*out_w + ox][c] = act(y)
    FINISH: stop once every earlier instruction has ended (the run is done); with irq,
            also raise the done interrupt (IRQ_STATUS.done, the irq line if
            CTRL.irq_enable). Without irq, or when a run ends after INSN_COUNT
            instructions and no FINISH, only STATUS.done is set. Errors always interrupt.
    Tokens: pops before the instruction starts, pushes after it ends.
"""

from dataclasses import dataclass

from .errors import BambooError

__all__ = [
    "ISA_VERSION",
    "INSN_BITS",
    "INSN_BYTES",
    "HEADER",
    "Field",
    "Opcode",
    "Buffer",
    "VecOp",
    "Activation",
    "ConvMode",
    "FORMATS",
    "IsaError",
    "encode",
    "decode",
    "encode_bytes",
    "decode_bytes",
    "render_markdown",
    "field",
    "opcode_name",
    "QUEUES",
    "QUEUE_DEPTH",
    "QUEUE_OF",
    "TokenFifo",
    "TOKEN_FIFOS",
    "token_bits",
]

ISA_VERSION = 1
INSN_BITS = 256
INSN_BYTES = INSN_BITS // 8


class IsaError(BambooError, ValueError):
    """An instruction that cannot be encoded or decoded."""


@dataclass(frozen=True)
class Field:
    """One instruction field: ``width`` bits, unsigned unless ``signed``."""

    name: str
    width: int
    doc: str
    signed: bool = False

    @property
    def min(self):
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max(self):
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1


class Opcode:
    """Opcodes. 0 is illegal, so zeroed memory traps instead of running."""

    LOAD = 1
    STORE = 2
    CONV = 3
    VEC = 4
    FINISH = 5


class Buffer:
    """On-chip buffer selected by ``LOAD.buffer``."""

    INP = 0
    WGT = 1
    PARAM = 2
    LUT = 3


class ConvMode:
    """``CONV.mode``: how the array is used."""

    DENSE = 0  # standard, pointwise and fully connected (1x1 over a 1x1 image)
    DEPTHWISE = 1  # one input channel per output channel


class Activation:
    """``CONV.act`` / ``VEC.act``: what follows the requantizer in post-processing."""

    NONE = 0  # clamp to [qmin, qmax] only (ReLU/ReLU6 are clamps)
    LEAKY_SHIFT = 1  # v < 0: (v * 13) >> 7 on the zero-point corrected code
    LEAKY_ROUNDED = 2  # v < 0: (v * 13 + 64) >> 7
    LUT = 3  # 256-entry table from LUT slot ``lut_slot``


class VecOp:
    """``VEC.vop``: vector-unit operations."""

    ADD = 0  # residual add, onnxruntime's x86 formula
    MAX_POOL = 1
    AVG_POOL = 2
    MUL_CHANNEL = 3  # squeeze-excite: x[c] * s[c]
    COPY = 4  # requantizing copy (concat of differently scaled inputs)
    MUL = 5  # elementwise product (SiLU's x * sigmoid(x)): MUL_CHANNEL's formula


HEADER = (
    Field("opcode", 4, "operation, see Opcode"),
    Field("pop_prev", 1, "wait for a token from the previous queue before starting"),
    Field("pop_next", 1, "wait for a token from the next queue before starting"),
    Field("push_prev", 1, "send a token to the previous queue when done"),
    Field("push_next", 1, "send a token to the next queue when done"),
)

_TRANSFER = (
    Field("sram_addr", 16, "first word in the on-chip buffer"),
    Field("dram_addr", 32, "byte offset of the first element from the DMA window base"),
    Field("y_size", 12, "rows to transfer"),
    Field("x_size", 12, "elements per row"),
    Field("x_stride", 20, "DRAM distance between rows, in elements"),
)

FORMATS = {
    Opcode.LOAD: _TRANSFER
    + (
        Field("buffer", 2, "destination buffer, see Buffer"),
        Field("pad_top", 4, "rows of pad_value inserted above"),
        Field("pad_bottom", 4, "rows of pad_value inserted below"),
        Field("pad_left", 4, "elements of pad_value inserted left of each row"),
        Field("pad_right", 4, "elements of pad_value inserted right of each row"),
        Field("pad_value", 8, "code written into padding (the input zero point)"),
    ),
    Opcode.STORE: _TRANSFER
    + (Field("lane", 4, "which B-code slice of the C-code OUT word to write (C/B slices)"),),
    Opcode.CONV: (
        Field("mode", 2, "see ConvMode"),
        Field("kernel_h", 4, "kernel height"),
        Field("kernel_w", 4, "kernel width"),
        Field("stride_h", 3, "vertical stride"),
        Field("stride_w", 3, "horizontal stride"),
        Field("dilation_h", 3, "vertical dilation"),
        Field("dilation_w", 3, "horizontal dilation"),
        Field("out_h", 10, "output tile height"),
        Field("out_w", 10, "output tile width"),
        Field("in_w", 12, "input tile width, padding included (row pitch in INP)"),
        Field("in_blocks", 8, "input channel blocks of B accumulated (1 for depthwise)"),
        Field("inp_addr", 16, "INP word of input block 0, pixel (0, 0)"),
        Field("inp_block_stride", 16, "INP words between input channel blocks"),
        Field("wgt_addr", 16, "WGT word of the first kernel tap"),
        Field("param_addr", 12, "PARAM word with bias and requantizer of this output block"),
        Field("out_addr", 16, "OUT word of output pixel (0, 0)"),
        Field(
            "acc_init", 1, "start from zero (1) or from the accumulators (0); bias is added at emit"
        ),
        Field("acc_emit", 1, "post-process and write OUT (1) or keep accumulating (0)"),
        Field("act", 2, "see Activation"),
        Field("lut_slot", 3, "LUT used when act is LUT"),
        Field("out_zp", 8, "output zero point"),
        Field("qmin", 8, "lower clamp, as a code"),
        Field("qmax", 8, "upper clamp, as a code"),
        Field("signed", 1, "codes are int8 (1) or uint8 (0)"),
        Field("in_zp", 8, "input zero point, subtracted from every INP code before the array"),
        Field(
            "narrow",
            1,
            "only OUT lanes c < N = config.depthwise_channels hold results (the rest are "
            "written 0; the emit skips them); implied by DEPTHWISE",
        ),
    ),
    Opcode.VEC: (
        Field("vop", 3, "see VecOp"),
        Field("kernel_h", 4, "pool window height"),
        Field("kernel_w", 4, "pool window width"),
        Field("stride_h", 3, "pool vertical stride"),
        Field("stride_w", 3, "pool horizontal stride"),
        Field("out_h", 10, "output tile height"),
        Field("out_w", 10, "output tile width"),
        Field("in_w", 12, "input tile width (row pitch in INP)"),
        Field("src_a", 16, "INP word of the first operand"),
        Field("src_b", 16, "INP word of the second operand (ADD) or scale vector (MUL)"),
        Field("out_addr", 16, "OUT word of output pixel (0, 0)"),
        Field("param_addr", 12, "PARAM word with the operation's scales"),
        Field("act", 2, "see Activation"),
        Field("lut_slot", 3, "LUT used when act is LUT"),
        Field("a_zp", 8, "zero point of operand a"),
        Field("b_zp", 8, "zero point of operand b"),
        Field("out_zp", 8, "output zero point"),
        Field("qmin", 8, "lower clamp, as a code"),
        Field("qmax", 8, "upper clamp, as a code"),
        Field("signed", 1, "codes are int8 (1) or uint8 (0)"),
    ),
    Opcode.FINISH: (
        Field("irq", 1, "raise the done interrupt (IRQ_STATUS.done) when the run ends here"),
    ),
}

_NAMES = {value: name for name, value in vars(Opcode).items() if name.isupper()}

#: The three instruction queues, in neighbour order: a queue's ``prev`` is the one
#: before it here and its ``next`` the one after.
QUEUES = ("load", "compute", "store")
#: Instructions each queue holds ahead of its unit: the dispatcher, which takes the
#: program in order, stops at a full queue, so a LOAD behind more than this many
#: computes waits for them to start.
QUEUE_DEPTH = 8
#: The queue each opcode is dispatched to.
QUEUE_OF = {
    Opcode.LOAD: "load",
    Opcode.STORE: "store",
    Opcode.CONV: "compute",
    Opcode.VEC: "compute",
    Opcode.FINISH: "compute",
}


@dataclass(frozen=True)
class TokenFifo:
    """One token FIFO: queue ``src`` pushes with header bit ``push`` (after an
    instruction ends), queue ``dst`` pops with header bit ``pop`` (before one starts)."""

    name: str
    src: str
    dst: str
    push: str
    pop: str


def _token_fifos():
    fifos = []
    for a, b in zip(QUEUES, QUEUES[1:]):
        fifos += [
            TokenFifo(f"{a[0]}2{b[0]}", a, b, "push_next", "pop_prev"),
            TokenFifo(f"{b[0]}2{a[0]}", b, a, "push_prev", "pop_next"),
        ]
    return tuple(fifos)


#: Every token FIFO, both directions between neighbouring queues (``l2c``, ``c2l``,
#: ``c2s``, ``s2c``).
TOKEN_FIFOS = _token_fifos()


def token_bits(queue):
    """``{header bit: TokenFifo}`` of the token bits legal in ``queue``'s instructions
    (a bit towards a missing neighbour is malformed)."""
    return {
        **{f.push: f for f in TOKEN_FIFOS if f.src == queue},
        **{f.pop: f for f in TOKEN_FIFOS if f.dst == queue},
    }


def field(opcode, name):
    """The :class:`Field` ``name`` of ``opcode`` (header fields included), or raise
    :class:`IsaError`; its ``width``, ``min`` and ``max`` bound what an instruction holds."""
    for f in HEADER + FORMATS[opcode] if opcode in FORMATS else opcode_name(opcode):
        if f.name == name:
            return f
    raise IsaError(f"{opcode_name(opcode)} has no field {name}")


def _check_tables():
    header = sum(f.width for f in HEADER)
    for opcode, fields in FORMATS.items():
        names = [f.name for f in HEADER + fields]
        assert len(set(names)) == len(names), f"duplicate field in {_NAMES[opcode]}"
        assert header + sum(f.width for f in fields) <= INSN_BITS, f"{_NAMES[opcode]} too wide"


_check_tables()


def opcode_name(opcode):
    """The mnemonic of ``opcode`` (``"LOAD"``...), or raise :class:`IsaError`."""
    try:
        return _NAMES[opcode]
    except KeyError:
        raise IsaError(f"illegal opcode {opcode}") from None


def encode(opcode, **values):
    """Encode one instruction to an ``INSN_BITS``-bit integer.

    Missing fields encode as 0; an unknown field or a value out of its range raises
    :class:`IsaError` naming the field.
    """
    name = opcode_name(opcode)
    fields = HEADER + FORMATS[opcode]
    values = dict(values, opcode=opcode)
    unknown = set(values) - {f.name for f in fields}
    if unknown:
        raise IsaError(f"{name} has no field(s) {', '.join(sorted(unknown))}")
    word, pos = 0, 0
    for f in fields:
        v = int(values.get(f.name, 0))
        if not f.min <= v <= f.max:
            raise IsaError(
                f"{name}.{f.name} = {v} does not fit in {f.width} bits ({f.min}..{f.max})"
            )
        word |= (v & ((1 << f.width) - 1)) << pos
        pos += f.width
    return word


def decode(word):
    """Decode an instruction integer to a dict of field values (``opcode`` included)."""
    opcode = word & ((1 << HEADER[0].width) - 1)
    name = opcode_name(opcode)
    out, pos = {}, 0
    for f in HEADER + FORMATS[opcode]:
        v = (word >> pos) & ((1 << f.width) - 1)
        if f.signed and v >> (f.width - 1):
            v -= 1 << f.width
        out[f.name] = v
        pos += f.width
    if word >> pos:
        raise IsaError(f"{name} has bits set above its last field (bit {pos} and up)")
    return out


def encode_bytes(instructions):
    """Pack a list of instruction integers into little-endian bytes, as fetched from DDR."""
    return b"".join(i.to_bytes(INSN_BYTES, "little") for i in instructions)


def decode_bytes(blob):
    """Split bytes into instruction integers (the inverse of :func:`encode_bytes`)."""
    if len(blob) % INSN_BYTES:
        raise IsaError(
            f"program of {len(blob)} bytes is not a whole number of {INSN_BYTES}-byte instructions"
        )
    return [
        int.from_bytes(blob[i : i + INSN_BYTES], "little") for i in range(0, len(blob), INSN_BYTES)
    ]


def render_markdown():
    """The ISA reference (``docs/isa.md``), generated from the tables above."""
    lines = [
        "# Bamboo ISA",
        "",
        f"Generated from `arch/isa.py` (ISA version {ISA_VERSION}) by "
        "`python -m bamboo.arch.isa`; do not edit.",
        "",
        f"Every instruction is {INSN_BITS} bits, little-endian in memory, fields packed "
        "from bit 0 upward in the order listed.",
        "",
    ]
    for opcode, fields in [(None, HEADER)] + sorted(FORMATS.items()):
        title = (
            "Header (every instruction)"
            if opcode is None
            else f"{_NAMES[opcode]} (opcode {opcode})"
        )
        lines += [f"## {title}", "", "| bits | field | description |", "|---|---|---|"]
        pos = 0 if opcode is None else sum(f.width for f in HEADER)
        for f in fields:
            lines.append(f"| {pos + f.width - 1}:{pos} | `{f.name}` | {f.doc} |")
            pos += f.width
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_markdown(), end="")
