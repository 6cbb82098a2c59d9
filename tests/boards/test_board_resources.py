"""Yosys resource estimates: the counting, a small design, the tiny and ultra96 builds."""

import time

import pytest
from bamboo.arch.config import preset
from bamboo.boards.platforms import board
from bamboo.boards.resources import (
    RECORDED,
    _count,
    bram36_for,
    buffer_bram36,
    design_rtlil,
    estimate,
    recorded,
    synthesize,
)
from board_standin import accelerator_factory


def test_count_cells():
    cells = {
        "LUT6": 10,
        "LUT2": 5,
        "RAM64M": 3,
        "SRLC32E": 2,
        "FDRE": 40,
        "FDSE": 2,
        "DSP48E2": 7,
        "RAMB36E2": 4,
        "RAMB18E2": 3,
        "CARRY8": 9,
        "MUXF7": 1,
    }
    assert _count(cells, board("ultra96")) == dict(
        dsp=7, lut=15 + 12 + 2, lutram=14, ff=42, bram36=5.5, uram=0
    )


def mac_verilog(path):
    """A registered INT8 MAC as Verilog at ``path`` (top ``mac``): a small Yosys design."""
    from amaranth.back import verilog
    from amaranth.hdl import Module, Signal, signed
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Mac(wiring.Component):
        a: In(signed(8))
        b: In(signed(8))
        acc: Out(signed(32))

        def elaborate(self, platform):
            m = Module()
            a, b = Signal(signed(8)), Signal(signed(8))
            m.d.sync += [a.eq(self.a), b.eq(self.b), self.acc.eq(self.acc + a * b)]
            return m

    path.write_text(verilog.convert(Mac(), name="mac", emit_src=False))
    return path


def test_synthesize_small_design(tmp_path):
    """The Yosys script, its statistics and the path depth on a registered INT8 MAC."""
    v = mac_verilog(tmp_path / "mac.v")
    cells, levels, seconds = synthesize(v, board("ultra96"), "mac", workdir=tmp_path / "y")
    counts = _count(cells, board("ultra96"))
    assert counts["dsp"] == 1 and counts["bram36"] == 0
    assert levels >= 1


def _fits(r, capacity, *, dsp, lut_pct, bram_pct):
    usage = r.usage(capacity)
    assert r.dsp <= dsp, r.table(capacity)
    assert usage["lut"][2] <= lut_pct, r.table(capacity)
    assert usage["bram36"][2] <= bram_pct, r.table(capacity)


@pytest.mark.slow
def test_tiny_config_fits_ultra96():
    """~130 s of Yosys on two shared cores when not cached (build/ultra96/config-tiny).
    Measured this session: 61 DSP48E2, 16.2k LUT (23 %), 9.5 BRAM36 (60 / 16.1k with
    one depthwise row group: the groups cost one DSP and ~80 LUT here)."""
    from bamboo.boards.vivado import build_root

    b = board("ultra96")
    t0 = time.monotonic()
    r = estimate(
        "ultra96",
        config=preset("tiny"),
        accelerator=accelerator_factory(),
        folder=build_root() / "ultra96" / "config-tiny",
    )
    print(f"tiny: {time.monotonic() - t0:.0f} s (Yosys {r.seconds} s when measured)")
    print(r.table(b.capacity))
    _fits(r, b.capacity, dsp=64, lut_pct=25, bram_pct=10)
    assert r.levels > 0


@pytest.mark.slow
def test_ultra96_preset_fits():
    """The ultra96 preset: <= 300 DSP48E2, <= 70 % of the LUTs, <= 80 % of the BRAM36,
    synthesized now (about half an hour of Yosys on two shared cores, unless
    build/ultra96 caches this very design)."""
    b = board("ultra96")
    r = estimate("ultra96", accelerator=accelerator_factory(), folder=build_root_of("ultra96"))
    print(r.table(b.capacity))
    _fits(r, b.capacity, dsp=300, lut_pct=70, bram_pct=80)


def build_root_of(name):
    from bamboo.boards.vivado import build_root

    return build_root() / name / "fit-test"


def test_ultra96_has_a_recorded_estimate():
    assert recorded("ultra96") is not None, (
        "run `make resources BOARD=ultra96 RECORD=1` and commit boards/estimates/ultra96.json"
    )


@pytest.mark.parametrize("name", sorted(p.stem for p in RECORDED.glob("*.json")))
def test_recorded_estimate_is_this_design_and_fits(name):
    """The committed Yosys estimate of the board's preset is of the design as it is now
    (same RTLIL hash; elaborating takes ~1 min, Yosys ~30) and fits the board's budget."""
    b = board(name)
    r = recorded(name)
    config, _, digest = design_rtlil(name)
    assert (r.config, r.config_id) == (config.name, config.config_id)
    assert r.design_hash == digest, (
        f"the hardware changed since boards/estimates/{name}.json was recorded: run "
        f"`make resources BOARD={name} RECORD=1` (Yosys) and commit the new estimate"
    )
    print(r.table(b.capacity))
    assert not r.over_budget(b), r.table(b.capacity)


@pytest.mark.parametrize("name", ["ultra96", "ultra96v1", "zcu104", "kv260", "pynqz2"])
def test_preset_buffers_fit_the_bram(name):
    """Before any synthesis: the four buffers of the board's preset in <= 80 % of its BRAM36."""
    b = board(name)
    used = sum(buffer_bram36(b.config()).values())
    assert used <= 0.8 * b.capacity["bram36"], (used, b.capacity["bram36"])


def test_bram36_shapes():
    assert bram36_for(512, 72) == 1 and bram36_for(1024, 72) == 2
    assert bram36_for(2048, 4096) == 228  # 2K x 18 blocks side by side
    assert bram36_for(8192, 128) == 30  # 4K x 9 blocks: 2 deep, 15 wide


def test_design_hash_ignores_source_layout(tmp_path):
    """Reformatting the hardware's source (``make format``) keeps the design hash, so it does
    not force a Yosys re-record: the RTLIL behind the hash has no ``src`` attributes. A copy
    of the stand-in design with its lines moved hashes the same, while the RTLIL with
    source locations (the control) differs."""
    import importlib.util
    import pathlib

    from amaranth.back import rtlil
    from bamboo.boards.resources import BoardTop

    original = pathlib.Path(__file__).parents[1] / "board_standin.py"
    moved = tmp_path / "board_standin_moved.py"
    text = original.read_text().replace(
        "        m = Module()\n", "\n        m = (\n\n            Module()\n        )\n"
    )
    moved.write_text("\n\n\n" + text)
    spec = importlib.util.spec_from_file_location("board_standin_moved", moved)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from board_standin import PortStandIn

    config = preset("tiny")
    hashes, located = [], []
    for cls in (PortStandIn, module.PortStandIn):
        _, text, digest = design_rtlil("ultra96", config=config, accelerator=cls)
        assert "attribute \\src" not in text
        hashes.append(digest)
        located.append(rtlil.convert(BoardTop(cls(config)), emit_src=True))
    assert hashes[0] == hashes[1]
    assert located[0] != located[1]


def test_a_cached_design_is_labelled_with_the_asking_configuration(tmp_path, monkeypatch):
    """A design Yosys already measured under another name (a calibration point that became
    a preset) is reused by its hash, labelled with the configuration that asks for it: a
    recorded estimate never carries the calibration point's name."""
    import dataclasses
    import json

    from bamboo.boards.resources import Resources
    from board_standin import PortStandIn

    monkeypatch.setenv("BAMBOO_BUILD", str(tmp_path / "build"))
    config = preset("tiny")
    _, _, digest = design_rtlil("ultra96", config=config, accelerator=PortStandIn)
    folder = tmp_path / "point"
    folder.mkdir()
    measured = Resources(
        board="ultra96",
        config="some-point",
        config_id=config.config_id,
        design_hash=digest,
        dsp=1,
        lut=2,
        lutram=0,
        ff=3,
        bram36=0.5,
        uram=0,
        levels=4,
        cells={"LUT2": 2},
        seconds=5.0,
        fmax_mhz=300.0,
    )
    fields = {f.name: getattr(measured, f.name) for f in dataclasses.fields(measured)}
    (folder / f"resources-{digest}.json").write_text(json.dumps(fields))
    r = estimate("ultra96", config=config, accelerator=PortStandIn, folder=folder)
    assert (r.config, r.config_id, r.design_hash, r.lut) == ("tiny", config.config_id, digest, 2)
