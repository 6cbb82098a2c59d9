"""The ``bamboo`` command line. Subcommands import what they need when they run."""

import argparse
import sys

from bamboo import __version__

__all__ = ["main"]


def _cmd_demo(args):
    from bamboo.demo import main as demo

    return demo(
        out=args.out,
        rtl_images=args.rtl_images,
        headline=not args.no_headline,
        task=args.task,
        image=args.image,
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bamboo", description="Bamboo INT8 CNN accelerator toolflow"
    )
    parser.add_argument("--version", action="version", version=f"bamboo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="run the demo: trained and pretrained models, bit-exact "
        "against onnxruntime, on the instruction simulator and the RTL, with "
        "cycle tables, FPS projections and charts",
    )
    p.add_argument("--out", default="build/demo", help="folder of the PNGs (default %(default)s)")
    p.add_argument(
        "--rtl-images",
        type=int,
        default=4,
        help="held-out digits run through the RTL simulation (default %(default)s; 0 skips it)",
    )
    p.add_argument(
        "--no-headline",
        action="store_true",
        help="skip the MobileNetV2-1.0@224 projection (it builds the model once)",
    )
    p.add_argument(
        "--task",
        choices=("all", "segment", "detect"),
        default="all",
        help="segment: the digit segmenter with a mask PNG; detect: the face "
        "detector with the faces drawn in a PNG; all: the full demo (default)",
    )
    p.add_argument(
        "--image",
        default=None,
        help="photo for the face detector (default: scikit-image's astronaut)",
    )
    p.set_defaults(func=_cmd_demo)

    from bamboo.advise import add_advise_parser
    from bamboo.cli_quantize import add_quantize_parser
    from bamboo.compiler.cli_compile import add_compile_parser
    from bamboo.compiler.cli_inspect import add_inspect_parser
    from bamboo.explore import add_explore_parser
    from bamboo.runtime.cli_profile import add_profile_parser
    from bamboo.runtime.cli_run import add_run_parser

    add_quantize_parser(sub)
    add_inspect_parser(sub)
    add_compile_parser(sub)
    add_run_parser(sub)
    add_profile_parser(sub)
    add_advise_parser(sub)
    add_explore_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from bamboo.arch.errors import BambooError

    try:
        return args.func(args) or 0
    except BambooError as exc:
        print(f"bamboo {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``bamboo inspect MODEL | head -1``): stop quietly, and
        # keep Python from reporting the failed flush of stdout at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
