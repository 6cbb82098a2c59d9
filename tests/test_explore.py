"""``bamboo explore``: the Pareto front on hand-made points, the knob grid, the CLI on a
tiny sweep (its figures against ``bamboo advise``'s chain), one-line errors."""

import csv
import json

import pytest

from bamboo.explore import ExploreError, grid, pareto, parse_knobs


def test_pareto_on_hand_made_points():
    pts = [
        dict(fps=10, dsp=100),  # 0: front (cheapest)
        dict(fps=20, dsp=200),  # 1: front
        dict(fps=15, dsp=250),  # 2: dominated by 1
        dict(fps=20, dsp=200),  # 3: equal to 1: neither dominates
        dict(fps=30, dsp=300),  # 4: front (fastest)
        dict(fps=9, dsp=100),
    ]  # 5: dominated by 0
    assert pareto(pts, ["fps"], ["dsp"]) == [0, 1, 3, 4]
    # Two models: a point best at one is on the front even if poor at the other.
    two = [
        dict(a=1, b=9, dsp=5),
        dict(a=9, b=1, dsp=5),
        dict(a=5, b=5, dsp=5),
        dict(a=4, b=4, dsp=5),
    ]
    assert pareto(two, ["a", "b"], ["dsp"]) == [0, 1, 2]


def test_grid_keeps_valid_configurations_and_says_why_not():
    from bamboo.arch import preset

    base = preset("ultra96")
    knobs = {
        "rows": (16, 32),
        "cols": (32,),
        "dsp_packing": (True,),
        "vector_lanes": (2,),
        "input_buffer_depth": (8192,),
        "weight_buffer_depth": (512,),
        "output_buffer_depth": (2048,),
        "acc_buffer_depth": (512,),
        "acc_banks": (2,),
        "depthwise_blocks": (1,),
        "depthwise_groups": (2,),
        "postproc_lanes": (8,),
    }
    valid, invalid = grid(base, knobs)
    # Packing two MACs per DSP needs rows <= 16: rows=32 is refused with the reason.
    assert [c.config_id for c in valid] == [base.config_id] and valid[0].name == "ultra96"
    assert len(invalid) == 1 and "dsp_packing needs rows <= 16" in invalid[0][1]
    # 32 lanes on 32 columns is the same build as a lane per column: one point.
    valid, invalid = grid(base, knobs | {"rows": (16,), "postproc_lanes": (None, 32)})
    assert len(valid) == 1 and valid[0].postproc_lanes is None and not invalid


def test_default_grid_holds_the_ultra96_preset():
    """The default knob values reach the ultra96 preset, so the search can reproduce the
    choice (docs/explore.md); every default point is a packed array."""
    from bamboo.arch import preset

    base = preset("ultra96")
    valid, _ = grid(base)
    assert base.config_id in {c.config_id for c in valid}
    assert all(c.dsp_packing for c in valid)
    # Without the post-processing-lane or ACC-bank knobs the 16 x 32 preset is not a point.
    narrow, _ = grid(base, {"postproc_lanes": (None,), "acc_banks": (1,)})
    assert base.config_id not in {c.config_id for c in narrow}


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("rowz=8", "NAME one of"),
        ("rows", "NAME=V1"),
        ("rows=eight", "cannot read"),
        ("rows=", "no values"),
        ("dsp_packing=maybe", "cannot read"),
    ],
)
def test_bad_knobs_are_one_line_errors(spec, msg):
    with pytest.raises(ExploreError, match=msg):
        parse_knobs([spec])


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--knob", "rows=3"], "rows must be a power of two"),
        (["--knob", "speed=9"], "NAME one of"),
        (["--board", "pynqz2"], "UltraScale+"),
        (["--board", "nope"], "unknown board"),
        (["--size", "huge"], "--size"),
        (["--models", "resnet9000"], "unknown model"),
        (["--top", "-1"], "--top"),
    ],
)
def test_cli_errors_are_one_line(capsys, argv, msg):
    from bamboo.cli import main

    assert main(["explore", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bamboo explore: error:") and msg in err and "\n" not in err


pytest.importorskip("torch", reason="the zoo models are built with torch")

_TINY = [
    "--models",
    "mobilenet_v2@32",
    "--knob",
    "rows=8,16",
    "--knob",
    "cols=32",
    "--knob",
    "dsp_packing=1",
    "--knob",
    "vector_lanes=2",
    "--knob",
    "input_buffer_depth=8192",
    "--knob",
    "weight_buffer_depth=512",
    "--knob",
    "output_buffer_depth=2048",
    "--knob",
    "acc_buffer_depth=512",
    "--knob",
    "acc_banks=2",
    "--knob",
    "depthwise_blocks=1,2",
    "--knob",
    "depthwise_groups=2",
    "--knob",
    "postproc_lanes=8",
]


def test_cli_tiny_sweep_against_the_advise_chain(tmp_path, monkeypatch, capsys):
    from bamboo.arch import preset
    from bamboo.boards.resource_model import default_model
    from bamboo.boards.resources import recorded
    from bamboo.models import zoo

    from bamboo.advise import estimate
    from bamboo.cli import main

    monkeypatch.setenv("BAMBOO_BUILD", str(tmp_path))
    out_csv, png = tmp_path / "points.csv", tmp_path / "front.png"
    assert main(["explore", *_TINY, "--csv", str(out_csv), "--png", str(png)]) == 0
    text = capsys.readouterr().out
    assert "Pareto front" in text and "leave-one-out" in text and "preset 'ultra96'" in text
    assert png.stat().st_size > 0
    rows = {(int(r["rows"]), int(r["depthwise_blocks"])): r for r in csv.DictReader(out_csv.open())}
    # 16 x 32 packed has 16 depthwise columns: one block of 16 rows only.
    assert set(rows) == {(8, 1), (8, 2), (16, 1)}
    # The preset's FPS by the independent route of `bamboo advise` (compile, lower, cycle
    # model, processor side), and its resources by the fitted model.
    cfg = preset("ultra96")
    path = zoo.build_quantized("mobilenet_v2", 32, 1.0)
    ref = estimate(path, cfg, "ultra96", cfg.clock_mhz)
    got = float(rows[16, 1]["fps mobilenet_v2@32"])
    assert rows[16, 1]["preset"] == "1"
    assert float(rows[16, 1]["fabric fps mobilenet_v2@32"]) == pytest.approx(
        1.0 / ref.fabric_s, rel=1e-3
    )
    # FPS with the processor side overlapped is bounded by the fabric's. The processor
    # side is timed again on each route: at 16 x 32 it bounds this small input, and a
    # loaded machine (Yosys beside the tests) moves it by up to 2x.
    assert got <= float(rows[16, 1]["fabric fps mobilenet_v2@32"]) + 0.01
    assert 0.5 < got * max(ref.fabric_s, ref.cpu_s) < 2.0
    # Every point carries the model's prediction; the preset also Yosys's recorded counts.
    rec = recorded("ultra96")
    assert (
        int(rows[16, 1]["yosys dsp"]) == rec.dsp
        and float(rows[16, 1]["yosys bram36"]) == rec.bram36
    )
    assert int(rows[16, 1]["lut"]) == default_model().predict(cfg)["lut"]
    small = rows[8, 1]
    assert small["yosys lut"] == ""
    assert (
        int(small["lut"])
        == default_model().predict(cfg.__class__(**{**cfg.to_dict(), "rows": 8}))["lut"]
    )
    # The 8 x 32 array has half the MACs: never faster on the fabric side.
    assert float(rows[8, 1]["fabric fps mobilenet_v2@32"]) <= float(
        rows[16, 1]["fabric fps mobilenet_v2@32"]
    )
    # JSON: the cached second run returns the same figures.
    assert main(["explore", *_TINY, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["cache_hits"] == 3
    fps = {
        (p["config"]["rows"], p["config"]["depthwise_blocks"]): p["fps"]["mobilenet_v2@32"]
        for p in res["points"]
    }
    assert fps[16, 1] == pytest.approx(got, abs=0.01)


def test_cache_key_rests_on_the_code(monkeypatch, tmp_path):
    """A cached result is keyed by a digest of the compiler, cycle model, runtime
    kernels and model builders: a source change there makes it stale."""
    import bamboo.explore as ex

    first = ex.code_revision()
    assert first == ex.code_revision() and len(first) == 16
    pkg = tmp_path / "fake_compiler"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(ex, "_CODE", ex._CODE + ("fake_compiler",))
    try:
        ex.code_revision.cache_clear()
        a = ex.code_revision()
        (pkg / "__init__.py").write_text("X = 2\n")
        ex.code_revision.cache_clear()
        assert a != first and ex.code_revision() != a
    finally:
        ex.code_revision.cache_clear()  # the real sources' digest for later tests
