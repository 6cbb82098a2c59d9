"""Front end: QDQ/QOperator import to the IR, integer parameters, errors.

Test models are float graphs built with onnx.helper, quantized by onnxruntime's
``quantize_static`` (QDQ, uint8 activations, int8 per-channel weights) and cached
under ``build/models/`` keyed by a hash of their content. The other compiler test
modules import the builders from here.
"""

import hashlib
import os
import pathlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import ortutil  # noqa: E402
from bamboo.arch.errors import BambooError  # noqa: E402
from bamboo.compiler import errors, ir  # noqa: E402
from bamboo.compiler.onnx_import import import_onnx  # noqa: E402
from bamboo.runtime.requant import Requant, conv_scale  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "models"
ULTRAFACE = ROOT / "models" / "pretrained" / "ultraface" / "ultraface_rfb_320.onnx"


# --- model builders -----------------------------------------------------------------------------


class _Net:
    """Accumulates float nodes and initializers with seeded random weights."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], {}, 0

    def name(self, base):
        self.k += 1
        return f"{base}{self.k}"

    def const(self, value, base="c"):
        n = self.name(base)
        self.inits[n] = np.asarray(value)
        return n

    def node(self, op, inputs, n_out=1, **attrs):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=self.name(op), **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x, cin, cout, k=3, stride=1, group=1, dil=1, pads=None, act="relu"):
        w = self.rng.normal(0, 1.0 / np.sqrt(k * k * cin / group), (cout, cin // group, k, k))
        b = self.rng.normal(0, 0.1, cout)
        p = pads if pads is not None else [dil * (k // 2)] * 4
        y = self.node(
            "Conv",
            [x, self.const(w.astype(np.float32), "w"), self.const(b.astype(np.float32), "b")],
            kernel_shape=[k, k],
            strides=[stride, stride],
            group=group,
            dilations=[dil, dil],
            pads=p,
        )
        if act == "relu":
            y = self.node("Relu", [y])
        elif act == "relu6":
            y = self.node("Clip", [y, self.const(np.float32(0)), self.const(np.float32(6))])
        return y

    def model(self, x_shape, outputs, opset=13):
        return ortutil.make_model(
            self.nodes,
            [("x", np.float32, list(x_shape))],
            [(o, np.float32, None) for o in outputs],
            self.inits,
            opset=opset,
        )


def se_gemm(seed=2):
    """Squeeze-excite written with Flatten/Gemm/Unsqueeze (as exporters often do), Sigmoid."""
    n = _Net(seed)
    x = n.conv("x", 3, 8, 3)
    g = n.node("Flatten", [n.node("GlobalAveragePool", [x])], axis=1)
    w1 = n.rng.normal(0, 0.5, (4, 8)).astype(np.float32)
    w2 = n.rng.normal(0, 0.5, (8, 4)).astype(np.float32)
    f1 = n.node(
        "Relu", [n.node("Gemm", [g, n.const(w1, "w"), n.const(np.zeros(4, np.float32))], transB=1)]
    )
    f2 = n.node("Gemm", [f1, n.const(w2, "w"), n.const(np.zeros(8, np.float32))], transB=1)
    s = n.node("Unsqueeze", [n.node("Sigmoid", [f2]), n.const(np.array([2, 3], np.int64))])
    y = n.conv(n.node("Mul", [x, s]), 8, 8, 1, act=None)
    return n.model((1, 3, 8, 8), [y])


def convnet(seed=0, opset=13):
    """Conv variants (standard, depthwise, group, dilated, strided, asymmetric pad), ReLU/ReLU6,
    residual Add, Concat, MaxPool, Sigmoid, LeakyReLU, GAP, Flatten, Gemm, Softmax."""
    n = _Net(seed)
    x = n.conv("x", 3, 8, 3, stride=2)  # 16x16 -> 8x8
    d = n.conv(x, 8, 8, 3, group=8, act="relu6")  # depthwise
    p = n.conv(d, 8, 16, 1, act=None)  # pointwise
    r = n.conv(p, 16, 16, 3, group=4, act=None)  # group conv
    a = n.node("Add", [p, r])
    dl = n.conv(a, 16, 8, 3, dil=2, act=None)  # dilated
    asy = n.conv(a, 16, 8, 3, pads=[0, 0, 2, 2], act=None)  # asymmetric pad
    sg = n.node("Sigmoid", [asy])
    lk = n.node("LeakyRelu", [dl], alpha=0.1)
    c = n.node("Concat", [lk, sg], axis=1)  # 16 channels
    m = n.node("MaxPool", [c], kernel_shape=[2, 2], strides=[2, 2])
    g = n.node("GlobalAveragePool", [m])
    f = n.node("Flatten", [g], axis=1)
    w = n.rng.normal(0, 0.3, (10, 16)).astype(np.float32)
    fc = n.node("Gemm", [f, n.const(w, "fcw"), n.const(np.zeros(10, np.float32), "fcb")], transB=1)
    sm = n.node("Softmax", [fc], axis=-1)
    return n.model((1, 3, 16, 16), [sm, m], opset=opset)


def senet(seed=1):
    """Squeeze-excite (GAP, 1x1 conv, ReLU, 1x1 conv, HardSigmoid, channel Mul), channel
    shuffle, channel Split, Resize nearest 2x, HardSwish."""
    n = _Net(seed)
    x = n.conv("x", 3, 16, 3)
    g = n.node("GlobalAveragePool", [x])
    s1 = n.conv(g, 16, 4, 1)
    s2 = n.conv(s1, 4, 16, 1, act=None)
    hs = n.node("HardSigmoid", [s2], alpha=1.0 / 6, beta=0.5)
    se = n.node("Mul", [x, hs])
    r1 = n.node("Reshape", [se, n.const(np.array([1, 2, 8, 8, 8], np.int64), "shape")])
    tr = n.node("Transpose", [r1], perm=[0, 2, 1, 3, 4])
    sh = n.node("Reshape", [tr, n.const(np.array([1, 16, 8, 8], np.int64), "shape")])
    s_a, s_b = n.node("Split", [sh, n.const(np.array([8, 8], np.int64), "split")], n_out=2, axis=1)
    c = n.conv(s_a, 8, 8, 3, act=None)
    hw = n.node("HardSwish", [c])
    up = n.node(
        "Resize",
        [
            n.node("MaxPool", [s_b], kernel_shape=[2, 2], strides=[2, 2]),
            "",
            n.const(np.array([1, 1, 2, 2], np.float32), "scales"),
        ],
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    y = n.node("Add", [hw, up])
    return n.model((1, 3, 8, 8), [y], opset=14)


def calib(shape, count=4, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(-1, 1, shape).astype(np.float32)} for _ in range(count)]


def cached(key_model, make, tag):
    """Return ``make()`` cached under build/models/ by a hash of ``key_model`` and ``tag``."""
    h = hashlib.sha256(key_model.SerializeToString() + tag.encode()).hexdigest()[:16]
    path = CACHE / f"{tag}-{h}.onnx"
    if path.exists():
        return onnx.load(str(path))
    model = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return model


def qdq(float_model, shape, tag, per_channel=True):
    return cached(
        float_model,
        lambda: ortutil.quantize_qdq(float_model, calib(shape), per_channel=per_channel),
        tag,
    )


def ultraface_qdq(height=240, width=320):
    """The face detector (opset 9 float) converted to opset 13, input resized, quantized QDQ
    with calibration on crops of scikit-image's astronaut photo."""
    skimage_data = pytest.importorskip(
        "skimage.data", reason="scikit-image gives the calibration photo"
    )
    if not ULTRAFACE.exists():
        pytest.skip(f"{ULTRAFACE} is missing")
    from onnx import version_converter

    m = onnx.load(str(ULTRAFACE))
    inits = {i.name for i in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = height, width
    m = version_converter.convert_version(m, 13)
    img = skimage_data.astronaut()

    def feeds():
        out = []
        for y, x in [(0, 0), (100, 150), (200, 100), (512 - height, 512 - width)]:
            c = img[y : y + height, x : x + width].astype(np.float32)
            out.append({"input": ((c - 127) / 128).transpose(2, 0, 1)[None].copy()})
        return out

    def make():
        # Detection heads reshape with a fixed anchor count: infer the rest with onnxruntime.
        return ortutil.quantize_qdq(m, feeds())

    return cached(m, make, f"ultraface{height}x{width}"), feeds()


# --- tests --------------------------------------------------------------------------------------


def test_convnet_lowers_to_integer_ops():
    g = import_onnx(qdq(convnet(), (1, 3, 16, 16), "convnet"))
    ops = [n.op for n in g.nodes]
    assert ops.count("conv") == 6 and "fc" in ops and "softmax" in ops and "gap" in ops
    assert {"add", "concat", "maxpool", "lut"} <= set(ops)
    assert g.inputs[0].onnx_shape == (1, 3, 16, 16)
    assert g.tensors[g.inputs[0].tensor].shape == (1, 16, 16, 3)  # NHWC
    dw = next(n for n in g.nodes if n.op == "conv" and n.attrs["group"] == 8)
    assert dw.attrs["w"].shape == (8, 3, 3, 1)
    asym = next(n for n in g.nodes if n.op == "conv" and n.attrs["pads"] == (0, 0, 2, 2))
    assert asym.attrs["kernel"] == (3, 3)
    assert any(n.attrs.get("dilation") == (2, 2) for n in g.nodes if n.op == "conv")


def test_conv_integer_params_match_the_model():
    model = qdq(convnet(), (1, 3, 16, 16), "convnet")
    deq = ortutil.dequantized_initializers(model)
    g = import_onnx(model)
    first = g.nodes[0]
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    codes, ws, wz, _ = deq[conv.input[1]]
    bias = deq[conv.input[2]][0]
    assert np.array_equal(first.attrs["w"], codes.transpose(0, 2, 3, 1))
    assert np.array_equal(first.attrs["bias"], bias)
    tin = g.tensors[first.inputs[0]]
    tout = g.tensors[first.outputs[0]]
    ref = Requant.from_scale(conv_scale(tin.q.scale, ws, tout.q.scale), tout.q.zp)
    assert np.array_equal(first.attrs["rq"].m, ref.m) and np.array_equal(first.attrs["rq"].e, ref.e)
    assert tout.q.zp == 0  # ReLU vanished into the output range


def test_senet_lowers():
    g = import_onnx(qdq(senet(), (1, 3, 8, 8), "senet"))
    ops = [n.op for n in g.nodes]
    assert {"mul", "slice", "resize", "lut", "gap"} <= set(ops)


def test_initializers_listed_as_inputs_are_constants():
    model = qdq(convnet(), (1, 3, 16, 16), "convnet")
    m = onnx.ModelProto.FromString(model.SerializeToString())
    m.graph.input.extend(
        helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in m.graph.initializer
    )
    a, b = import_onnx(model), import_onnx(m)
    assert [n.op for n in a.nodes] == [n.op for n in b.nodes]
    assert [i.onnx_name for i in b.inputs] == ["x"]


def test_ultraface_imports():
    model, _ = ultraface_qdq(60, 80)
    g = import_onnx(model)
    ops = [n.op for n in g.nodes]
    assert ops.count("conv") == 52 and ops.count("concat") == 3 and "softmax" in ops
    assert [o.onnx_name for o in g.outputs] == ["scores", "boxes"]


def test_shape_subgraph_folds():
    """Shape -> Gather -> Unsqueeze -> Concat feeding Reshape folds to a constant."""
    n = _Net(3)
    x = n.conv("x", 3, 4, 3)
    shp = n.node("Shape", [x])
    b = n.node("Gather", [shp, n.const(np.array(0, np.int64))], axis=0)
    bu = n.node("Unsqueeze", [b, n.const(np.array([0], np.int64))])
    cat = n.node("Concat", [bu, n.const(np.array([-1], np.int64))], axis=0)
    y = n.node("Reshape", [x, cat])
    g = import_onnx(qdq(n.model((1, 3, 4, 4), [y]), (1, 3, 4, 4), "shapefold"))
    assert [n.op for n in g.nodes] == ["conv", "transpose", "view"]
    assert g.outputs[0].onnx_shape == (1, 64)


# --- QOperator ----------------------------------------------------------------------------------


def test_qoperator_conv_gap_matches_qdq_builders():
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    model = ortutil.qlinear_conv(
        (1, 3, 6, 6),
        np.uint8,
        0.02,
        128,
        w,
        np.full(4, 0.01, np.float32),
        np.zeros(4, np.int8),
        rng.integers(-100, 100, 4),
        0.05,
        10,
        pads=(1, 1, 1, 1),
    )
    g = import_onnx(model)
    (conv,) = g.nodes
    assert conv.op == "conv" and conv.attrs["pads"] == (1, 1, 1, 1)
    assert not g.inputs[0].float and not g.outputs[0].float
    assert g.tensors[g.inputs[0].tensor].q == ir.QType("uint8", float(np.float32(0.02)), 128)


# --- errors -------------------------------------------------------------------------------------


def _err(source, cls, *words):
    with pytest.raises(cls) as exc:
        import_onnx(source)
    assert isinstance(exc.value, BambooError)
    for w in words:
        assert w in str(exc.value)
    return str(exc.value)


def test_float_model_is_rejected():
    _err(convnet(), errors.NotQuantizedError, "quantize_static")


def test_truncated_and_missing_files(tmp_path):
    data = qdq(convnet(), (1, 3, 16, 16), "convnet").SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 3])
    _err(str(p), errors.ModelLoadError, "cut.onnx")
    _err(str(tmp_path / "nope.onnx"), errors.ModelLoadError, "cannot read")
    (tmp_path / "empty.onnx").write_bytes(b"")
    _err(str(tmp_path / "empty.onnx"), errors.ModelLoadError, "empty")


def test_unsupported_op_names_node():
    model = qdq(convnet(), (1, 3, 16, 16), "convnet")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    node = next(n for n in model.graph.node if n.op_type == "MaxPool")
    node.op_type = "LpPool"
    _err(model, errors.UnsupportedOpError, node.name, "LpPool")


def test_dynamic_shape_and_missing_initializer():
    model = qdq(convnet(), (1, 3, 16, 16), "convnet")
    m = onnx.ModelProto.FromString(model.SerializeToString())
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "channels"
    _err(m, errors.DynamicShapeError, "'x'", "'channels'", "--input-shape")
    m = onnx.ModelProto.FromString(model.SerializeToString())
    victim = next(
        n
        for n in m.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in {i.name for i in m.graph.initializer}
    )
    init = next(i for i in m.graph.initializer if i.name == victim.input[0])
    m.graph.initializer.remove(init)
    _err(m, errors.MissingInitializerError, victim.name or "DequantizeLinear", init.name)


def test_mixed_precision_is_rejected():
    model = qdq(convnet(), (1, 3, 16, 16), "convnet")
    m = onnx.ModelProto.FromString(model.SerializeToString())
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    zp = next(i for i in m.graph.initializer if i.name == q.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(0, np.uint16), zp.name))
    _err(m, errors.MixedPrecisionError, "8-bit")


def _mutated(mutate):
    m = onnx.ModelProto.FromString(qdq(convnet(), (1, 3, 16, 16), "convnet").SerializeToString())
    mutate(m)
    return m


def _set_ints(op, name, values):
    def mutate(m):
        node = next(n for n in m.graph.node if n.op_type == op)
        attr = next(a for a in node.attribute if a.name == name)
        del attr.ints[:]
        attr.ints.extend(values)

    return mutate


def _input_type(m):
    m.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT32


# Found by test_fuzz.py: models that compiled, then failed in the executor.
@pytest.mark.parametrize(
    "mutate, words",
    [
        (_set_ints("Conv", "strides", [1, 1, 1]), ["strides (1, 1, 1)", "2 entries"]),
        (_input_type, ["'x'", "INT32", "float32 inputs"]),
    ],
    ids=["conv-strides", "input-dtype"],
)
def test_inconsistent_models_are_rejected(mutate, words):
    _err(_mutated(mutate), errors.UnsupportedOpError, *words)


def test_transpose_perm_and_concat_shapes_are_checked():
    from bamboo.compiler.onnx_compute import build_concat
    from bamboo.compiler.onnx_moves import lower_move
    from bamboo.compiler.onnx_ops import Lowering

    lw = Lowering(qdq(convnet(), (1, 3, 16, 16), "convnet"), {})
    q = ir.QType("uint8", 0.1, 0)
    a = lw.tensor("a", (1, 4, 4, 8), q, ir.NHWC)
    b = lw.tensor("b", (1, 2, 4, 8), q, ir.NHWC)
    node = helper.make_node("Transpose", ["a"], ["t"], name="tr", perm=[0, 1, 1, 2])
    with pytest.raises(errors.UnsupportedOpError, match=r"perm \(0, 1, 1, 2\) is not a perm"):
        lower_move(lw, node, a)
    node = helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1)
    with pytest.raises(errors.UnsupportedOpError, match="differ off axis 1"):
        build_concat(lw, node, [a, b], 1, q, "c")


# Fuzzing (truncation, random bytes, structural mutations of real models): test_fuzz.py.


# --- issue 14: SSA, external data, custom domains, local functions, all refusals ---------------


def _convnet_copy():
    return onnx.ModelProto.FromString(qdq(convnet(), (1, 3, 16, 16), "convnet").SerializeToString())


def test_non_ssa_graph_is_refused():
    m = _convnet_copy()
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    convs[1].output[0] = convs[0].output[0]
    msg = _err(m, errors.ModelLoadError, "SSA", repr(convs[0].output[0]))
    assert "once" in msg


def test_every_unsupported_node_is_listed():
    m = _convnet_copy()
    pool, conv = [n for n in m.graph.node if n.op_type == "Conv"][4:6]  # two parallel branches
    pool.op_type = "LpPool"
    conv.op_type, conv.domain = "FancyConv", "com.example"
    msg = _err(
        m,
        errors.UnsupportedOpError,
        "2 nodes are not supported",
        pool.name,
        "LpPool",
        conv.name,
        "custom op of domain 'com.example'",
        "export the model without it",
    )
    assert msg.count("node ") == 2


def test_local_functions_are_inlined():
    m = _convnet_copy()
    pool = next(n for n in m.graph.node if n.op_type == "MaxPool")
    body = helper.make_node("MaxPool", ["a"], ["b"], kernel_shape=[2, 2], strides=[2, 2])
    fn = helper.make_function(
        "local.fn",
        "Pool2",
        ["a"],
        ["b"],
        [body],
        [helper.make_opsetid("", m.opset_import[0].version)],
    )
    m.functions.append(fn)
    m.opset_import.append(helper.make_opsetid("local.fn", 1))
    del pool.attribute[:]
    pool.op_type, pool.domain = "Pool2", "local.fn"
    onnx.checker.check_model(m)
    want = [n.op for n in import_onnx(_convnet_copy()).nodes]
    assert [n.op for n in import_onnx(m).nodes] == want


def test_external_data_is_read_beside_the_model(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    path = model_dir / "net.onnx"
    onnx.save(
        _convnet_copy(),
        str(path),
        save_as_external_data=True,
        location="net.data",
        size_threshold=0,
    )
    assert (model_dir / "net.data").stat().st_size > 0
    monkeypatch.chdir(tmp_path)  # not the model's folder
    want = import_onnx(_convnet_copy())
    got = import_onnx(str(path))
    for a, b in zip(got.nodes, want.nodes):
        assert a.op == b.op
        if a.op == "conv":
            assert np.array_equal(a.attrs["w"], b.attrs["w"])
    _err(path.read_bytes(), errors.ModelLoadError, "external data file that was not loaded")
    (model_dir / "net.data").unlink()
    _err(
        str(path), errors.ModelLoadError, "external data file 'net.data' is missing", str(model_dir)
    )


def test_identity_of_a_dequantized_weight():
    """The dynamo exporter shares weights and biases through Identity nodes."""
    m = _convnet_copy()
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    for k in (1, 2):
        ident = helper.make_node("Identity", [conv.input[k]], [f"shared{k}"], name=f"Id{k}")
        m.graph.node.insert(list(m.graph.node).index(conv), ident)
        conv.input[k] = f"shared{k}"
    a, b = import_onnx(m), import_onnx(_convnet_copy())
    assert [n.op for n in a.nodes] == [n.op for n in b.nodes]
    assert np.array_equal(a.nodes[0].attrs["w"], b.nodes[0].attrs["w"])
