"""The ``bamboo`` command line. Subcommands import what they need when they run."""

import argparse
import sys

from bamboo import __version__

__all__ = ["main"]


def _cmd_selfcheck(args):
    from bamboo.runtime.selfcheck import run_selfcheck

    return run_selfcheck(verbose=args.verbose)


def _cmd_demo(args):
    from bamboo.runtime.selfcheck import run_selfcheck

    print("Bamboo demo: reference-kernel self-check (the end-to-end demo arrives with the runtime)")
    return run_selfcheck(verbose=True)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bamboo", description="Bamboo INT8 CNN accelerator toolflow")
    parser.add_argument("--version", action="version", version=f"bamboo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("selfcheck", help="check the integer reference kernels against onnxruntime")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_cmd_selfcheck)

    p = sub.add_parser("demo", help="run the demo")
    p.set_defaults(func=_cmd_demo)

    from bamboo.compiler.cli_inspect import add_inspect_parser

    add_inspect_parser(sub)
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
