"""The register table: sane by construction, and its helpers and document behave."""

import pathlib
import subprocess
import sys

import pytest
from bamboo.arch import registers as regs
from bamboo.arch.config import PRESETS
from bamboo.arch.isa import ISA_VERSION
from bamboo.arch.registers import (
    REGISTERS,
    ErrorCode,
    Field,
    Register,
    RegisterError,
    decode,
    encode,
    register,
)


def test_names_and_offsets_unique_and_aligned():
    names = [r.name for r in REGISTERS]
    offsets = [r.offset for r in REGISTERS]
    assert len(set(names)) == len(names)
    assert len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 for o in offsets)
    assert offsets == sorted(offsets)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_map_fits_address_window(name):
    assert max(r.offset for r in REGISTERS) + 4 <= 1 << PRESETS[name].axil_addr_width


def test_map_fits_smallest_window():
    # axil_addr_width may be as small as 8 bits (AcceleratorConfig allows 8..16).
    assert max(r.offset for r in REGISTERS) + 4 <= 256


def test_fields_within_word_and_disjoint():
    for r in REGISTERS:
        used = 0
        for f in r.fields:
            assert 0 <= f.lsb <= f.msb < 32, (r.name, f.name)
            assert not used & f.mask, (r.name, f.name)
            used |= f.mask
        assert r.width <= 32


def test_required_registers_present():
    for name in (
        "CTRL",
        "STATUS",
        "IRQ_STATUS",
        "ERR_INSN",
        "INSN_BASE_LO",
        "INSN_BASE_HI",
        "INSN_COUNT",
        "WINDOW_BASE_LO",
        "WINDOW_BASE_HI",
        "WINDOW_SIZE_LO",
        "WINDOW_SIZE_HI",
        "HW_VERSION",
        "ISA_VERSION",
        "CONFIG_ID",
        "CYCLES_LO",
        "CYCLES_HI",
        "SCRATCH",
        "ID",
    ):
        register(name)
    for unit in regs.UNITS:
        assert register(f"{unit}_busy").access == "RO"
        assert register(f"{unit}_stall").access == "RO"
    assert register("CTRL").field("start").access == "W1P"
    assert register("IRQ_STATUS").access == "W1C"
    assert register("STATUS").field("error_code").width >= max(ErrorCode).bit_length()


def test_isa_version_is_the_isa_modules():
    assert register("ISA_VERSION").fields[0].reset == ISA_VERSION


def test_error_codes_distinct_and_described():
    assert ErrorCode.NONE == 0
    assert len({int(c) for c in ErrorCode}) == len(ErrorCode)
    assert set(regs.ERROR_CODES) == set(ErrorCode)


def test_encode_decode_round_trip():
    word = encode("STATUS", busy=1, error=1, error_code=ErrorCode.AXI_ERROR)
    assert word == 0b101 | (4 << 8)
    assert decode("STATUS", word) == {"busy": 1, "done": 0, "error": 1, "error_code": 4}
    assert decode("HW_VERSION", 0x0002_0003) == {"major": 2, "minor": 3}
    assert encode("ctrl", irq_enable=1) == 0b100


def test_encode_rejects_bad_input():
    with pytest.raises(RegisterError, match=r"STATUS.error_code is 8 bits wide; 256 does not fit"):
        encode("STATUS", error_code=256)
    with pytest.raises(RegisterError, match="register CTRL has no field 'go'"):
        encode("CTRL", go=1)
    with pytest.raises(RegisterError, match="no register named 'NOPE'"):
        register("NOPE")
    with pytest.raises(RegisterError, match="a register word is 32 bits"):
        decode("CTRL", 1 << 32)


def test_table_entries_validate():
    with pytest.raises(RegisterError, match=r"bits \[32:1\] do not fit in 32 bits"):
        Field("x", 1, 32, "rw", "")
    with pytest.raises(RegisterError, match="kind must be one of"):
        Field("x", 0, 1, "wo", "")
    with pytest.raises(RegisterError, match="a status field needs a signal"):
        Field("x", 0, 1, "status", "")
    with pytest.raises(RegisterError, match="reset 0x2 does not fit 1 bits"):
        Field("x", 0, 1, "rw", "", reset=2)
    with pytest.raises(RegisterError, match="offset must be a non-negative multiple of 4, not 6"):
        Register("X", 6, "", (Field("x", 0, 1, "rw", ""),))
    with pytest.raises(RegisterError, match="field 'b' overlaps another"):
        Register("X", 0, "", (Field("a", 0, 4, "rw", ""), Field("b", 3, 2, "rw", "")))
    with pytest.raises(RegisterError, match="signal 'go' is both an input and an output"):
        regs._check(
            [
                Register("A", 0, "", (Field("x", 0, 1, "pulse", "", signal="go"),)),
                Register("B", 4, "", (Field("y", 0, 1, "status", "", signal="go"),)),
            ]
        )


def test_render_markdown_lists_every_register_and_code():
    text = regs.render_markdown()
    for r in REGISTERS:
        assert f"| {r.offset:#05x} | {r.name} |" in text
        assert f"### {r.name} ({r.offset:#05x})" in text
    for c in ErrorCode:
        assert f"| {int(c)} | {c.name} |" in text


def test_module_prints_the_document():
    out = subprocess.run(
        [sys.executable, "-m", "bamboo.arch.registers"], capture_output=True, text=True, check=True
    )
    assert out.stdout == regs.render_markdown()


def test_register_map_document_is_current():
    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "registers.md"
    assert doc.read_text() == regs.render_markdown(), (
        "docs/registers.md is stale: run `python -m bamboo.arch.registers > docs/registers.md`"
    )
