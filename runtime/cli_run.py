"""The ``bamboo run MODEL.bmb --input x.npy`` subcommand: inference without the compiler.

Wired into ``bamboo/cli.py`` with :func:`add_run_parser`; on a board without the
compiler's dependencies, ``python -m bamboo.runtime.cli_run`` runs the same command.

The input is a ``.npy`` array shaped as the model's ONNX input (float values, or
codes with ``--raw``), or an image (PNG, JPEG... read with Pillow): converted to
grey or RGB as the input's channels say, resized to the input's height and width
(bilinear) and normalized as ``(pixel - mean) / std`` with ``--mean``/``--std``
(default 127.5 and 127.5: pixels to [-1, 1], as the model zoo and the digits model
are calibrated). The command prints each output's shape, the top five classes of
a classifier output (``(1, K)``), and the transfer and segment statistics.
"""

import argparse
import sys

import numpy as np

__all__ = ["add_run_parser", "cmd_run", "load_image", "main"]

_IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)


def add_run_parser(subparsers):
    """Add the ``run`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser("run", help="run a .bmb artifact on the simulator or the board")
    _arguments(p)
    p.set_defaults(func=cmd_run)
    return p


def _arguments(p):
    p.add_argument("model", help="compiled artifact (.bmb)")
    p.add_argument(
        "--input", "-i", required=True, help=".npy array shaped as the ONNX input, or an image file"
    )
    p.add_argument(
        "--backend",
        default="isa",
        choices=["isa", "rtl", "board"],
        help="instruction simulator (default), RTL simulation or the board",
    )
    p.add_argument("--output", "-o", help="save the first output (or all, as .npz) here")
    p.add_argument("--raw", action="store_true", help="input and outputs are quantized codes")
    p.add_argument("--bitstream", help="board: .bit to load (with its .hwh for an Overlay)")
    p.add_argument("--mean", type=float, default=127.5, help="image normalization mean")
    p.add_argument("--std", type=float, default=127.5, help="image normalization std")
    p.add_argument("--repeat", type=int, default=1, help="run this many times (timing)")


def load_image(path, shape, mean=127.5, std=127.5):
    """An image file as a float32 NCHW array of ``shape`` ``(1, C, H, W)``, C 1 or 3."""
    from bamboo.runtime.errors import RuntimeBambooError

    try:
        from PIL import Image
    except ImportError:
        raise RuntimeBambooError(
            "reading images needs Pillow (pip install pillow); or pass a .npy array"
        ) from None
    if not (np.isfinite(mean) and np.isfinite(std) and std != 0):
        raise RuntimeBambooError(
            f"--mean and --std must be finite and --std nonzero, not {mean} and {std}"
        )
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise RuntimeBambooError(
            f"the model input {shape} is not an image (1, C, H, W) "
            "with 1 or 3 channels; pass a .npy array"
        )
    try:
        img = Image.open(path)
        img = img.convert("L" if shape[1] == 1 else "RGB")
    except OSError as exc:
        raise RuntimeBambooError(f"cannot read image {path}: {exc}") from None
    img = img.resize((shape[3], shape[2]), Image.BILINEAR)
    x = np.asarray(img, np.float32).reshape(shape[2], shape[3], shape[1])
    return ((x - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)


def _load_input(args, spec):
    from pathlib import Path

    from bamboo.runtime.errors import RuntimeBambooError

    path = Path(args.input)
    if not path.exists():
        raise RuntimeBambooError(f"input {path} does not exist")
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        if args.raw:
            raise RuntimeBambooError("--raw takes a .npy of codes, not an image")
        return load_image(path, spec.shape, args.mean, args.std)
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise RuntimeBambooError(
            f"cannot read {path} as a .npy array: {str(exc) or type(exc).__name__}"
        ) from None
    if not isinstance(x, np.ndarray):
        raise RuntimeBambooError(f"{path} is an .npz archive: pass one .npy array")
    return x  # the session checks dtype and shape (no reshaping)


def _format_stats(st):
    lines = []
    for key, label in (("ps_to_pl", "PS->PL"), ("pl_to_ps", "PL->PS")):
        d = st[key]
        lines.append(
            f"  {label}: {d['transfers']} transfers, {d['bytes']} bytes, "
            f"{d['seconds'] * 1e3:.3f} ms"
        )
    seg = st["segments"]
    lines.append(
        f"  fabric: {len(seg)} segments, {sum(s['runs'] for s in seg)} runs, "
        f"{st['fabric_seconds'] * 1e3:.3f} ms"
        + (f", {sum(s['cycles'] for s in seg)} cycles" if any(s["cycles"] for s in seg) else "")
    )
    cpu = ", ".join(
        f"{op} {d['runs']}x {d['seconds'] * 1e3:.2f} ms" for op, d in sorted(st["cpu"].items())
    )
    lines.append(f"  cpu: {st['cpu_seconds'] * 1e3:.3f} ms ({cpu or 'none'})")
    lines.append(f"  frames: {st['frames']}, {st['frame_seconds'] * 1e3:.3f} ms")
    return lines


def cmd_run(args, out=None):
    """Run ``bamboo run``; errors are :class:`BambooError` (one line from the CLI)."""
    from bamboo.runtime.session import Session

    out = out or sys.stdout
    options = {"bitstream": args.bitstream} if args.bitstream else {}
    with Session(args.model, backend=args.backend, **options) as sess:
        spec = sess.get_inputs()[0]
        if len(sess.get_inputs()) != 1:
            from bamboo.runtime.errors import RuntimeBambooError

            raise RuntimeBambooError(
                f"bamboo run feeds one input; this model takes {len(sess.get_inputs())}"
            )
        x = _load_input(args, spec)
        for _ in range(max(1, args.repeat)):
            outs = sess.run(None, {spec.name: x}, raw=args.raw)
        stats = sess.stats()
        for arg, y in zip(sess.get_outputs(), outs):
            print(f"{arg.name}: {y.dtype}{list(y.shape)}", file=out)
            flat = np.asarray(y).reshape(y.shape[0], -1) if y.ndim >= 1 else None
            if flat is not None and y.ndim == 2 and y.shape[0] == 1 and y.shape[1] >= 2:
                top = np.argsort(-flat[0].astype(np.float64), kind="stable")[:5]
                print(
                    "  top-5: " + ", ".join(f"{int(i)} ({flat[0, i]:.4g})" for i in top), file=out
                )
        print(f"{args.backend}:", file=out)
        for line in _format_stats(stats):
            print(line, file=out)
    if args.output:
        import io

        from bamboo.runtime.files import write_atomic

        buf = io.BytesIO()
        if len(outs) == 1:
            np.save(buf, outs[0])
        else:
            np.savez(buf, **{a.name: y for a, y in zip(sess.get_outputs(), outs)})
        write_atomic(args.output, buf.getvalue(), protect=(args.model, args.input))
    return 0


def standalone(prog, description, arguments, command, argv=None):
    """A compiler-free CLI (the board has only the runtime wheel): parse ``argv`` with
    ``arguments(parser)``, run ``command(args)``, report a BambooError as one line."""
    from bamboo.arch.errors import BambooError

    parser = argparse.ArgumentParser(prog=prog, description=description)
    arguments(parser)
    args = parser.parse_args(argv)
    try:
        return command(args)
    except BambooError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def main(argv=None):
    """``python -m bamboo.runtime.cli_run MODEL.bmb --input x.npy``: the compiler-free CLI."""
    return standalone(
        "bamboo run", "run a .bmb artifact (no compiler needed)", _arguments, cmd_run, argv
    )


if __name__ == "__main__":
    sys.exit(main())
