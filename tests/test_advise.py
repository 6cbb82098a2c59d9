"""``bamboo advise``: per-block figures, findings checked against rewritten networks, sweep.

The findings' effects are checked against an independent route: the changed network is
written in torch, exported, quantized and compiled like any user model, and its cycle
model figures must match what ``bamboo advise`` measured on its own graph rewrite.
"""

import json

import pytest

torch = pytest.importorskip("torch", reason="the models are built with torch")
nn = torch.nn


class Net(nn.Module):
    """A ``c``-channel stem, a depthwise ``kernel`` conv with ``act`` and a squeeze-excite
    of ``se`` channels (none if 0), a ``mid``-channel pointwise unit, global pool, classifier."""

    def __init__(self, kernel=5, act=nn.Hardswish, c=16, se=8, mid=24):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU())
        self.dw = nn.Sequential(
            nn.Conv2d(c, c, kernel, 1, kernel // 2, groups=c), nn.BatchNorm2d(c), act()
        )
        self.se = se
        if se:
            self.se_reduce, self.se_expand = nn.Conv2d(c, se, 1), nn.Conv2d(se, c, 1)
        self.pw = nn.Sequential(nn.Conv2d(c, mid, 1), nn.BatchNorm2d(mid), act())
        self.head = nn.Sequential(nn.Conv2d(mid, 64, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.dw(self.stem(x))
        if self.se:
            x = x * torch.sigmoid(self.se_expand(torch.relu(self.se_reduce(self.pool(x)))))
        x = self.head(self.pw(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _export(tmp_path, name, **kw):
    from bamboo.models.export import export_onnx

    torch.manual_seed(0)
    path = tmp_path / f"{name}.onnx"
    export_onnx(Net(**kw).eval(), path, (1, 3, 32, 32))
    return path


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("advise"), "net")


@pytest.fixture(scope="module")
def advice(float_model):
    from bamboo.advise import advise

    return advise(float_model, "ultra96", 250.0, fps=30)


def test_float_torch_export_is_quantized_and_said_so(advice):
    assert "float model" in advice["quantized_here"] and "synthetic" in advice["quantized_here"]
    names = {b["block"] for b in advice["blocks"]}
    assert {"stem/stem.0", "dw/dw.0", "pw/pw.0", "fc"} <= names
    # The squeeze-excite bottleneck is on the CPU, its block is CPU-bound.
    se = [b for b in advice["blocks"] if b["cpu_nodes"]]
    assert se and all(b["cpu_ms"] > 0 for b in se)
    assert sum(b["macs"] for b in advice["blocks"]) == advice["macs"]
    assert sum(b["cycles"] for b in advice["blocks"]) == advice["cycles"]
    assert advice["meets_target"] == (advice["fps"] >= 30)


def _cycles_of(path):
    """The rewritten network's figures by the ordinary route: quantize, compile, cycle model."""
    from bamboo.arch import preset

    from bamboo.advise import estimate, load_model

    qpath, _ = load_model(path, path.parent)
    return estimate(qpath, preset("ultra96"), "ultra96", 250.0)


@pytest.mark.parametrize(
    "kind,variant",
    [
        ("depthwise kernel size", {"kernel": 3}),
        ("table activations", {"act": nn.ReLU}),
        ("squeeze-excite blocks", {"se": 0}),
        # Every channel count rounded up to the array's 32 columns.
        ("channel counts", {"c": 32, "se": 32, "mid": 32}),
    ],
)
def test_finding_effect_matches_the_rewritten_network(advice, tmp_path, kind, variant):
    finding = next(f for f in advice["findings"] if f["kind"] == kind)
    theirs = _cycles_of(_export(tmp_path, kind.replace(" ", "_"), **variant))
    after = finding["after"]
    assert after["macs"] == theirs.macs
    assert after["fabric_steps"] == theirs.cpu["fabric_steps"]
    assert after["pspl_bytes"] == theirs.cpu["exchange_bytes"]
    assert after["cycles"] == pytest.approx(theirs.report.total, rel=0.01)
    assert finding["before"]["cycles"] == advice["cycles"]


def test_json_and_png_from_the_cli(float_model, tmp_path, capsys):
    from bamboo.cli import main

    png = tmp_path / "blocks.png"
    assert main(["advise", str(float_model), "--json", "--png", str(png)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["board"] == "ultra96" and res["findings"] and png.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv,message",
    [
        (["advise", "missing.onnx"], "no such file"),
        (["advise", "x.onnx", "--board", "zedboard"], "unknown board 'zedboard'"),
        (["advise", "x.onnx", "--fps", "-1"], "--fps must be positive"),
        (["advise", "x.onnx", "--sweep"], "--sweep needs a zoo family"),
        (["advise", "mobilenet_v2", "--sweep", "--widths", "a"], "--widths must be"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    from bamboo.cli import main

    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_file_that_is_not_onnx_is_one_line(tmp_path, capsys):
    from bamboo.cli import main

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["advise", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert "not an ONNX model" in err and "\n" not in err


def test_sweep_grid_marks_the_target_and_plots(tmp_path):
    from bamboo.advise_sweep import render_sweep, sweep, write_sweep_png

    acc = tmp_path / "acc.csv"
    acc.write_text("width,resolution,accuracy\n0.25,32,0.41\n0.25,64,0.52\n")
    res = sweep(
        "mobilenet_v2",
        fps=400,
        widths=[0.25],
        resolutions=[32, 64],
        accuracy=str(acc),
        progress=False,
    )
    assert [(p["width"], p["resolution"]) for p in res["points"]] == [(0.25, 32), (0.25, 64)]
    assert [p["accuracy"] for p in res["points"]] == [0.41, 0.52]
    for p in res["points"]:
        assert p["meets_target"] == (p["fps"] >= 400)
    assert res["points"][0]["macs"] < res["points"][1]["macs"]
    text = render_sweep(res)
    assert "mobilenet_v2 on ultra96" in text and "x0.25" in text
    write_sweep_png(res, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "name",
    [
        "mobilenet_v1",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "shufflenet_v1",
        "shufflenet_v2",
        "squeezenet1_1",
        "ghostnet",
        "efficientnet_b0",
        "mcunet",
        "tiny_yolov3",
        "efficientnet_b4",
    ],
)
def test_every_zoo_model(name):
    from bamboo.models import zoo

    from bamboo.advise import advise

    entry = zoo.ZOO[name]
    path = zoo.build_quantized(name, entry.test_resolution, entry.test_width)
    res = advise(path)
    assert res["quantized_here"] is None and res["blocks"] and res["fps"] > 0
    assert sum(b["cycles"] for b in res["blocks"]) == res["cycles"]
    for f in res["findings"]:
        assert f["cost"] and f["effect"]


def test_resolution_finding_matches_the_zoo_model_at_that_size():
    from bamboo.arch import preset
    from bamboo.models import zoo

    from bamboo.advise import advise, estimate

    res = advise(zoo.build_quantized("mobilenet_v2", 32, 0.25))
    finding = next(f for f in res["findings"] if f["kind"] == "resolution")
    assert finding["change"] == "input 24x24"
    theirs = estimate(
        zoo.build_quantized("mobilenet_v2", 24, 0.25), preset("ultra96"), "ultra96", 250.0
    )
    assert finding["after"]["macs"] == theirs.macs
    assert finding["after"]["cycles"] == pytest.approx(theirs.report.total, rel=0.01)
