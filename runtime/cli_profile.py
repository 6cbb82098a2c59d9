"""The ``bamboo profile MODEL.bmb`` subcommand: per-layer cycles and time, fabric vs CPU.

Wired into ``bamboo/cli.py`` with :func:`add_profile_parser`; without the compiler,
``python -m bamboo.runtime.cli_profile`` runs the same command. Prints the table of
:func:`bamboo.runtime.profiling.render` (or ``--json``), optionally draws it
(``--png``, matplotlib), and with ``--frames N`` measures frames per second with and
without the pipeline. ``--pace`` (``isa`` only) emulates the fabric's time by the cycle
model (``bamboo.sim.pacing``), the way to see on this machine what the pipeline overlaps
on the board.
"""

import json
import sys

import numpy as np

__all__ = ["add_profile_parser", "cmd_profile", "main"]


def add_profile_parser(subparsers):
    """Add the ``profile`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "profile",
        help="per-layer cycles and time of a .bmb artifact, fabric vs CPU, PS/PL transfers",
    )
    _arguments(p)
    p.set_defaults(func=cmd_profile)
    return p


def _arguments(p):
    p.add_argument("model", help="compiled artifact (.bmb)")
    p.add_argument(
        "--input",
        "-i",
        help=".npy array shaped as the ONNX input, or an image "
        "(default: standard normal values, seed 0)",
    )
    p.add_argument(
        "--backend",
        default="isa",
        choices=["isa", "rtl", "board"],
        help="instruction simulator (default), RTL simulation or the board",
    )
    p.add_argument("--bitstream", help="board: .bit to load (with its .hwh for an Overlay)")
    p.add_argument("--raw", action="store_true", help="the input holds quantized codes")
    p.add_argument("--mean", type=float, default=127.5, help="image normalization mean")
    p.add_argument("--std", type=float, default=127.5, help="image normalization std")
    p.add_argument("--repeat", type=int, default=1, help="frames to profile (times are means)")
    p.add_argument(
        "--warmup",
        type=int,
        help="frames run before profiling (default 1, 0 on "
        "rtl; at least 1 with --pace, whose first run pays the simulator)",
    )
    p.add_argument(
        "--memory",
        help="memory timing of the cycle model (arch/timing.py BOARDS; "
        "default ultra96, cocotb on rtl)",
    )
    p.add_argument(
        "--clock",
        type=float,
        help="clock in MHz of the projection and of the counters (default: the configuration's)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=0,
        help="also measure frames/s over N frames, sequential and pipelined",
    )
    p.add_argument(
        "--pace",
        type=float,
        nargs="?",
        const=1.0,
        metavar="STRETCH",
        help="isa: emulate fabric time by the cycle model (memoized results), "
        "STRETCH times slower (default 1)",
    )
    p.add_argument("--png", help="draw the profile to this PNG (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")


def _feed(args, sess):
    from .cli_run import _load_input
    from .errors import RuntimeBambooError

    specs = sess.get_inputs()
    if args.input:
        if len(specs) != 1:
            raise RuntimeBambooError(f"--input feeds one input; this model takes {len(specs)}")
        return {specs[0].name: _load_input(args, specs[0])}
    rng = np.random.default_rng(0)
    feed = {}
    for spec in specs:
        if args.raw:
            feed[spec.name] = rng.integers(0, 256, spec.shape).astype(np.uint8)
        else:
            feed[spec.name] = rng.standard_normal(spec.shape).astype(np.float32)
    return feed


def cmd_profile(args, out=None):
    """Run ``bamboo profile``; errors are :class:`BambooError` (one line from the CLI)."""
    from .errors import RuntimeBambooError
    from .profiling import profile, render, save_chart, throughput
    from .session import Session

    out = out or sys.stdout
    options = {"bitstream": args.bitstream} if args.bitstream else {}
    if args.pace is not None:
        if args.backend != "isa":
            raise RuntimeBambooError("--pace emulates the fabric on the isa backend only")
        if not args.pace > 0:
            raise RuntimeBambooError(f"--pace takes a positive stretch, not {args.pace:g}")
        options["pace"] = args.pace
    memory = args.memory or ("cocotb" if args.backend == "rtl" else "ultra96")
    warmup = args.warmup if args.warmup is not None else (0 if args.backend == "rtl" else 1)
    if args.pace is not None:  # the first run pays the simulator; the memo serves the rest
        warmup = max(warmup, 1)
    with Session(args.model, backend=args.backend, **options) as sess:
        feed = _feed(args, sess)
        for _ in range(warmup):
            sess.run(None, feed, raw=args.raw)
        prof = profile(sess, feed, args.repeat, raw=args.raw, memory=memory, clock_mhz=args.clock)
        if args.frames:
            prof.throughput = throughput(sess, feed, args.frames, raw=args.raw)
    if args.json:
        json.dump(prof.to_dict(), out, indent=1)
        out.write("\n")
    else:
        print(render(prof), file=out)
    if args.png:
        save_chart(prof, args.png)
        if not args.json:
            print(f"chart: {args.png}", file=out)
    return 0


def main(argv=None):
    """``python -m bamboo.runtime.cli_profile MODEL.bmb``: the compiler-free CLI."""
    from .cli_run import standalone

    return standalone(
        "bamboo profile", "profile a .bmb artifact per layer", _arguments, cmd_profile, argv
    )


if __name__ == "__main__":
    sys.exit(main())
