"""``bamboo quantize MODEL.onnx -o MODEL.int8.onnx --calibration DIR_OR_NPY``.

A float ONNX model as exported (dynamic batch included) becomes the quantized model the
rest of the toolflow takes: onnxruntime's pre-processing (``quant_pre_process``), then
the exact ``quantize_static`` call of :func:`bamboo.models.quantize.quantize` (uint8 or
int8 asymmetric activations, int8 symmetric per-channel weights, MinMax calibration),
QDQ or QOperator. Calibration inputs come from a folder of images (each centre-cropped
to the input's aspect ratio, resized, scaled to 0..1 and normalised by ``--mean`` and
``--std``) or from a ``.npy`` of preprocessed float inputs. ``--input-shape`` pins
dynamic dimensions (a dynamic batch may stay: calibration feeds one input at a time).
"""

import pathlib
import sys
import tempfile
import time

__all__ = ["add_quantize_parser", "cmd_quantize"]

_FORMATS = {"qdq": "qdq", "qop": "qoperator"}
# Ops whose presence means the model is quantized already.
_QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "QGemm",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
    }
)


def add_quantize_parser(subparsers):
    """Add the ``quantize`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "quantize",
        help="quantize a float ONNX model for Bamboo with onnxruntime's static "
        "quantizer, calibrated on a folder of images or a .npy",
    )
    p.add_argument("model", help="float ONNX model, as exported (dynamic batch allowed)")
    p.add_argument("-o", "--output", help="quantized model path (default: MODEL.int8.onnx)")
    p.add_argument(
        "--calibration",
        metavar="DIR_OR_NPY",
        help="a folder of images, or a .npy of float inputs (N, C, H, W) preprocessed as in use",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=1x3x224x224",
        help="pin the input's dynamic dimensions (repeatable)",
    )
    p.add_argument(
        "--mean",
        type=float,
        nargs="+",
        default=[0.0],
        help="per-channel mean on 0..1 pixels, images only (default 0; ImageNet: "
        "0.485 0.456 0.406)",
    )
    p.add_argument(
        "--std",
        type=float,
        nargs="+",
        default=[1.0],
        help="per-channel std on 0..1 pixels, images only (default 1; ImageNet: 0.229 0.224 0.225)",
    )
    p.add_argument(
        "--format",
        choices=sorted(_FORMATS),
        default="qdq",
        help="QDQ (default) or QOperator (QLinearConv, QGemm, ...)",
    )
    p.add_argument(
        "--activation-type",
        choices=["uint8", "int8"],
        default="uint8",
        help="activation codes (default uint8)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="calibrate on at most this many inputs (default all)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_quantize)
    return p


def _load(path):
    import onnx

    from bamboo.models.quantize import QuantizeError

    if not path.is_file():
        raise QuantizeError(f"{path}: no such file")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types on truncated or foreign files
        raise QuantizeError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from exc


def _input_dims(model, pins, path):
    """The model's single input: its name and dims after ``pins`` (None where dynamic).
    Pins are written into ``model``."""
    from bamboo.models.quantize import QuantizeError

    graph = model.graph
    inits = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise QuantizeError(
            f"{path}: {len(inputs)} inputs ({names}); quantize takes models with one"
        )
    (inp,) = inputs
    unknown = sorted(set(pins) - {inp.name})
    if unknown:
        raise QuantizeError(
            f"--input-shape names {unknown[0]!r}, but the model's input is {inp.name!r}"
        )
    dims = inp.type.tensor_type.shape.dim
    pin = pins.get(inp.name)
    if pin is not None and len(pin) != len(dims):
        raise QuantizeError(
            f"--input-shape {inp.name}: {len(pin)} dimensions, but the input has {len(dims)}"
        )
    shape = []
    for axis, d in enumerate(dims):
        static = d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        if pin is not None:
            if static is not None and static != pin[axis]:
                raise QuantizeError(
                    f"--input-shape {inp.name}: dimension {axis} is "
                    f"{static} in the model, not {pin[axis]}"
                )
            d.dim_value = pin[axis]
            static = pin[axis]
        elif static is None and axis > 0:
            label = d.dim_param or "?"
            raise QuantizeError(
                f"input {inp.name!r} has a dynamic dimension {label!r} "
                f"(axis {axis}): pin it with --input-shape "
                f"{inp.name}=" + "x".join(str(x.dim_value or 1) for x in dims)
            )
        shape.append(static)
    return inp.name, shape


def _calibration(args, name, shape):
    """The calibration batch, float32 (N, ...) matching ``shape`` past the batch axis."""
    import numpy as np

    from bamboo.models.calibration import IMAGE_SUFFIXES, load_images
    from bamboo.models.quantize import QuantizeError

    if args.calibration is None:
        raise QuantizeError(
            "--calibration is required: a folder of images or a .npy of "
            "float inputs (a float model is quantized from real inputs)"
        )
    src = pathlib.Path(args.calibration)
    images = src.suffix.lower() != ".npy"
    if not images and (args.mean != [0.0] or args.std != [1.0]):
        raise QuantizeError("--mean/--std apply to an image folder; a .npy is used as given")
    if any(s == 0 for s in args.std):
        raise QuantizeError("--std must be non-zero")
    if not src.exists():
        raise QuantizeError(f"--calibration {src}: no such file or folder")
    if images:
        if not src.is_dir():
            raise QuantizeError(f"--calibration {src}: give a folder of images or a .npy")
        files = sorted(f for f in src.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise QuantizeError(f"--calibration {src}: no images ({', '.join(IMAGE_SUFFIXES)})")
        if len(shape) != 4 or shape[1] not in (1, 3):
            raise QuantizeError(
                f"input {name!r} has shape {shape}: an image folder needs an "
                f"NCHW input with 1 or 3 channels; give a .npy instead"
            )
        channels = shape[1]
        for flag, values in (("--mean", args.mean), ("--std", args.std)):
            if len(values) not in (1, channels):
                raise QuantizeError(f"{flag}: {len(values)} values for {channels} channels")
        files = files[: args.limit] if args.limit else files
        try:
            return load_images(files, shape[2], shape[3], args.mean, args.std, channels)
        except OSError as exc:
            raise QuantizeError(f"--calibration {src}: cannot read an image ({exc})") from exc
    try:
        x = np.load(src, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise QuantizeError(f"--calibration {src}: not a readable .npy ({exc})") from exc
    if x.ndim == len(shape) - 1:
        x = x[None]
    want = tuple(shape[1:])
    got = tuple(x.shape[1:])
    if x.ndim != len(shape) or any(w is not None and w != g for w, g in zip(want, got)):
        raise QuantizeError(
            f"--calibration {src}: shape {tuple(x.shape)} does not match input "
            f"{name!r} (N, {', '.join(str(w) for w in want)})"
        )
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
        raise QuantizeError(f"--calibration {src}: expected finite float inputs, not {x.dtype}")
    if len(x) == 0:
        raise QuantizeError(f"--calibration {src}: no inputs")
    return x[: args.limit] if args.limit else x


def cmd_quantize(args, out=None):
    """Run ``bamboo quantize``; errors are :class:`BambooError` (one line from the CLI)."""
    import onnx

    from bamboo.compiler.shapes import parse_input_shapes
    from bamboo.models.quantize import QuantizeError, pre_process, quantize
    from bamboo.report import progress

    out = out or sys.stderr
    path = pathlib.Path(args.model)
    dest = pathlib.Path(args.output) if args.output else path.with_name(path.stem + ".int8.onnx")
    if args.limit is not None and args.limit < 1:
        raise QuantizeError("--limit must be at least 1")
    pins = parse_input_shapes(args.input_shape)
    model = _load(path)
    quantized = sorted({n.op_type for n in model.graph.node} & _QUANTIZED_OPS)
    if quantized:
        raise QuantizeError(
            f"{path}: already quantized ({', '.join(quantized)}); give the float model"
        )
    name, shape = _input_dims(model, pins, path)
    images = _calibration(args, name, shape)
    start = time.perf_counter()

    def tick(done, total):
        if not args.quiet:
            progress("calibrating", done, total, start, time.perf_counter(), out)

    with tempfile.TemporaryDirectory(prefix="bamboo-quantize-") as tmp:
        pinned = pathlib.Path(tmp) / "pinned.onnx"
        onnx.save(model, str(pinned))
        try:
            prepared = pre_process(pinned, pathlib.Path(tmp) / "prepared.onnx")
            quantize(
                prepared, dest, images, _FORMATS[args.format], name, args.activation_type, tick
            )
        except QuantizeError:
            raise
        except Exception as exc:
            # onnxruntime's quantizer raises bare exceptions on models it cannot handle.
            first = (str(exc).splitlines() or [""])[0][:200]
            raise QuantizeError(
                f"{path}: onnxruntime could not quantize it ({type(exc).__name__}: {first})"
            ) from exc
    if not args.quiet:
        print(
            f"{dest}: {args.format.upper()}, {args.activation_type} activations, int8 "
            f"per-channel weights, calibrated on {len(images)} inputs, "
            f"{time.perf_counter() - start:.1f} s",
            file=out,
        )
    return 0
