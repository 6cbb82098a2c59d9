"""Board descriptions: parts, reachable PL clocks, configurations sized to the device."""

import subprocess
import sys

import pytest
from bamboo.arch.config import PRESETS
from bamboo.boards.platforms import BOARDS, MAX_DIVIDER, BoardError, board, check_config

PARTS = {
    "ultra96": "xczu3eg-sbva484-1-i",
    "ultra96v1": "xczu3eg-sbva484-1-e",
    "zcu104": "xczu7ev-ffvc1156-2-e",
    "kv260": "xck26-sfvc784-2LV-c",
    "pynqz2": "xc7z020clg400-1",
}


def test_board_set_and_parts():
    assert {name: b.part for name, b in BOARDS.items()} == PARTS


def test_unknown_board_lists_valid_ones():
    with pytest.raises(
        BoardError,
        match="unknown board 'typo'; valid boards: ultra96, ultra96v1, zcu104, kv260, pynqz2",
    ):
        board("typo")


@pytest.mark.parametrize("tool", ["vivado", "resources"])
def test_cli_unknown_board_lists_valid_ones(tool):
    out = subprocess.run(
        [sys.executable, "-m", f"bamboo.boards.{tool}", "typo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "valid boards: ultra96, ultra96v1, zcu104, kv260, pynqz2" in out.stderr


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_clock_choices_are_pll_reachable(name):
    b = board(name)
    choices = b.clock_choices()
    assert choices == sorted(choices, reverse=True) and choices
    for f in choices:
        n = round(b.pll_mhz / f)
        assert abs(b.pll_mhz / n - f) < 1e-3, (f, n)
        # Two 6-bit dividers in series (UG1085 PLx_REF_CTRL, UG585 FPGA0_CLK_CTRL).
        assert n <= MAX_DIVIDER and any(n % a == 0 and n // a <= 63 for a in range(1, 64))
    assert b.config().clock_mhz in choices


def test_ultra96_clocks():
    b = board("ultra96")
    assert b.pl_clock(250) == (250.0, 6)
    assert b.pl_clock(187.5) == (187.5, 8)
    assert 200 not in b.clock_choices()
    with pytest.raises(
        BoardError,
        match=r"cannot clock the PL at 200 MHz .*choose one of: "
        r"300, 250, 214.286, 187.5",
    ):
        b.pl_clock(200)
    assert b.config(187.5).clock_mhz == 187.5
    assert b.config(187.5).config_id != b.config().config_id


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_config_fits_its_device(name):
    b = board(name)
    config = b.config()
    assert config.name == b.preset and b.preset in PRESETS
    check_config(b, config)
    assert config.dsp_count <= b.capacity["dsp"] * 0.85
    # The S_AXI_HP port widths: 32/64/128 on the MPSoC, 32/64 on Zynq-7000.
    assert config.axi_data_width <= (64 if b.ps == "zynq7" else 128)


def test_zynq7_refuses_packing_and_wide_bus():
    import dataclasses

    b = board("pynqz2")
    with pytest.raises(BoardError, match="dsp_packing needs DSP48E2"):
        check_config(b, dataclasses.replace(b.config(), cols=16, dsp_packing=True))
    with pytest.raises(BoardError, match="at most 64 bits"):
        check_config(b, dataclasses.replace(b.config(), axi_data_width=128))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_amaranth_platform(name):
    from amaranth.vendor import XilinxPlatform

    platform = board(name).platform()
    assert isinstance(platform, XilinxPlatform)
    assert platform._part == PARTS[name]
    assert platform.family == ("series7" if name == "pynqz2" else "ultrascaleplus")
    assert platform.default_clk is None  # the PL clock comes from the PS
