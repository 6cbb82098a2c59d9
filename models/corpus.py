"""The corpus: real torchvision and timm architectures exported and quantized as users do.

``python -m bamboo.models.corpus [NAME ...] [--full] [--list] [--copy-to DIR] [--table]``

Each entry is a published architecture built by its library's own constructor
(torchvision 0.28 or timm, random weights with the BatchNorm statistics of a trained
network: :func:`bamboo.models.export.calibrate_batchnorm` on real photos), exported
with a **dynamic batch axis** the way a user would (``torch.onnx.export`` with
``dynamic_axes``, or the dynamo exporter with ``dynamic_shapes``; a batch of two as the
example input, so that neither exporter specializes the batch to 1), then quantized by
onnxruntime: QDQ with the project's exact ``quantize_static`` call
(:func:`bamboo.models.quantize.quantize`), QOperator with the same call and
``QuantFormat.QOperator``, uint8 or int8 activations, after onnxruntime's
``quant_pre_process`` or straight from the exporter's file.

Not every combination is built for every model; each axis is covered on purpose:

* **exporter**: the legacy TorchScript exporter (``dynamo=False``, opset 17, as most
  tutorials still write it) on 10 entries; the dynamo exporter (``dynamo=True``, its
  default opset, onnxscript's optimizer) on 6 (MobileNetV3-small, SqueezeNet,
  EfficientNet-B4, RegNetX-400MF, GhostNet, TinyNet).
* **pre-processing**: ``quant_pre_process`` on 11; none (the exporter's graph straight
  into the quantizer) on 5, both exporters among them (MnasNet, timm MobileNetV3-large
  and the detector: legacy; SqueezeNet and TinyNet: dynamo).
* **format**: QDQ on 11; QOperator on 5 (timm MobileNetV3-large, ShuffleNet V2,
  RegNetX-400MF, ResNet-18, EfficientNet-Lite0), both exporters among them.
* **activations**: uint8 on 12; int8 on 4 (SqueezeNet, EfficientNet-B0, ResNet-18,
  EfficientNet-Lite0), both formats and both exporters among them.
* **structure**: depthwise-separable, squeeze-excite with SiLU/HardSwish/Sigmoid gates,
  channel shuffle, Fire modules, grouped convolutions (RegNet), plain residuals,
  Inception branches with a 3x3 stride-1 MaxPool, Ghost modules, ``x.mean([2, 3])``
  heads (ShuffleNet V2, MnasNet, timm), and a YOLO-style detector head on a torchvision
  MobileNetV3 backbone (nearest Resize, Concat, Sigmoid, Reshape/Transpose with the
  batch taken from the dynamic shape).

Sizes: ``make test`` builds every entry at its small ``resolution`` (64 or 96); the
``--full`` builds (``full_resolution``: the architecture's nominal input) are for the
slow set. Files are cached under ``<model cache>/corpus/`` (``BAMBOO_MODEL_CACHE``,
default ``build/models``), keyed by the entry, the resolution, this module's and the
export/quantize/calibration modules' source, and the versions of torch, torchvision,
timm, onnx, onnxscript, onnxruntime and numpy.
"""

import argparse
import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import sys
import tempfile
import warnings

import numpy as np

__all__ = [
    "CORPUS",
    "CorpusEntry",
    "build",
    "build_float",
    "evaluate",
    "main",
    "random_inputs",
    "table",
]

_VERSIONED = ("torch", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime", "numpy")
_SOURCES = ("corpus", "export", "quantize", "calibration", "vision")
CALIBRATION_IMAGES = 8
LEGACY_OPSET = 17


@dataclasses.dataclass(frozen=True)
class CorpusEntry:
    """One corpus model and how it is exported and quantized.

    Attributes
    ----------
    library : {"torchvision", "timm", "detector"}
        Where the architecture comes from (``detector``: :func:`_detector` on the
        torchvision backbone ``arch``).
    arch : str
        The library's constructor name.
    exporter : {"legacy", "dynamo"}
    pre_process : bool
        onnxruntime's ``quant_pre_process`` between export and quantization.
    format : {"qdq", "qoperator"}
    activation : {"uint8", "int8"}
    resolution, full_resolution : int
        Square input size in ``make test`` and in the slow set.
    """

    library: str
    arch: str
    exporter: str = "legacy"
    pre_process: bool = True
    format: str = "qdq"
    activation: str = "uint8"
    resolution: int = 64
    full_resolution: int = 224


CORPUS = {
    e_name: e
    for e_name, e in (
        ("tv_mobilenet_v2", CorpusEntry("torchvision", "mobilenet_v2")),
        ("tv_mobilenet_v3_small", CorpusEntry("torchvision", "mobilenet_v3_small", "dynamo")),
        (
            "timm_mobilenetv3_large_100",
            CorpusEntry("timm", "mobilenetv3_large_100", format="qoperator"),
        ),
        (
            "tv_shufflenet_v2_x1_0",
            CorpusEntry("torchvision", "shufflenet_v2_x1_0", format="qoperator"),
        ),
        (
            "tv_squeezenet1_1",
            CorpusEntry(
                "torchvision", "squeezenet1_1", "dynamo", pre_process=False, activation="int8"
            ),
        ),
        ("tv_efficientnet_b0", CorpusEntry("torchvision", "efficientnet_b0", activation="int8")),
        (
            "tv_efficientnet_b4",
            CorpusEntry("torchvision", "efficientnet_b4", "dynamo", full_resolution=380),
        ),
        ("tv_mnasnet1_0", CorpusEntry("torchvision", "mnasnet1_0", pre_process=False)),
        (
            "tv_regnet_x_400mf",
            CorpusEntry("torchvision", "regnet_x_400mf", "dynamo", format="qoperator"),
        ),
        (
            "tv_resnet18",
            CorpusEntry("torchvision", "resnet18", format="qoperator", activation="int8"),
        ),
        ("tv_googlenet", CorpusEntry("torchvision", "googlenet", resolution=96)),
        ("timm_ghostnet_100", CorpusEntry("timm", "ghostnet_100", "dynamo")),
        (
            "timm_efficientnet_lite0",
            CorpusEntry("timm", "efficientnet_lite0", format="qoperator", activation="int8"),
        ),
        (
            "timm_tinynet_e",
            CorpusEntry("timm", "tinynet_e", "dynamo", pre_process=False, full_resolution=106),
        ),
        (
            "timm_mobilenetv3_large_100_qdq",
            CorpusEntry("timm", "mobilenetv3_large_100", pre_process=False),
        ),
        (
            "yolo_style_mobilenet_v3",
            CorpusEntry("detector", "mobilenet_v3_large", pre_process=False, full_resolution=320),
        ),
    )
}


def cache_dir():
    """``<model cache>/corpus`` (``BAMBOO_MODEL_CACHE`` or ``build/models``)."""
    from .zoo import cache_dir as zoo_cache

    return zoo_cache() / "corpus"


@functools.lru_cache(maxsize=None)
def _source_key():
    here = pathlib.Path(__file__).resolve().parent
    h = hashlib.sha256()
    for m in _SOURCES:
        h.update(m.encode() + b"\0" + (here / f"{m}.py").read_bytes())
    versions = {p: importlib.metadata.version(p) for p in _VERSIONED}
    h.update(json.dumps(versions, sort_keys=True).encode())
    return h.hexdigest()


def _path(name, resolution, kind):
    entry = _entry(name)
    params = json.dumps([name, dataclasses.asdict(entry), resolution, kind], sort_keys=True)
    h = hashlib.sha256((_source_key() + params).encode()).hexdigest()[:12]
    return cache_dir() / f"{name}-{resolution}-{h}.{kind}.onnx"


def _entry(name):
    if name not in CORPUS:
        raise ValueError(f"corpus entry must be one of {sorted(CORPUS)}, not {name!r}")
    return CORPUS[name]


def _detector(backbone_name, classes=4, anchors=3):
    """A YOLO-style two-scale detector on a torchvision backbone, as a torch module.

    The backbone's stride-16 and stride-32 features; the coarse map goes through a 1x1
    Conv, is upsampled (nearest, ``F.interpolate``) and concatenated with the fine one;
    each scale's 1x1 head is reshaped to ``(N, anchors, 5 + classes, H, W)``, permuted,
    passed through a Sigmoid and flattened to ``(N, boxes, 5 + classes)``, and the two
    scales are concatenated: the head of a YOLOv3/v5 export with its decoding left to
    the user.
    """
    import torch
    from torch import nn

    from .vision import torchvision

    features = getattr(torchvision().models, backbone_name)().features
    split = max(
        i
        for i, m in enumerate(features)
        if any(getattr(c, "stride", (1,))[0] == 2 for c in m.modules() if isinstance(c, nn.Conv2d))
        and i < len(features) - 1
    )
    fine_ch = _channels(features[:split])
    coarse_ch = _channels(features)
    outs = anchors * (5 + classes)

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = features[:split]
            self.tail = features[split:]
            self.lateral = nn.Sequential(
                nn.Conv2d(coarse_ch, 64, 1, bias=False), nn.BatchNorm2d(64), nn.Hardswish()
            )
            self.head_coarse = nn.Conv2d(coarse_ch, outs, 1)
            self.head_fine = nn.Conv2d(fine_ch + 64, outs, 1)

        def _decode(self, y):
            n, _, h, w = y.shape
            y = y.reshape(n, anchors, 5 + classes, h, w).permute(0, 1, 3, 4, 2)
            return torch.sigmoid(y).reshape(n, -1, 5 + classes)

        def forward(self, x):
            fine = self.stem(x)
            coarse = self.tail(fine)
            up = nn.functional.interpolate(self.lateral(coarse), scale_factor=2.0, mode="nearest")
            merged = torch.cat([fine, up], dim=1)
            return torch.cat(
                [self._decode(self.head_coarse(coarse)), self._decode(self.head_fine(merged))],
                dim=1,
            )

    return Detector()


def _channels(seq):
    from torch import nn

    return [m for m in seq.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def _module(entry):
    from .vision import timm, torchvision

    if entry.library == "torchvision":
        kwargs = {"aux_logits": False, "init_weights": True} if entry.arch == "googlenet" else {}
        return getattr(torchvision().models, entry.arch)(weights=None, **kwargs)
    if entry.library == "timm":
        return timm().create_model(entry.arch, pretrained=False)
    return _detector(entry.arch)


def _export(module, path, resolution, exporter):
    import torch

    x = torch.zeros(2, 3, resolution, resolution)  # batch 2: neither exporter fixes it to 1
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(
                module,
                (x,),
                str(path),
                dynamo=False,
                opset_version=LEGACY_OPSET,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        else:
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(
                module,
                (x,),
                str(path),
                dynamo=True,
                external_data=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=({0: batch},),
                verbose=False,
                report=False,
            )


def build_float(name, full=False):
    """The float ONNX export of corpus entry ``name`` (dynamic batch), built once.

    Parameters
    ----------
    name : str
        A key of :data:`CORPUS`.
    full : bool
        At ``full_resolution`` instead of the small ``resolution``.

    Returns
    -------
    pathlib.Path
    """
    entry = _entry(name)
    resolution = entry.full_resolution if full else entry.resolution
    path = _path(name, resolution, "float")
    if path.exists():
        return path
    import torch

    from .calibration import photos
    from .export import calibrate_batchnorm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tests build in parallel workers on few cores
    try:
        torch.manual_seed(0)
        module = _module(entry)
        calibrate_batchnorm(module, photos(resolution, count=CALIBRATION_IMAGES))
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as tmp:
            raw = pathlib.Path(tmp) / "model.onnx"
            _export(module, raw, resolution, entry.exporter)
            os.chmod(raw, 0o644)
            os.replace(raw, path)  # atomic: parallel workers may build the same file
    finally:
        torch.set_num_threads(threads)
    return path


def build(name, full=False):
    """The quantized corpus entry ``name``, as its entry says (see the module docstring).

    Returns
    -------
    pathlib.Path
    """
    from .calibration import photos
    from .quantize import pre_process, quantize

    entry = _entry(name)
    resolution = entry.full_resolution if full else entry.resolution
    path = _path(name, resolution, entry.format)
    if path.exists():
        return path
    float_path = build_float(name, full)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".quantize-") as tmp:
        source = (
            pre_process(float_path, pathlib.Path(tmp) / "pre.onnx")
            if entry.pre_process
            else float_path
        )
        quantize(
            source,
            path,
            photos(resolution, count=CALIBRATION_IMAGES),
            entry.format,
            "input",
            entry.activation,
        )
    return path


def random_inputs(name, count=2, full=False):
    """``count`` seeded standard-normal float32 inputs (1, 3, R, R) for entry ``name``."""
    entry = _entry(name)
    resolution = entry.full_resolution if full else entry.resolution
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((1, 3, resolution, resolution), dtype=np.float32) for _ in range(count)
    ]


def evaluate(name, full=False, config="ultra96", count=2):
    """Compile entry ``name`` and run it through ``Session(backend="isa")`` against
    onnxruntime (EXTENDED) on :func:`random_inputs`.

    The reference is onnxruntime on the file's :func:`~bamboo.models.quantize.uint8_twin`:
    the file itself, except for int8-activation QDQ, which onnxruntime runs partly in
    float; then the file as it is is compared too.

    Returns
    -------
    dict
        ``fabric``/``cpu`` node counts, ``cpu_ops`` (op names), ``bit_exact`` (bool) and
        ``differ`` (values that differ), ``float_fallback_differ`` (values that differ
        from onnxruntime's partly-float run of an int8 QDQ file, when it applies), or
        ``error`` (the one-line message) when the compiler refuses the model.
    """
    import onnx
    from bamboo.arch import preset
    from bamboo.arch.errors import BambooError
    from bamboo.compiler.backend import compile_artifact
    from bamboo.compiler.cli_inspect import compile_model
    from bamboo.compiler.reference import reference_session
    from bamboo.runtime.session import Session

    from .quantize import uint8_twin

    path = build(name, full)
    try:
        graph = compile_model(path)
        blob = compile_artifact(graph, preset(config))
    except BambooError as exc:
        return {"error": str(exc).splitlines()[0]}
    cpu = [n for n in graph.nodes if n.target == "cpu"]
    model = onnx.load(str(path))
    twin = uint8_twin(model)
    refs = [reference_session(m) for m in ([twin, model] if twin != model else [twin])]
    differ = [0] * len(refs)
    with Session(blob, backend="isa") as sess:
        (spec,) = sess.io.inputs
        for x in random_inputs(name, count, full):
            got = sess.run(None, {spec.name: x})
            for k, ref in enumerate(refs):
                for g, w in zip(got, ref.run(None, {spec.name: x})):
                    g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
                    differ[k] += (
                        w.size
                        if g.shape != w.shape
                        else int(np.count_nonzero(g.view(np.uint32) != w.view(np.uint32)))
                    )
    out = {
        "fabric": len(graph.nodes) - len(cpu),
        "cpu": len(cpu),
        "cpu_ops": sorted({n.op for n in cpu})
        + ["float mean (output)"] * any(s.mean_axes for s in graph.outputs),
        "bit_exact": differ[0] == 0,
        "differ": differ[0],
    }
    if len(refs) > 1:
        out["float_fallback_differ"] = differ[1]
    return out


README_BEGIN = "<!-- corpus table begins -->"
README_END = "<!-- corpus table ends -->"


def table(names, full=False, out=None):
    """The corpus table (markdown lines) for ``names``: one :func:`evaluate` each, each
    row also printed to ``out`` as it is made."""
    out = out or sys.stdout
    lines = [
        "| model | library | exporter | pre-process | format | activations | input | "
        "fabric / CPU nodes | CPU ops | bit-exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), file=out, flush=True)
    for name in names:
        e = CORPUS[name]
        res = e.full_resolution if full else e.resolution
        try:
            r = evaluate(name, full)
        except Exception as exc:  # a crash is a row of the table, not the end of it
            r = {"error": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"}
        if "error" in r:
            split, ops, exact = "refused", "", f"no: {r['error']}"
        else:
            split = f"{r['fabric']} / {r['cpu']}"
            ops = ", ".join(r["cpu_ops"]) or "-"
            exact = "yes" if r["bit_exact"] else f"no ({r['differ']} values differ)"
            if r.get("float_fallback_differ"):
                exact += (
                    f" (int8 QDQ: vs onnxruntime's partly-float run of the file, "
                    f"{r['float_fallback_differ']} differ)"
                )
        exact = exact.replace("|", "\\|")
        lines.append(
            f"| {name} | {e.library} {e.arch} | {e.exporter} | "
            f"{'yes' if e.pre_process else 'no'} | {e.format} | {e.activation} | "
            f"{res}x{res} | {split} | {ops} | {exact} |"
        )
        print(lines[-1], file=out, flush=True)
    return lines


def write_readme(path, lines, command):
    """Replace the corpus table between the README's markers by ``lines``."""
    path = pathlib.Path(path)
    text = path.read_text()
    begin, end = text.index(README_BEGIN) + len(README_BEGIN), text.index(README_END)
    body = "\n".join([f"Generated by `{command}`.", "", *lines])
    path.write_text(text[:begin] + "\n" + body + "\n" + text[end:])


def main(argv=None):
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m bamboo.models.corpus",
        description="build (and check) the corpus of real exports",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="entries (default: all)")
    parser.add_argument("--full", action="store_true", help="the full (nominal) resolution")
    parser.add_argument("--list", action="store_true", help="list the entries")
    parser.add_argument("--float", action="store_true", help="print the float exports' paths")
    parser.add_argument("--copy-to", metavar="DIR", help="also copy each file into DIR")
    parser.add_argument(
        "--table",
        action="store_true",
        help="compile each entry, run it on the instruction simulator against "
        "onnxruntime and print the README's corpus table",
    )
    parser.add_argument(
        "--readme",
        metavar="README",
        help="with --table: also write the table into README's corpus section",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(CORPUS))
    if unknown:
        print(f"error: unknown corpus entries {unknown}; --list shows them", file=sys.stderr)
        return 2
    names = args.names or list(CORPUS)
    if args.list:
        for name in names:
            print(name, json.dumps(dataclasses.asdict(CORPUS[name])))
        return 0
    if args.table:
        lines = table(names, args.full)
        if args.readme:
            command = " ".join(["python -m bamboo.models.corpus", *(argv or sys.argv[1:])])
            write_readme(args.readme, lines, command)
        return 0
    for name in names:
        path = build_float(name, args.full) if args.float else build(name, args.full)
        if args.copy_to:
            dest = pathlib.Path(args.copy_to)
            dest.mkdir(parents=True, exist_ok=True)
            kind = "float" if args.float else CORPUS[name].format
            res = CORPUS[name].full_resolution if args.full else CORPUS[name].resolution
            shutil.copyfile(path, dest / f"{name}-{res}.{kind}.onnx")
        print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
