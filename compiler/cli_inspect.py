"""The ``bamboo inspect MODEL.onnx`` subcommand (wired into ``bamboo/cli.py``)."""

import argparse

__all__ = ["add_inspect_parser", "add_frontend_arguments", "cmd_inspect", "compile_model"]


def add_frontend_arguments(p):
    """The options ``inspect`` and ``compile`` share: input shapes, approximations, SE placement."""
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=1x3x224x224",
        help="pin an input's shape (repeatable); a dynamic batch is 1 by default",
    )
    p.add_argument(
        "--approx",
        action="append",
        default=[],
        choices=["leaky-shift"],
        help="allow an approximation (LeakyReLU by shift); default exact tables",
    )
    p.add_argument(
        "--fabric-se",
        dest="se_on_fabric",
        action="store_true",
        help="run squeeze-excite FCs on the fabric as 1x1 convs",
    )
    # The spelling inspect had before both subcommands shared one (kept working, not shown).
    p.add_argument(
        "--se-on-fabric", dest="se_on_fabric", action="store_true", help=argparse.SUPPRESS
    )


def add_inspect_parser(subparsers):
    """Add the ``inspect`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "inspect", help="show how a quantized ONNX model maps onto fabric and CPU"
    )
    p.add_argument("model", help="quantized ONNX model (QDQ or QOperator)")
    add_frontend_arguments(p)
    p.add_argument(
        "--fc-on-fabric",
        action="store_true",
        help="run every fully connected layer on the fabric as a 1x1 conv",
    )
    p.add_argument("--dump-ir", action="store_true", help="print the IR after every pass")
    p.set_defaults(func=cmd_inspect)
    return p


def compile_model(
    path, *, approx=(), se_on_fabric=False, fc_on_fabric=False, dump=None, input_shapes=None
):
    """Import ``path`` and run the pass pipeline; returns the partitioned IR graph.

    ``input_shapes``: ``{input name: shape}`` or ``["NAME=1x3x224x224", ...]`` specifications.
    """
    from .onnx_import import import_onnx
    from .passes import compile_graph
    from .shapes import parse_input_shapes

    if isinstance(input_shapes, (list, tuple)):
        input_shapes = parse_input_shapes(input_shapes)
    graph = import_onnx(path, approx=approx, input_shapes=input_shapes)
    return compile_graph(
        graph,
        approx=approx,
        dump=dump,
        fabric_options={"se_on_fabric": se_on_fabric, "fc_on_fabric": fc_on_fabric},
    )


def cmd_inspect(args):
    """Run ``bamboo inspect``; errors are :class:`BambooError` (one line from the CLI)."""
    from bamboo.arch.errors import BambooError

    from .errors import CompilerError
    from .inspect import render

    try:
        graph = compile_model(
            args.model,
            approx=args.approx,
            se_on_fabric=args.se_on_fabric,
            fc_on_fabric=args.fc_on_fabric,
            dump=args.dump_ir or None,
            input_shapes=args.input_shape,
        )
        text = render(graph, title=str(args.model))
    except BambooError:
        raise
    except Exception as exc:
        # Backstop: the CLI prints one line, never a traceback (tests/compiler/test_fuzz.py
        # looks for the compiler bugs that would land here).
        raise CompilerError(
            f"{args.model}: internal compiler error ({type(exc).__name__}: "
            f"{str(exc)[:200]}); please report it with the model"
        ) from exc
    print(text)
    return 0
