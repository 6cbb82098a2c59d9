"""``python -m bamboo.models NAME [--resolution R] [--width W] [--format F]``: build, print path.

NAME is a zoo model, ``digits`` (the trained digits classifier) or ``ultraface``
(the vendored pretrained face detector). ``--stats`` prints parameters and MACs
instead; ``--list`` prints the zoo with its nominal sizes. ``ultraface --accuracy`` measures
face / non-face accuracy on real labelled images (scikit-image's LFW subset): float and
int8 on onnxruntime, int8 compiled on the instruction simulator, and how many images
came out bit-exact.
"""

import argparse
import sys

__all__ = ["main"]

FORMATS = ("qdq", "qoperator", "float")


def _stats_line(name, path):
    from .zoo import graph_stats

    s = graph_stats(path)
    return f"{name:<20} {s['params'] / 1e6:8.3f} M params {s['macs'] / 1e6:10.1f} M MACs  {path}"


def main(argv=None):
    """Entry point; returns the process exit code."""
    from . import digits, faces, zoo

    names = sorted(zoo.ZOO) + ["digits", "ultraface"]
    parser = argparse.ArgumentParser(
        prog="python -m bamboo.models", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "name", nargs="?", choices=names, metavar="NAME", help="one of: " + ", ".join(names)
    )
    parser.add_argument("--resolution", type=int, default=None, help="square input size")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--format", choices=FORMATS, default="qdq")
    parser.add_argument("--stats", action="store_true", help="print params and MACs")
    parser.add_argument("--list", action="store_true", help="list the zoo")
    parser.add_argument(
        "--accuracy",
        action="store_true",
        help="ultraface only: face / non-face accuracy on the LFW subset",
    )
    args = parser.parse_args(argv)
    if args.list:
        for name in names:
            entry = zoo.ZOO.get(name)
            size = (
                f"{entry.resolution}x{entry.resolution}"
                if entry
                else (
                    f"{faces.HEIGHT}x{faces.WIDTH}"
                    if name == "ultraface"
                    else f"{digits.RESOLUTION}x{digits.RESOLUTION}"
                )
            )
            print(f"{name:<20} {size}")
        return 0
    if args.name is None:
        parser.error("NAME is required")
    if args.accuracy:
        if args.name != "ultraface":
            parser.error("--accuracy is measured for ultraface only")
        acc = faces.lfw_accuracy(out=sys.stderr)
        print(
            f"UltraFace RFB-320 on {acc['images']} LFW-subset images (scikit-image; "
            f"face if a box scores >= {faces.FACE_THRESHOLD}): float {acc['float']:.1%}, "
            f"onnxruntime int8 {acc['onnxruntime-int8']:.1%}, Bamboo isa "
            f"{acc['bamboo-isa']:.1%}; {acc['bit_exact']} of {acc['images']} bit-exact"
        )
        return 0
    try:
        if args.name in ("digits", "ultraface"):
            module = digits if args.name == "digits" else faces
            path = (
                module.build_float()
                if args.format == "float"
                else module.build_quantized(args.format)
            )
        elif args.format == "float":
            path = zoo.build_float(args.name, args.resolution, args.width, args.seed)
        else:
            path = zoo.build_quantized(
                args.name, args.resolution, args.width, args.format, args.seed
            )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.stats:
        if args.format != "float":
            # MACs and parameters are those of the float graph the quantized one came from.
            path = {"digits": digits.build_float, "ultraface": faces.build_float}.get(
                args.name,
                lambda: zoo.build_float(args.name, args.resolution, args.width, args.seed),
            )()
        print(_stats_line(args.name, path))
    else:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
