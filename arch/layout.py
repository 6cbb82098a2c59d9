"""Memory layouts shared by the compiler, the simulators and the runtime: DRAM and buffer words.

Activations (``B`` = ``config.rows``): a feature map ``(1, H, W, C)`` lives in DRAM
channel-blocked, ``[ceil(C/B)][H][W][B]``; code ``(y, x, c)`` is at byte
:func:`act_offset`. Channels past ``C`` in the last block are don't-care. A vector
``(1, K)`` is laid out as the map ``(1, 1, 1, K)``.

PARAM word (``C`` = ``config.cols`` lanes of 64 bits, lane ``c`` at byte ``8c``), as
the post-processing lanes of ``hw/postproc.py`` take them (per lane ``bias``,
``RequantParams.m``, ``RequantParams.e``; zero point and bounds come from the
instruction)::

    bits 31:0   bias   int32, added to the accumulator with 32-bit wrap
    bits 55:32  m      24-bit mantissa of the scale (Requant.m)
    bits 63:56  e      signed exponent (Requant.e clamped to [-128, 127]: same results)

VEC ops reuse the word: ``AVG_POOL`` and ``MUL_CHANNEL`` read ``m``/``e`` per lane
(``MUL_CHANNEL`` lane 0 only, bias unused); ``ADD`` reads float32 bit patterns,
lane 0 = ``rA | rB << 32``, lane 1 = ``K`` (see the VEC docstring in ``isa.py``).
"""

from .isa import Buffer, Opcode

__all__ = [
    "ADD_PARAM_FIELDS",
    "E_MAX",
    "E_MIN",
    "BUFFERS",
    "LUT_ENTRIES",
    "PARAM_DEPTH",
    "PARAM_LANE_BYTES",
    "PARAM_LANE_FIELDS",
    "PARAM_SLOTS",
    "PARAM_SLOT_WORDS",
    "PARAM_WORDS_USED",
    "act_blocks",
    "act_bytes",
    "act_offset",
    "align",
    "buffer_depth",
    "elem_bytes",
    "param_lane",
    "transfer_elem_bytes",
    "unpack_param_lane",
]

PARAM_LANE_BYTES = 8
#: A PARAM lane's fields from bit 0: ``(name, bits, signed)`` (the table above;
#: :func:`param_lane` packs them, the hardware views a lane through them).
PARAM_LANE_FIELDS = (("bias", 32, True), ("m", 24, False), ("e", 8, True))
#: VEC ADD's float32 constants in a PARAM word (the table above): ``(name, lane, bit
#: offset in the lane)``, 32 bits each: lane 0 = ``rA | rB << 32``, lane 1 = ``K``.
ADD_PARAM_FIELDS = (("ra", 0, 0), ("rb", 0, 32), ("k", 1, 0))
#: PARAM slots the compiler double-buffers, and words per slot (one LOAD brings a slot).
PARAM_SLOTS, PARAM_SLOT_WORDS = 2, 2
#: PARAM words the compiler uses.
PARAM_WORDS_USED = PARAM_SLOTS * PARAM_SLOT_WORDS
#: Depth of the PARAM buffer the simulator models (AcceleratorConfig has no field for it
#: yet; the compiler needs PARAM_WORDS_USED).
PARAM_DEPTH = 16
E_MIN, E_MAX = -128, 127
#: The buffers a LOAD can fill (``LOAD.buffer`` values).
BUFFERS = (Buffer.INP, Buffer.WGT, Buffer.PARAM, Buffer.LUT)
#: Entries of one activation table (a LUT word): one per 8-bit code.
LUT_ENTRIES = 256


def elem_bytes(config, buffer):
    """Bytes of one word of ``buffer`` (``LOAD.buffer``), which is also one DRAM element of
    a LOAD into it: INP ``rows``, WGT ``rows * cols``, PARAM ``cols * PARAM_LANE_BYTES``,
    LUT ``LUT_ENTRIES``."""
    return {
        Buffer.INP: config.rows,
        Buffer.WGT: config.rows * config.cols,
        Buffer.PARAM: config.cols * PARAM_LANE_BYTES,
        Buffer.LUT: LUT_ENTRIES,
    }[buffer]


def buffer_depth(config, buffer):
    """Words of ``buffer`` (``LOAD.buffer``) on chip; LUT words are tables (slots)."""
    return {
        Buffer.INP: config.input_buffer_depth,
        Buffer.WGT: config.weight_buffer_depth,
        Buffer.PARAM: PARAM_DEPTH,
        Buffer.LUT: config.lut_slots,
    }[buffer]


def transfer_elem_bytes(config, fields):
    """DRAM bytes per element of a decoded LOAD or STORE (``fields`` as
    :func:`~bamboo.arch.isa.decode` returns them): a LOAD's buffer word, a STORE's
    ``rows`` codes (one lane slice of an OUT word)."""
    if fields["opcode"] == Opcode.LOAD:
        return elem_bytes(config, fields["buffer"])
    assert fields["opcode"] == Opcode.STORE, fields["opcode"]
    return config.rows


def param_lane(bias, m, e):
    """The 64-bit PARAM lane value of ``(bias, m, e)`` (``e`` clamped to ``[E_MIN, E_MAX]``)."""
    bias, m, e = int(bias), int(m), int(e)
    if not -(1 << 31) <= bias < 1 << 31:
        raise ValueError(f"bias must fit int32, not {bias!r}")
    if not 0 <= m < 1 << 24:
        raise ValueError(f"m must fit 24 bits, not {m!r}")
    e = min(max(e, E_MIN), E_MAX)
    return (bias & 0xFFFFFFFF) | (m << 32) | ((e & 0xFF) << 56)


def unpack_param_lane(lane):
    """``(bias, m, e)`` of a 64-bit PARAM lane value (the inverse of :func:`param_lane`)."""
    bias = lane & 0xFFFFFFFF
    e = (lane >> 56) & 0xFF
    return (
        bias - (1 << 32) if bias >> 31 else bias,
        (lane >> 32) & 0xFFFFFF,
        e - 256 if e >> 7 else e,
    )


def act_blocks(channels, rows):
    """Channel blocks of ``rows`` channels holding ``channels`` channels."""
    return -(-channels // rows)


def act_bytes(h, w, c, rows):
    """DRAM bytes of a channel-blocked ``(1, h, w, c)`` map."""
    return act_blocks(c, rows) * h * w * rows


def act_offset(y, x, c, h, w, rows):
    """Byte offset of code ``(y, x, c)`` in a channel-blocked ``(1, h, w, C)`` map."""
    return ((c // rows * h + y) * w + x) * rows + c % rows


def align(n, to):
    """``n`` rounded up to a multiple of ``to``."""
    return -(-n // to) * to
