"""The onnxruntime session every golden output of Bamboo comes from.

One thread, the CPU provider, ``ORT_ENABLE_EXTENDED`` by default (the level at which
DQ -> op -> Q groups fuse into the integer kernels a quantized graph really runs), and
``session.x64quantprecision``: on an x86-64 processor without VNNI (AVX2 only, e.g. AMD
Zen 2/3 or Intel before Cascade Lake) onnxruntime's U8S8 GEMM sums pairs of products
with ``VPMADDUBSW``, which saturates at int16, so a QLinearConv or a QDQ Conv gives
outputs that differ from the integer result (onnxruntime issues 14642, 16105, PR 12088).
With the option onnxruntime widens the operands to int16 first and the sums are exact,
as on a VNNI or AVX-512 processor and on ARM, where the option changes nothing.
Measured here (AMD EPYC, AVX2 only): without it 995 of MobileNetV2's 1000 logits
differ from the accelerator's exact integer result; with it none do.

What the option does not cover, measured on the same machine against
``runtime/conv.py``'s exact kernels:

* QLinearMatMul with uint8 activations and int8 weights saturates with or without it
  (51 of 64 outputs of a 256-deep product differ). Its int8 weight initializers are
  given to onnxruntime as uint8 (code + 128, zero point + 128: the same integers), and
  uint8 x uint8 is exact.
* Int8-activation (S8S8) QLinearConv and QGemm have no kernel under the option; without
  it they are exact, so a session that cannot be built with it is built without.
"""

__all__ = ["LEVELS", "reference_session"]

#: Graph optimization levels by name.
LEVELS = ("disable", "basic", "extended", "all")


def reference_session(model, level="extended", optimized_path=None):
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, the serialized bytes or
    an ``onnx.ModelProto``) whose integer kernels are exact on every processor.

    ``optimized_path``: where onnxruntime writes the graph it optimized."""
    import onnxruntime as ort

    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    model = _exact_matmuls(model).SerializeToString()
    so.add_session_config_entry("session.x64quantprecision", "1")
    try:
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except ort.capi.onnxruntime_pybind11_state.NotImplemented:
        # The option has no int8-activation (S8S8) QLinearConv; that kernel is exact
        # without it (it does not pair products in int16).
        so.add_session_config_entry("session.x64quantprecision", "0")
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _exact_matmuls(model):
    """``model`` (a path, bytes or ModelProto) as a ModelProto whose QLinearMatMuls with
    a uint8 ``A`` and an int8 initializer ``B`` take ``B`` as uint8 (code + 128, zero
    point + 128): the same integer product, on onnxruntime's exact uint8 x uint8 kernel."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if isinstance(model, bytes):
        model = onnx.load_from_string(model)
    elif not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inits = {t.name: t for t in model.graph.initializer}
    u8, i8 = onnx.TensorProto.UINT8, onnx.TensorProto.INT8
    todo = [
        n
        for n in model.graph.node
        if n.op_type == "QLinearMatMul"
        and n.domain in ("", "ai.onnx")
        and n.input[2] in inits
        and inits[n.input[2]].data_type == u8
        and n.input[3] in inits
        and inits[n.input[3]].data_type == i8
        and n.input[5] in inits
    ]
    # Only weights no other node reads (another reader would see the shifted codes).
    readers = {}
    for n in model.graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    todo = [
        n
        for n in todo
        if all(r in todo for name in (n.input[3], n.input[5]) for r in readers[name])
    ]
    if not todo:
        return model
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    inits = {t.name: t for t in twin.graph.initializer}
    done = set()
    for n in todo:
        for name in (n.input[3], n.input[5]):  # B, its zero point
            if name in done:
                continue
            shifted = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
            inits[name].CopyFrom(numpy_helper.from_array(shifted.astype(np.uint8), name))
            done.add(name)
    return twin
