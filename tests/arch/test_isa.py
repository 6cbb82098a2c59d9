import random

import pytest
from bamboo.arch import isa


@pytest.mark.parametrize("opcode", sorted(isa.FORMATS))
def test_round_trip_every_opcode(opcode):
    rng = random.Random(opcode)
    fields = isa.HEADER[1:] + isa.FORMATS[opcode]
    for _ in range(200):
        values = {f.name: rng.randint(f.min, f.max) for f in fields}
        word = isa.encode(opcode, **values)
        assert 0 <= word < 2**isa.INSN_BITS
        assert isa.decode(word) == dict(values, opcode=opcode)
        assert isa.decode_bytes(isa.encode_bytes([word])) == [word]


def test_illegal_opcode_zero_traps():
    with pytest.raises(isa.IsaError, match="illegal opcode 0"):
        isa.decode(0)


def test_field_range_error_names_field():
    with pytest.raises(isa.IsaError, match=r"CONV.kernel_h = 16 does not fit in 4 bits"):
        isa.encode(isa.Opcode.CONV, kernel_h=16)
    with pytest.raises(isa.IsaError, match="LOAD has no field"):
        isa.encode(isa.Opcode.LOAD, lane=1)


def test_bits_above_last_field_rejected():
    word = isa.encode(isa.Opcode.FINISH, irq=1) | (1 << 200)
    with pytest.raises(isa.IsaError, match="bits set above"):
        isa.decode(word)


def test_truncated_program_rejected():
    with pytest.raises(isa.IsaError, match="not a whole number"):
        isa.decode_bytes(b"\x01" * (isa.INSN_BYTES + 3))


def test_committed_doc_is_generated():
    import pathlib

    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "isa.md"
    assert doc.read_text() == isa.render_markdown(), (
        "docs/isa.md is stale: run `python -m bamboo.arch.isa > docs/isa.md`"
    )
