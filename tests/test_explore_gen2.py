"""``bamboo explore --gen2``: the engine-generation-2 lever projections on a tiny sweep,
today's point against ``bamboo advise``'s chain, one-line errors."""

import pytest
from bamboo.arch.timing import EngineLevers

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
    assert [s[0] for s in singles] == ["today", "dma2", "fuse-block"]
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
    assert set(pts) == {"today", "dma2", "fuse-block", "dma2+fuse-block"}
    # Today's point by the independent route of `bamboo advise` (compile, lower, model).
    cfg = preset("ultra96")
    ref = estimate(zoo.build_quantized("mobilenet_v2", 32, 1.0), cfg, "ultra96", cfg.clock_mhz)
    today = pts["today"]
    assert today["models"][m]["fabric_fps"] == pytest.approx(1.0 / ref.fabric_s, rel=1e-6)
    assert {k: today[k] for k in ("dsp", "lut", "ff", "bram36")} == default_model().predict(cfg)
    # Its shares as `make bench` counts them (bamboo.report, by graph node).
    from bamboo.arch.timing import BOARDS
    from bamboo.compiler.backend import lower_graph
    from bamboo.compiler.cli_inspect import compile_model
    from bamboo.sim import cycles

    from bamboo.report import kind_summary, layer_rows

    compiled = lower_graph(compile_model(str(zoo.build_quantized("mobilenet_v2", 32, 1.0))), cfg)
    kinds = kind_summary(
        layer_rows(compiled, cycles.model_compiled(compiled, BOARDS["ultra96"])), cfg
    )
    assert today["models"][m]["depthwise"] == pytest.approx(kinds["depthwise"]["share"])
    assert today["models"][m]["macless"] == pytest.approx(kinds.get("other", {}).get("share", 0))
    # Block fusion keeps the expanded tensors on chip: less DRAM, a smaller depthwise share.
    fb = pts["fuse-block"]["models"][m]
    assert fb["dram_x"] < today["models"][m]["dram_x"]
    assert fb["fabric_fps"] > today["models"][m]["fabric_fps"]
    # The levers are EngineLevers fields over the preset: the configuration is today's.
    assert all(p["config"] == cfg for p in pts.values())
    assert pts["dma2"]["levers"].dma_words == 2 and today["levers"] == EngineLevers()
    assert all(p["fits"] for p in res["combinations"])
    text = render_gen2(res)
    assert "PROJECTIONS OF UNBUILT HARDWARE" in text and "dma2+fuse-block" in text
    for label in pts:
        assert f"  {label} " in text
