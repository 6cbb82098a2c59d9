"""``bamboo advise MODEL.onnx``: what a network costs on a board, block by block, what to change.

The figures come from the same chain as ``make bench`` (:mod:`bamboo.bench`): the
compiler (import, passes, fabric/CPU partition, lowering), the cycle model
(``bamboo.sim.cycles``) behind the board's memory (``bamboo.arch.timing.BOARDS``) and
the processor-side cost model (:func:`bamboo.report.host_time` with
``bamboo.arch.timing.HOSTS``); FPS is ``1 / max(fabric, processor)`` as the bench
reports it (two frames in flight). Nothing is measured on a board.

Findings (:mod:`bamboo.advise_findings`) rewrite the network
(:mod:`bamboo.advise_rewrite`) and run that chain again, so each effect is a measured
figure of the rewritten network. ``--sweep`` (:mod:`bamboo.advise_sweep`) builds a zoo
family over width multipliers and resolutions. A float ONNX model is quantized first
(onnxruntime's static quantizer on synthetic calibration data), which the output says:
the times depend on shapes and operators, not on the calibration.
"""

import json
import pathlib
import sys
import tempfile
from dataclasses import dataclass

from bamboo.arch.errors import BambooError

__all__ = [
    "AdviseError",
    "Estimate",
    "add_advise_parser",
    "advise",
    "cmd_advise",
    "estimate",
    "load_model",
    "measure",
    "render",
]

_QUANT_OPS = (
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
)
CALIBRATION_SAMPLES = 4


class AdviseError(BambooError):
    """A model or an option ``bamboo advise`` cannot work with."""


@dataclass
class Estimate:
    """One network on one board: the compiled program and every figure of its frame."""

    graph: object  # the partitioned IR graph it was lowered from
    compiled: object
    report: object  # cycle report at the board's memory and clock
    ideal: object  # the same with an ideal memory
    cpu: dict  # bamboo.report.host_time
    host: object
    clock_mhz: float

    @property
    def fabric_s(self):
        return self.report.seconds

    @property
    def cpu_s(self):
        return self.cpu["seconds"]

    @property
    def fps(self):
        return 1.0 / max(self.fabric_s, self.cpu_s)

    @property
    def bound(self):
        return "CPU" if self.cpu_s > self.fabric_s else "fabric"

    @property
    def macs(self):
        from bamboo.compiler.inspect import macs

        g = self.compiled.graph
        return sum(macs(g, n) for n in g.nodes if n.op in ("conv", "fc"))

    def summary(self):
        return {
            "fps": round(self.fps, 2),
            "fabric_ms": round(1e3 * self.fabric_s, 4),
            "cpu_ms": round(1e3 * self.cpu_s, 4),
            "bound": self.bound,
            "macs": self.macs,
            "cycles": self.report.total,
            "fabric_steps": self.cpu["fabric_steps"],
            "pspl_bytes": self.cpu["exchange_bytes"],
        }


def _cpu_work(compiled):
    """What the processor does per frame: CPU nodes with their shapes, fabric steps with
    the shapes crossing PS/PL."""
    g = compiled.graph
    by_name = {n.name: n for n in g.nodes}

    def shapes(ts):
        return tuple(g.tensors[t].shape for t in ts)

    return tuple(
        tuple(
            (name, by_name[name].op, shapes(by_name[name].inputs), shapes(by_name[name].outputs))
            for name in s.nodes
        )
        if not s.on_fabric
        else ("fabric", shapes(s.inputs), shapes(s.outputs))
        for s in compiled.steps
    )


def measure(graph, config, board, clock_mhz, like=None):
    """Lower a partitioned IR ``graph`` for ``config`` and run the bench's models on it.

    ``like``: an :class:`Estimate` whose processor-side time is reused when the processor
    does the same work (same CPU nodes and shapes, same PS/PL steps), so a rewrite of the
    fabric side is not blurred by the timing noise of measuring the CPU side again.
    """
    from bamboo.arch.timing import BOARDS, HOSTS
    from bamboo.compiler.backend import artifact_writer, lower_graph
    from bamboo.sim import cycles

    from . import report

    compiled = lower_graph(graph, config)
    blob = artifact_writer.build(compiled)
    host = HOSTS[board]
    if like is not None and _cpu_work(like.compiled) == _cpu_work(compiled):
        cpu = like.cpu
    else:
        cpu = report.host_time(blob, host)
    return Estimate(
        graph,
        compiled,
        cycles.model_compiled(compiled, BOARDS[board], clock_mhz),
        cycles.model_compiled(compiled, BOARDS["ideal"], clock_mhz),
        cpu,
        host,
        clock_mhz,
    )


def estimate(path, config, board, clock_mhz, options=None, like=None):
    """:func:`measure` of the quantized ONNX model ``path`` compiled with ``options``
    (``se_on_fabric``, ``fc_on_fabric``)."""
    from bamboo.compiler.cli_inspect import compile_model
    from bamboo.compiler.errors import CompilerError

    try:
        graph = compile_model(str(path), **(options or {}))
    except CompilerError as exc:
        raise AdviseError(f"{path}: {exc}") from None
    return measure(graph, config, board, clock_mhz, like)


def _image_input(model):
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise AdviseError(f"the model must have one input, it has {len(inputs)}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(d > 0 for d in dims[1:]):
        raise AdviseError(f"input {inputs[0].name!r} must be NCHW with a fixed size, not {dims}")
    return inputs[0].name, [1] + dims[1:]


def load_model(path, workdir):
    """``(quantized ONNX path, note)``: ``path`` itself when it is quantized, else a
    quantized copy in ``workdir`` made on synthetic calibration data (the note says so)."""
    import numpy as np
    import onnx

    path = pathlib.Path(path)
    if not path.is_file():
        raise AdviseError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for bad files
        raise AdviseError(f"{path}: not an ONNX model ({exc.__class__.__name__})") from None
    name, shape = _image_input(model)
    if any(n.op_type in _QUANT_OPS for n in model.graph.node):
        return path, None
    from bamboo.models.quantize import quantize

    rng = np.random.default_rng(0)
    images = rng.standard_normal([CALIBRATION_SAMPLES] + shape[1:]).astype(np.float32)
    out = pathlib.Path(workdir) / (path.stem + ".qdq.onnx")
    quantize(path, out, images, "qdq", input_name=name)
    return out, (
        f"{path.name} is a float model: quantized to INT8 (QDQ, onnxruntime) on "
        f"{CALIBRATION_SAMPLES} synthetic N(0,1) calibration inputs for this estimate; "
        "times depend on shapes and operators, not on the calibration"
    )


def advise(path, board="ultra96", clock_mhz=250.0, fps=None, progress=None):
    """Everything ``bamboo advise`` prints, as a dict (see :func:`render`)."""
    from bamboo.arch import preset

    from .advise_blocks import block_rows
    from .advise_findings import findings

    config = preset(board)
    with tempfile.TemporaryDirectory(prefix="bamboo-advise-") as work:
        qpath, note = load_model(path, work)
        base = estimate(qpath, config, board, clock_mhz)
        found = findings(qpath, base, config, board, clock_mhz, work, progress)
    result = {
        "model": str(path),
        "board": board,
        "config": config.name,
        "array": f"{config.rows} x {config.cols}",
        "clock_mhz": clock_mhz,
        "quantized_here": note,
        "target_fps": fps,
        **base.summary(),
        "blocks": block_rows(base),
        "findings": found,
    }
    if fps is not None:
        result["meets_target"] = base.fps >= fps
    return result


def _ms(v):
    return f"{v:.2f}" if v >= 0.01 or v == 0 else f"{v:.3f}"


def render(res, top=None):
    """The result of :func:`advise` as text."""
    lines = [
        f"{res['model']} on {res['board']} ({res['array']} array) at "
        f"{res['clock_mhz']:g} MHz: {res['macs'] / 1e6:.1f} M MACs, {res['fps']:.1f} FPS "
        f"(fabric {res['fabric_ms']:.2f} ms, processor {res['cpu_ms']:.2f} ms per frame; "
        f"{res['bound']}-bound; {res['fabric_steps']} fabric step"
        f"{'s' * (res['fabric_steps'] != 1)}, {res['pspl_bytes'] / 1e3:.1f} KB across PS/PL)"
    ]
    if res["quantized_here"]:
        lines.append(f"note: {res['quantized_here']}")
    if res["target_fps"] is not None:
        lines.append(
            f"target {res['target_fps']:g} FPS: "
            + (
                "met"
                if res["meets_target"]
                else f"missed by {res['target_fps'] - res['fps']:.1f} FPS"
            )
        )
    blocks = res["blocks"]
    if top:
        keep = {b["block"] for b in sorted(blocks, key=lambda b: -b["share"])[:top]}
        blocks = [b for b in blocks if b["block"] in keep]
    w = max([5] + [min(len(b["block"]), 36) for b in blocks])
    lines += [
        "",
        f"{'block':<{w}} {'MACs':>8} {'cycles':>8} {'fab ms':>7} {'CPU ms':>7} "
        f"{'PS/PL B':>8} {'share':>6} {'util':>6} {'fab/cpu':>7}  bound",
    ]
    for b in blocks:
        name = b["block"] if len(b["block"]) <= w else "..." + b["block"][-(w - 3) :]
        lines.append(
            f"{name:<{w}} {b['macs'] / 1e6:>7.2f}M {b['cycles']:>8} "
            f"{_ms(b['fabric_ms']):>7} {_ms(b['cpu_ms']):>7} {b['pspl_bytes']:>8} "
            f"{b['share']:>6.1%} {b['utilization']:>6.1%} {b['split']:>7}  {b['bound']}"
        )
    if top and len(blocks) < len(res["blocks"]):
        lines.append(f"({len(res['blocks']) - len(blocks)} more blocks; --top 0 shows all)")
    lines += [
        "",
        "findings (each effect measured by compiling the rewritten network and "
        "running the cycle and processor models on it):",
    ]
    if not res["findings"]:
        lines.append("  none")
    for k, f in enumerate(res["findings"], 1):
        lines.append(f"{k}. {f['title']}")
        lines.append(f"   cost: {f['cost']}")
        if f.get("change"):
            lines.append(f"   change: {f['change']}")
        lines.append(f"   effect: {f['effect']}")
    return "\n".join(lines)


def add_advise_parser(subparsers):
    """Add the ``advise`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "advise",
        help="per-block cost of a network on a board, findings with measured "
        "effects, and a width/resolution sweep of the zoo families",
    )
    p.add_argument(
        "model",
        help="ONNX model (float or quantized), or with --sweep a zoo "
        "family name (mobilenet_v2, efficientnet_b0, ...)",
    )
    p.add_argument(
        "--board", default="ultra96", help="board and configuration (default %(default)s)"
    )
    p.add_argument(
        "--clock", type=float, default=250.0, help="fabric clock in MHz (default %(default)s)"
    )
    p.add_argument("--fps", type=float, help="target frames per second")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--png",
        metavar="FILE",
        help="write a bar chart (per block; with --sweep: FPS against MACs)",
    )
    p.add_argument("--top", type=int, default=0, help="show only the N costliest blocks")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="sweep width multiplier and resolution of the model's zoo family",
    )
    p.add_argument("--family", help="zoo family of --sweep when the file name does not say")
    p.add_argument("--widths", help="comma-separated width multipliers of --sweep")
    p.add_argument("--resolutions", help="comma-separated input sizes of --sweep")
    p.add_argument(
        "--accuracy",
        metavar="CSV",
        help="your measured accuracies for the sweep's points: columns width,resolution,accuracy",
    )
    p.set_defaults(func=cmd_advise)
    return p


def _floats(text, what, kind=float):
    try:
        vals = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise AdviseError(f"--{what} must be comma-separated numbers, not {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise AdviseError(f"--{what} must be positive numbers, not {text!r}")
    return vals


def cmd_advise(args, out=None):
    """Run ``bamboo advise`` (errors are :class:`AdviseError`, one line from the CLI)."""
    from bamboo.arch.config import PRESETS
    from bamboo.arch.timing import BOARDS, HOSTS

    out = out or sys.stdout
    if args.board not in PRESETS or args.board not in BOARDS or args.board not in HOSTS:
        boards = sorted(set(PRESETS) & set(BOARDS) & set(HOSTS))
        raise AdviseError(f"unknown board {args.board!r}; choose one of {', '.join(boards)}")
    if not args.clock > 0:
        raise AdviseError(f"--clock must be positive, not {args.clock!r}")
    if args.fps is not None and not args.fps > 0:
        raise AdviseError(f"--fps must be positive, not {args.fps!r}")
    if args.sweep:
        from .advise_sweep import render_sweep, sweep, write_sweep_png

        widths = _floats(args.widths, "widths") if args.widths else None
        res = _floats(args.resolutions, "resolutions", int) if args.resolutions else None
        result = sweep(
            args.model,
            args.board,
            args.clock,
            args.fps,
            widths,
            res,
            family=args.family,
            accuracy=args.accuracy,
        )
        if args.png:
            write_sweep_png(result, args.png)
        print(json.dumps(result, indent=1) if args.json else render_sweep(result), file=out)
        return 0
    import time

    from .report import progress as bar

    start = time.perf_counter()
    result = advise(
        args.model,
        args.board,
        args.clock,
        args.fps,
        progress=lambda i, n: bar("findings", i, n, start, time.perf_counter()),
    )
    if args.png:
        from .advise_sweep import write_blocks_png

        write_blocks_png(result, args.png)
    print(json.dumps(result, indent=1) if args.json else render(result, args.top), file=out)
    return 0
