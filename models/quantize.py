"""Static quantization with onnxruntime, and checks of the quantized graph.

Settings follow ``docs/numerics.md`` ("Which quantized graph to expect"): uint8
asymmetric activations, int8 symmetric per-channel weights, int32 bias, MinMax
calibration on real photos, QDQ (default) or QOperator format.
"""

import logging
import os
import pathlib
import tempfile

import onnx
from bamboo.arch.errors import BambooError

__all__ = [
    "ACTIVATIONS",
    "FORMATS",
    "QuantizeError",
    "conv_qdq_problems",
    "float_ops_after_optimization",
    "optimized_model",
    "pre_process",
    "quantize",
    "uint8_twin",
]

FORMATS = ("qdq", "qoperator")
# Activation code types: onnxruntime's default uint8 (asymmetric), or int8 (asymmetric too).
ACTIVATIONS = ("uint8", "int8")
# Not in onnxruntime's quantizer registries, so listed explicitly: without it a
# HardSigmoid feeding anything but Mul would leave float tensors between integer ops.
_EXTRA_OPS = ("HardSigmoid",)
# Ops that must not run in float once onnxruntime has fused the QDQ groups.
INTEGER_OPS = (
    "Conv",
    "FusedConv",
    "Gemm",
    "FusedGemm",
    "MatMul",
    "Add",
    "Mul",
    "GlobalAveragePool",
    "Concat",
)


class QuantizeError(BambooError):
    """A model or calibration set that cannot be quantized as asked (one line, no traceback)."""


def quantize(
    float_path, out_path, images, fmt="qdq", input_name="input", activation="uint8", progress=None
):
    """Quantize ``float_path`` to ``out_path`` with onnxruntime's static quantizer.

    Parameters
    ----------
    float_path, out_path : str or pathlib.Path
    images : numpy.ndarray
        Float32 NCHW calibration batch.
    fmt : {"qdq", "qoperator"}
    input_name : str
    activation : {"uint8", "int8"}
        Activation code type (asymmetric either way).
    progress : callable, optional
        ``progress(done, total)`` as calibration images are consumed.

    Returns
    -------
    pathlib.Path
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    from .calibration import CalibrationReader

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, not {activation!r}")
    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ops = sorted(set(QLinearOpsRegistry) | set(QDQRegistry) | set(_EXTRA_OPS))
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=out_path.name + ".", suffix=".tmp")
    os.close(fd)
    quant_logger = logging.getLogger()
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)  # "consider pre-processing": export_onnx already did
    try:
        quantize_static(
            str(float_path),
            tmp,
            CalibrationReader(images, input_name, progress),
            quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=ops,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, out_path)
    finally:
        quant_logger.setLevel(level)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def pre_process(float_path, out_path):
    """onnxruntime's recommended pre-processing before :func:`quantize`.

    ``quant_pre_process``: symbolic and ONNX shape inference, then onnxruntime's basic
    graph optimizations (constant folding of exporters' shape arithmetic, BatchNorm into
    Conv). Dynamic dimensions stay dynamic.

    Returns
    -------
    pathlib.Path
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    quant_logger = logging.getLogger()
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        quant_pre_process(str(float_path), str(out_path))
    finally:
        quant_logger.setLevel(level)
    return out_path


def optimized_model(path, level="extended"):
    """The graph onnxruntime actually runs: ``path`` after its graph optimizations.

    Parameters
    ----------
    path : str or pathlib.Path
    level : {"basic", "extended", "all"}

    Returns
    -------
    onnx.ModelProto
    """
    from bamboo.compiler.reference import reference_session

    levels = ("basic", "extended", "all")
    if level not in levels:
        raise ValueError(f"level must be one of {sorted(levels)}, not {level!r}")
    with tempfile.TemporaryDirectory(prefix="bamboo-ort-") as tmp:
        optimized = os.path.join(tmp, "opt.onnx")
        reference_session(path, level, optimized_path=optimized)
        return onnx.load(optimized)


def float_ops_after_optimization(path, level="extended"):
    """Names and types of compute ops that still run in float after optimization.

    A list of ``(op_type, node_name)``; empty when every Conv, Gemm, Add, Mul,
    GlobalAveragePool and Concat became an integer kernel.
    """
    model = optimized_model(path, level)
    return [(n.op_type, n.name) for n in model.graph.node if n.op_type in INTEGER_OPS]


def uint8_twin(model):
    """``model`` with its int8 activation QuantizeLinear/DequantizeLinear pairs made uint8.

    onnxruntime (x86) fuses QDQ groups into integer kernels only around uint8 activations.
    Its own int8-to-uint8 rewrite skips a QuantizeLinear with more than one
    DequantizeLinear consumer (SiLU's x·sigmoid(x), squeeze-excite, residuals), and a Conv
    whose input was rewritten but whose output was not keeps mixed types and runs in
    float (EfficientNet-B0 at 64×64: 54 of 81 Convs, 49 Sigmoids, every Mul and Add). The
    twin has the same dequantized values everywhere (uint8 code = int8 code + 128, zero
    point + 128), so it is the same integer model, and onnxruntime runs it entirely with
    its integer kernels: the golden reference of an int8-activation QDQ model.

    A pair is rewritten when the QuantizeLinear's zero point is int8, its output is not a
    graph output and every consumer is a DequantizeLinear with the same zero point
    (weights, QOperator nodes and code-typed graph boundaries are left alone).

    Parameters
    ----------
    model : onnx.ModelProto

    Returns
    -------
    onnx.ModelProto
        A new model (``model`` is not modified).
    """
    import numpy as np
    from onnx import numpy_helper

    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    graph = twin.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}
    made = {}
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) == 3]:
        zp = inits.get(q.input[2])
        users = consumers.get(q.output[0], [])
        if (
            zp is None
            or zp.data_type != onnx.TensorProto.INT8
            or q.output[0] in outputs
            or not users
            or any(
                u.op_type != "DequantizeLinear" or len(u.input) != 3 or u.input[2] != q.input[2]
                for u in users
            )
        ):
            continue
        name = f"{q.input[2]}_uint8_twin"
        if name not in made:
            codes = numpy_helper.to_array(zp).astype(np.int16) + 128
            made[name] = numpy_helper.from_array(codes.astype(np.uint8), name)
            graph.initializer.append(made[name])
        for n in (q, *users):
            n.input[2] = name
    used = {i for n in graph.node for i in n.input} | outputs
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return twin


def conv_qdq_problems(model):
    """Conv nodes of a QDQ model not wrapped as DQ(x), DQ(int8 w), DQ(int32 b) -> Q.

    Parameters
    ----------
    model : onnx.ModelProto or str or pathlib.Path

    Returns
    -------
    list of str
        One message per problem; empty when every Conv is fully quantized.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {t.name: t for t in graph.initializer}
    problems = []
    for conv in (n for n in graph.node if n.op_type == "Conv"):
        for slot, dtype in zip(conv.input, (None, onnx.TensorProto.INT8, onnx.TensorProto.INT32)):
            dq = producer.get(slot)
            if dq is None or dq.op_type != "DequantizeLinear":
                problems.append(f"{conv.name}: input {slot} is not dequantized")
            elif dtype is not None and (
                dq.input[0] not in inits or inits[dq.input[0]].data_type != dtype
            ):
                kind = onnx.TensorProto.DataType.Name(dtype)
                problems.append(f"{conv.name}: {slot} is not an {kind} constant")
        users = consumers.get(conv.output[0], [])
        if not users or any(u.op_type != "QuantizeLinear" for u in users):
            problems.append(
                f"{conv.name}: output not consumed by QuantizeLinear alone "
                f"({sorted(u.op_type for u in users)})"
            )
    return problems
