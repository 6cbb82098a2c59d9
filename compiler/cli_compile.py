"""The ``bamboo compile MODEL.onnx -o MODEL.bmb`` subcommand (wired into ``bamboo/cli.py``)."""

import sys
import time

__all__ = ["add_compile_parser", "cmd_compile"]


def add_compile_parser(subparsers):
    """Add the ``compile`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser("compile", help="compile a quantized ONNX model to a .bmb artifact")
    p.add_argument("model", help="quantized ONNX model (QDQ or QOperator)")
    p.add_argument("-o", "--output", help="artifact path (default: MODEL with .bmb)")
    from bamboo.arch import PRESETS

    p.add_argument(
        "--config",
        default="ultra96",
        choices=sorted(PRESETS),
        help="accelerator preset (default ultra96)",
    )
    from .cli_inspect import add_frontend_arguments

    add_frontend_arguments(p)
    p.add_argument(
        "--no-column-taps",
        action="store_true",
        help="keep a stem conv's own shape on the fabric: no processor-side column layout "
        "(fewer CPU ms, more fabric cycles)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_compile)
    return p


def cmd_compile(args, out=None):
    """Run ``bamboo compile``; errors are :class:`BambooError` (one line from the CLI)."""
    from pathlib import Path

    from bamboo.arch import preset

    from .backend import artifact_writer, lower_graph
    from .cli_inspect import compile_model

    out = out or sys.stderr
    config = preset(args.config)
    start = time.perf_counter()
    graph = compile_model(
        args.model,
        approx=args.approx,
        se_on_fabric=args.se_on_fabric,
        input_shapes=args.input_shape,
    )

    def progress(done, total, name):
        if not args.quiet:
            print(f"\r[{done}/{total}] {name[:60]:<60}", end="", file=out, flush=True)

    compiled = lower_graph(graph, config, progress, column_taps=not args.no_column_taps)
    blob = artifact_writer.build(compiled)
    from bamboo.runtime.files import write_atomic

    path = Path(args.output) if args.output else Path(args.model).with_suffix(".bmb")
    write_atomic(path, blob, protect=(args.model,))
    if not args.quiet:
        s = compiled.stats
        cpu = [n for n in compiled.graph.nodes if n.target == "cpu"]
        print(
            f"\r{' ' * 72}\r{path}: {len(blob)} bytes, {s['instructions']} instructions, "
            f"DDR footprint {s['footprint']} bytes {s['regions']}, "
            f"{len(cpu)} CPU nodes, {time.perf_counter() - start:.1f} s",
            file=out,
        )
        for note in graph.notes:
            print(f"  note: {note}", file=out)
        for n in cpu:
            print(f"  cpu: {n.name} ({n.op}): {n.reason}", file=out)
    return 0
