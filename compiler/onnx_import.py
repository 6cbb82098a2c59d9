"""The front end: quantized ONNX (QDQ or QOperator, opset 11-21) to the Bamboo IR.

Three steps, each a function usable alone:

1. :func:`load_model` reads and checks the file (truncated, malformed, float,
   wrong opset and dynamic shapes are reported as :class:`CompilerError`).
2. :func:`prepare` turns initializers listed as graph inputs into constants.
3. :func:`lower` walks the nodes once in topological order. Constants (and
   ``Shape`` of tensors whose shape is known) fold on the fly, so shape
   sub-graphs (Shape/Gather/Unsqueeze/Concat feeding Reshape) vanish.
   ``DequantizeLinear -> op -> QuantizeLinear`` groups, and QOperator nodes,
   become one IR node each; NCHW feature maps become NHWC.

The front end is this module, ``onnx_ops`` (the walk), ``onnx_moves``, ``onnx_compute``,
``onnx_qop`` and ``tables``; only they import ``onnx``/``onnxruntime`` (lazily). The IR,
the passes, the partitioner and the executor do not.
"""


from .errors import CompilerError, ModelLoadError

__all__ = ["load_model", "prepare", "lower", "import_onnx", "MIN_OPSET", "MAX_OPSET"]

MIN_OPSET, MAX_OPSET = 11, 21


def _onnx():
    import onnx

    return onnx


def load_model(source):
    """Read an ONNX model from a path, bytes or a ModelProto, and check it.

    Raises
    ------
    ModelLoadError
        Missing, truncated or malformed file; opset outside 11-21.
    """
    onnx = _onnx()
    if isinstance(source, onnx.ModelProto):
        model = source
    else:
        label = "<model bytes>" if isinstance(source, (bytes, bytearray)) else source
        try:
            if isinstance(source, (bytes, bytearray)):
                model = onnx.load_model_from_string(bytes(source))
            else:
                with open(source, "rb") as f:
                    data = f.read()
                if not data:
                    raise ModelLoadError(f"{source}: the file is empty")
                model = onnx.load_model_from_string(data)
        except CompilerError:
            raise
        except OSError as exc:
            raise ModelLoadError(f"{source}: cannot read the model ({exc.strerror})") from None
        except Exception as exc:  # protobuf raises DecodeError and friends
            raise ModelLoadError(
                f"{label}: not a valid ONNX file, truncated or corrupt "
                f"({type(exc).__name__}); re-export the model") from None
    if not model.graph.node:
        raise ModelLoadError("the model has no nodes: a truncated or empty ONNX file?")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelLoadError(
            f"model opset {opset} is outside {MIN_OPSET}-{MAX_OPSET}; convert it with "
            f"onnx.version_converter.convert_version(model, 13) before quantizing")
    return model


def prepare(model):
    """Return ``(model, constants)``: graph inputs that are initializers become constants.

    ``constants`` maps names to numpy arrays (initializers and Constant nodes).
    """
    onnx = _onnx()
    from onnx import numpy_helper

    consts = {}
    for t in model.graph.initializer:
        try:
            consts[t.name] = numpy_helper.to_array(t)
        except Exception as exc:
            raise ModelLoadError(f"initializer {t.name!r} cannot be read ({exc}); "
                                 f"the file may be truncated") from None
    if any(i.name in consts for i in model.graph.input):
        model = onnx.ModelProto.FromString(model.SerializeToString())
        keep = [i for i in model.graph.input if i.name not in consts]
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return model, consts


def import_onnx(source, *, approx=(), input_shapes=None):
    """Load, prepare and lower ``source`` into an IR :class:`~bamboo.compiler.ir.Graph`.

    ``input_shapes`` maps input names to shapes that pin dynamic dimensions (see
    :func:`bamboo.compiler.shapes.parse_input_shapes`).
    """
    model = load_model(source)
    model, consts = prepare(model)
    return lower(model, consts, approx=approx, input_shapes=input_shapes)


def lower(model, consts, *, approx=(), input_shapes=None):
    """Lower a prepared quantized ONNX model to the IR (see the module docstring)."""
    from .onnx_ops import Lowering

    lw = Lowering(model, consts, approx=approx, input_shapes=input_shapes)
    try:
        return lw.run()
    except CompilerError:
        raise
    except Exception as exc:
        # A model that passed the checker but is inconsistent (corrupt strings, shapes
        # that contradict the weights...): report the node instead of a traceback.
        node = lw.current
        where = f"node {node.name or node.op_type!r} ({node.op_type})" if node else "the model"
        raise ModelLoadError(f"{where} cannot be lowered: {type(exc).__name__}: "
                             f"{str(exc)[:200]}; check the model (onnx.checker, "
                             f"onnxruntime) or report a Bamboo bug") from exc
