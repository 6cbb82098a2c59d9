"""Instruction words as ``amaranth.lib.data`` layouts, built from the ``bamboo.arch`` tables.

The hardware never shifts or masks instruction bits by hand: a unit takes a word,
views it through :func:`instruction_layout` and reads fields by name. The layout is
generated from :data:`bamboo.arch.isa.HEADER` and :data:`bamboo.arch.isa.FORMATS`
in table order, least significant bit first, exactly as :func:`bamboo.arch.isa.encode`
packs them, so a field added to the table appears here with no edit.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from ..arch.isa import FORMATS, HEADER
from ..arch.layout import ADD_PARAM_FIELDS, PARAM_LANE_BYTES, PARAM_LANE_FIELDS

__all__ = [
    "add_param_layout",
    "field_shape",
    "instruction_fields",
    "instruction_layout",
    "field_offsets",
    "param_lane_layout",
    "param_word_layout",
]


def field_shape(field):
    """The Amaranth shape of one :class:`~bamboo.arch.isa.Field`."""
    return signed(field.width) if field.signed else unsigned(field.width)


def instruction_fields(opcode):
    """Header and operand fields of ``opcode`` (an :class:`~bamboo.arch.isa.Opcode`),
    in bit order."""
    if opcode not in FORMATS:
        raise ValueError(f"opcode must be one of {sorted(FORMATS)}, not {opcode!r}")
    return HEADER + FORMATS[opcode]


def instruction_layout(opcode):
    """A :class:`~amaranth.lib.data.StructLayout` of one ``opcode`` instruction.

    Members keep table order, which :class:`~amaranth.lib.data.StructLayout` turns
    into consecutive offsets from bit 0: the same packing as
    :func:`bamboo.arch.isa.encode`. View a raw ``INSN_BITS`` word through it with
    ``data.View(layout, word[:layout.size])``.
    """
    return data.StructLayout({f.name: field_shape(f) for f in instruction_fields(opcode)})


def field_offsets(opcode):
    """``{name: (bit offset, width)}`` of ``opcode``'s fields, for encoders and tests."""
    out, pos = {}, 0
    for f in instruction_fields(opcode):
        out[f.name] = (pos, f.width)
        pos += f.width
    return out


def param_lane_layout():
    """One 64-bit PARAM lane (``bias``, ``m``, ``e``) from :data:`bamboo.arch.layout.
    PARAM_LANE_FIELDS`, as :func:`bamboo.arch.layout.param_lane` packs it."""
    return data.StructLayout(
        {name: signed(bits) if sign else unsigned(bits) for name, bits, sign in PARAM_LANE_FIELDS}
    )


def param_word_layout(config):
    """One PARAM word: ``config.cols`` lanes, lane ``c`` at bit ``64 * c``."""
    return data.ArrayLayout(param_lane_layout(), config.cols)


def add_param_layout():
    """VEC ADD's float32 constants (``ra``, ``rb``, ``k``, as bit patterns) over the first
    PARAM lanes, from :data:`bamboo.arch.layout.ADD_PARAM_FIELDS`."""
    lane_bits = 8 * PARAM_LANE_BYTES
    size = lane_bits * (1 + max(lane for _, lane, _ in ADD_PARAM_FIELDS))
    return data.FlexibleLayout(
        size,
        {
            name: data.Field(unsigned(32), lane * lane_bits + offset)
            for name, lane, offset in ADD_PARAM_FIELDS
        },
    )
