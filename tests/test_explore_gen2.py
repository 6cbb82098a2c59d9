"""``bamboo explore --gen2``: the engine-generation-2 lever projections on a tiny sweep,
today's point against ``bamboo advise``'s chain, one-line errors."""

import dataclasses

import pytest

from bamboo.explore import ExploreError


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--knob", "rows=8"], "--gen2 takes no --knob"),
        (["--board", "pynqz2"], "UltraScale+"),
        (["--size", "huge"], "--size"),
    ],
)
def test_gen2_errors_are_one_line(capsys, argv, msg):
    from bamboo.cli import main

    assert main(["explore", "--gen2", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bamboo explore: error:") and msg in err and "\n" not in err


def test_gen2_candidates_and_bad_board():
    from bamboo.explore_gen2 import _candidates

    singles, combos = _candidates(("two DMA words", "block fusion"))
    assert [s[0] for s in singles] == [
        "today",
        "dma2",
        "fuse-block",
        "peak16x32",
        "peak16x32-pp8",
        "peak16x32-pp8+pingpong",
    ]
    assert [c[0] for c in combos] == ["dma2+fuse-block"]
    with pytest.raises(ExploreError):
        from bamboo.explore_gen2 import explore_gen2

        explore_gen2("nope", progress=False)


def test_gen2_tiny_sweep(tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="the zoo models are built with torch")
    from bamboo.arch import preset
    from bamboo.boards.resource_model import default_model
    from bamboo.models import zoo

    from bamboo.advise import estimate
    from bamboo.explore_gen2 import explore_gen2, render_gen2

    monkeypatch.setenv("BAMBOO_BUILD", str(tmp_path))
    m = "mobilenet_v2@32"
    res = explore_gen2(
        "ultra96", [m], "reduced", progress=False, axes=("two DMA words", "block fusion")
    )
    pts = {p["label"]: p for p in res["singles"] + res["combinations"]}
    assert set(pts) == {
        "today",
        "dma2",
        "fuse-block",
        "peak16x32",
        "peak16x32-pp8",
        "peak16x32-pp8+pingpong",
        "dma2+fuse-block",
    }
    # Today's point by the independent route of `bamboo advise` (compile, lower, model).
    cfg = preset("ultra96")
    ref = estimate(zoo.build_quantized("mobilenet_v2", 32, 1.0), cfg, "ultra96", cfg.clock_mhz)
    today = pts["today"]
    assert today["models"][m]["fabric_fps"] == pytest.approx(1.0 / ref.fabric_s, rel=1e-6)
    assert {k: today[k] for k in ("dsp", "lut", "ff", "bram36")} == default_model().predict(cfg)
    # Block fusion keeps the expanded tensors on chip: less DRAM, a smaller depthwise share.
    fb = pts["fuse-block"]["models"][m]
    assert fb["dram_x"] < today["models"][m]["dram_x"]
    assert fb["fabric_fps"] > today["models"][m]["fabric_fps"]
    # The 16 x 32 array is over the DSP budget (256 array DSPs + post-processing).
    peak = pts["peak16x32"]
    assert not peak["fits"] and peak["dsp"] > 300 and peak["config"].rows == 16
    # With 8 post-processing lanes it saves 24 lanes' requantizers (2 DSP48E2 each), and
    # the 4 cycles a pixel of its emits cost what the second ACC bank wins back.
    pp8, ov = pts["peak16x32-pp8"], pts["peak16x32-pp8+pingpong"]
    assert pp8["config"].postproc_turns == 4 and pp8["config"].acc_banks == 1
    assert ov["config"] == dataclasses.replace(pp8["config"], acc_banks=2)
    assert peak["dsp"] - pp8["dsp"] == pytest.approx(
        24 * default_model().coefficients["dsp"][1], abs=1
    )
    assert ov["models"][m]["fabric_fps"] > pp8["models"][m]["fabric_fps"]
    assert all(p["fits"] for p in res["combinations"])
    text = render_gen2(res)
    assert "PROJECTIONS OF UNBUILT HARDWARE" in text and "dma2+fuse-block" in text
    for label in pts:
        assert f"  {label} " in text
