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

import os

from .errors import CompilerError, ModelLoadError
from .onnx_ops import Lowering

__all__ = ["load_model", "prepare", "lower", "import_onnx", "check_ssa", "MIN_OPSET", "MAX_OPSET"]

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
                f"({type(exc).__name__}); re-export the model"
            ) from None
    if not model.graph.node:
        raise ModelLoadError("the model has no nodes: a truncated or empty ONNX file?")
    if model.functions:
        model = _inline_functions(model)
    check_ssa(model)
    if not isinstance(source, (bytes, bytearray, onnx.ModelProto)):
        _load_external_data(model, os.path.dirname(os.path.abspath(source)))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelLoadError(
            f"model opset {opset} is outside {MIN_OPSET}-{MAX_OPSET}; convert it with "
            f"onnx.version_converter.convert_version(model, 13) before quantizing"
        )
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
            if t.data_location == onnx.TensorProto.EXTERNAL:
                raise ModelLoadError(
                    f"initializer {t.name!r} is stored in an external data file that was "
                    f"not loaded; pass the model's path (the .data file is looked up beside "
                    f"it), not its bytes"
                ) from None
            raise ModelLoadError(
                f"initializer {t.name!r} cannot be read ({exc}); the file may be truncated"
            ) from None
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
        raise ModelLoadError(
            f"{where} cannot be lowered: {type(exc).__name__}: "
            f"{str(exc)[:200]}; check the model (onnx.checker, "
            f"onnxruntime) or report a Bamboo bug"
        ) from exc


def check_ssa(model):
    """Refuse a graph where a name is written twice (onnx.checker and onnxruntime refuse it)."""
    seen = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    twice = []
    for node in model.graph.node:
        for o in node.output:
            if not o:
                continue
            if o in seen and o not in twice:
                twice.append(o)
            seen.add(o)
    if twice:
        raise ModelLoadError(
            f"the graph is not in SSA form: {', '.join(map(repr, twice[:5]))}"
            f"{' ...' if len(twice) > 5 else ''} written more than once (by two nodes, or a "
            f"node and an input/initializer); rename the outputs so each is written once"
        )


def _inline_functions(model):
    """Inline the model's local functions (onnxruntime runs them), then lower node by node."""
    from onnx import inliner

    try:
        return inliner.inline_local_functions(model)
    except Exception as exc:
        raise ModelLoadError(
            f"the model's local functions cannot be inlined "
            f"({type(exc).__name__}: {str(exc)[:200]}); check the model "
            f"with onnx.checker"
        ) from None


def _load_external_data(model, base_dir):
    """Read external initializers from files beside the model (not the working directory)."""
    from onnx import TensorProto, external_data_helper

    tensors = [
        t
        for t in external_data_helper._get_all_tensors(model)
        if t.data_location == TensorProto.EXTERNAL
    ]
    for t in tensors:
        info = external_data_helper.ExternalDataInfo(t)
        loc = info.location
        path = os.path.normpath(os.path.join(base_dir, loc))
        if os.path.isabs(loc) or not path.startswith(os.path.normpath(base_dir) + os.sep):
            raise ModelLoadError(
                f"initializer {t.name!r}: external data location {loc!r} "
                f"is outside the model's folder {base_dir}"
            )
        if not os.path.isfile(path):
            raise ModelLoadError(
                f"initializer {t.name!r}: its external data file {loc!r} is "
                f"missing (looked for {path}); copy it beside the model"
            )
        size = os.path.getsize(path)
        end = (info.offset or 0) + (info.length or 0)
        if info.length and end > size:
            raise ModelLoadError(
                f"initializer {t.name!r}: external data file {loc!r} holds "
                f"{size} bytes, fewer than offset+length {end}: truncated"
            )
        try:
            external_data_helper.load_external_data_for_tensor(t, base_dir)
        except OSError as exc:
            raise ModelLoadError(
                f"initializer {t.name!r}: cannot read its external data file "
                f"{loc!r} ({exc.strerror})"
            ) from None
        t.data_location = TensorProto.DEFAULT
        del t.external_data[:]
