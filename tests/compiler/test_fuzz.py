"""Fuzzing the front end with mutated real models: a BambooError or a working graph, nothing else.

Base models: the quantized face detector (UltraFace, reduced to 60x80), two zoo models
at their test sizes (MobileNetV3-Small QDQ, Tiny-YOLOv3 QOperator) and the synthetic
convnet of test_frontend.py. Each case mutates one of them (bytes: truncation, random
bytes; structure: removed initializers or nodes, wrong initializer or input shapes and
dtypes, changed attributes, op types, opsets, rewired inputs; input dimensions that are
zero, huge or negative; outputs written twice; initializers moved to an external data file
that is kept, cut short or removed; nodes wrapped in local functions), then imports and
compiles it. A case passes when that raises a :class:`BambooError` subclass, or when it compiles
and the reference executor runs it on a random input (or raises a BambooError). Any
other exception is a bug. Hypothesis runs derandomized without a database, so the
cases are the same on every run.
"""

import os
import tempfile

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from bamboo.arch.errors import BambooError  # noqa: E402
from bamboo.compiler import executor  # noqa: E402
from bamboo.compiler.cli_inspect import compile_model  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import AttributeProto, TensorProto  # noqa: E402
from test_frontend import convnet, qdq, ultraface_qdq  # noqa: E402

CASES = {"ultraface": 160, "mobilenet_v3_small": 100, "tiny_yolov3_qop": 130, "convnet": 140}
DTYPES = [
    TensorProto.FLOAT,
    TensorProto.UINT8,
    TensorProto.INT8,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.FLOAT16,
    TensorProto.INT16,
    TensorProto.UINT16,
    TensorProto.DOUBLE,
    TensorProto.BOOL,
    TensorProto.STRING,
    0,
    999,
]
OP_TYPES = [
    "Conv",
    "Add",
    "Mul",
    "Relu",
    "MaxPool",
    "QLinearConv",
    "QLinearAdd",
    "Reshape",
    "Concat",
    "DequantizeLinear",
    "QuantizeLinear",
    "Sigmoid",
    "Gemm",
    "Softmax",
    "Resize",
    "Slice",
    "Transpose",
    "Foo",
]
KINDS = [
    "truncate",
    "bytes",
    "drop_initializer",
    "initializer_shape",
    "initializer_dtype",
    "input_shape",
    "input_dtype",
    "drop_node",
    "attribute",
    "rewire",
    "opset",
    "op_type",
    "extreme_shape",
    "ssa",
    "external_data",
    "function",
]


def _base(name):
    if name == "ultraface":
        return ultraface_qdq(60, 80)[0]
    if name == "convnet":
        return qdq(convnet(), (1, 3, 16, 16), "convnet")
    pytest.importorskip("torch", reason="the model zoo needs torch")
    pytest.importorskip("skimage", reason="calibration photos come from scikit-image")
    from bamboo.models import zoo

    zoo_name, fmt = ("tiny_yolov3", "qoperator") if name == "tiny_yolov3_qop" else (name, "qdq")
    entry = zoo.ZOO[zoo_name]
    return onnx.load(
        str(zoo.build_quantized(zoo_name, entry.test_resolution, entry.test_width, format=fmt))
    )


def _index(data, seq, label):
    return data.draw(st.integers(0, len(seq) - 1), label=label)


def _mutate_attribute(data, a):
    if a.type == AttributeProto.INT:
        a.i = data.draw(st.integers(-3, 8), label="int")
    elif a.type == AttributeProto.INTS:
        del a.ints[:]
        a.ints.extend(data.draw(st.lists(st.integers(-2, 6), max_size=5), label="ints"))
    elif a.type == AttributeProto.FLOAT:
        a.f = data.draw(
            st.sampled_from([-1.0, 0.0, 1e-9, 0.5, 2.0, float("nan"), float("inf")]), label="float"
        )
    elif a.type == AttributeProto.STRING:
        a.s = data.draw(
            st.sampled_from(
                [
                    b"",
                    b"bogus",
                    b"NOTSET",
                    b"SAME_UPPER",
                    b"VALID",
                    b"linear",
                    b"nearest",
                    b"half_pixel",
                    b"floor",
                ]
            ),
            label="string",
        )
    elif a.type == AttributeProto.TENSOR:
        a.t.data_type = data.draw(st.sampled_from(DTYPES), label="tensor dtype")
    else:
        a.type = data.draw(
            st.sampled_from([AttributeProto.INT, AttributeProto.FLOATS]), label="attribute type"
        )


def _mutate_external(data, m, folder):
    """Save ``m`` with its initializers in ``folder/w.data``, then keep, cut or remove it."""
    import os

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    onnx.save(m, path, save_as_external_data=True, location="w.data", size_threshold=0)
    how = data.draw(st.sampled_from(["keep", "cut", "remove", "elsewhere"]), label="how")
    data_path = os.path.join(folder, "w.data")
    if how == "cut":
        with open(data_path, "r+b") as f:
            f.truncate(data.draw(st.integers(0, os.path.getsize(data_path) - 1), label="cut"))
    elif how == "remove":
        os.remove(data_path)
    elif how == "elsewhere":  # a location outside the model's folder
        m2 = onnx.load(path, load_external_data=False)
        t = m2.graph.initializer[_index(data, m2.graph.initializer, "initializer")]
        next(e for e in t.external_data if e.key == "location").value = "../w.data"
        onnx.save(m2, path)
    return path


def _mutate_function(data, m):
    """Move one node into a local function (domain ``local.fn``) and call it."""
    from onnx import helper

    n = m.graph.node[_index(data, m.graph.node, "node")]
    ins = [f"i{k}" for k in range(len(n.input))]
    outs = [f"o{k}" for k in range(len(n.output))]
    body = helper.make_node(n.op_type, ins, outs, domain=n.domain)
    body.attribute.extend(n.attribute)
    imports = [helper.make_opsetid(o.domain, o.version) for o in m.opset_import]
    fn = helper.make_function("local.fn", "Wrapped", ins, outs, [body], imports)
    m.functions.append(fn)
    m.opset_import.append(helper.make_opsetid("local.fn", 1))
    del n.attribute[:]
    n.op_type = "Wrapped"
    n.domain = data.draw(st.sampled_from(["local.fn", "local.other"]), label="domain")


def _mutate(data, base, blob, kind, folder=None):
    """Serialized bytes of ``base`` after one mutation of ``kind`` (a path for external data)."""
    if kind == "truncate":
        return blob[: data.draw(st.integers(0, len(blob) - 1), label="cut at")]
    if kind == "bytes":
        out = bytearray(blob)
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            out[_index(data, out, "offset")] = data.draw(st.integers(0, 255), label="byte")
        return bytes(out)
    m = onnx.ModelProto()
    m.CopyFrom(base)
    g = m.graph
    if kind == "drop_initializer":
        g.initializer.remove(g.initializer[_index(data, g.initializer, "initializer")])
    elif kind == "initializer_shape":
        t = g.initializer[_index(data, g.initializer, "initializer")]
        dims = list(t.dims)
        how = data.draw(st.sampled_from(["permute", "set", "add", "drop"]), label="how")
        if how == "permute" and dims:
            dims = data.draw(st.permutations(dims), label="dims")
        elif how == "set" and dims:
            dims[_index(data, dims, "dim")] = data.draw(st.integers(0, 8), label="size")
        elif how == "add":
            dims.append(1)
        else:
            dims = dims[:-1]
        del t.dims[:]
        t.dims.extend(dims)
    elif kind == "initializer_dtype":
        t = g.initializer[_index(data, g.initializer, "initializer")]
        t.data_type = data.draw(st.sampled_from(DTYPES), label="dtype")
    elif kind == "input_shape":
        dims = g.input[0].type.tensor_type.shape.dim
        how = data.draw(st.sampled_from(["set", "symbolic", "add", "drop"]), label="how")
        if how == "add":
            dims.add().dim_value = data.draw(st.integers(1, 3), label="size")
        elif how == "drop":
            del dims[_index(data, dims, "dim")]
        else:
            d = dims[_index(data, dims, "dim")]
            if how == "symbolic":
                d.dim_param = "n"
            else:
                v = d.dim_value
                d.dim_value = data.draw(
                    st.sampled_from([0, 1, 2, 3, v - 1, v + 1, 2 * v]), label="size"
                )
    elif kind == "input_dtype":
        g.input[0].type.tensor_type.elem_type = data.draw(st.sampled_from(DTYPES), label="dtype")
    elif kind == "drop_node":
        g.node.remove(g.node[_index(data, g.node, "node")])
    elif kind == "attribute":
        nodes = [n for n in g.node if n.attribute]
        n = nodes[_index(data, nodes, "node")]
        _mutate_attribute(data, n.attribute[_index(data, n.attribute, "attribute")])
    elif kind == "rewire":
        names = sorted(
            {o for n in g.node for o in n.output}
            | {t.name for t in g.initializer}
            | {"", "nowhere"}
        )
        n = g.node[_index(data, g.node, "node")]
        if n.input:
            n.input[_index(data, n.input, "input")] = names[_index(data, names, "name")]
    elif kind == "opset":
        m.opset_import[0].version = data.draw(st.integers(7, 23), label="opset")
    elif kind == "extreme_shape":
        dims = g.input[0].type.tensor_type.shape.dim
        dims[_index(data, dims, "dim")].dim_value = data.draw(
            st.sampled_from([0, -1, -7, 100000, 2**31, 2**40, 2**62]), label="size"
        )
    elif kind == "ssa":
        a, b = (g.node[_index(data, g.node, f"node {k}")] for k in "ab")
        if a.output and b.output:
            b.output[_index(data, b.output, "output")] = a.output[0]
    elif kind == "external_data":
        return _mutate_external(data, m, folder)
    elif kind == "function":
        _mutate_function(data, m)
    else:
        g.node[_index(data, g.node, "node")].op_type = data.draw(
            st.sampled_from(OP_TYPES), label="op type"
        )
    return m.SerializeToString()


def _random_feeds(graph, seed):
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in graph.inputs:
        q = graph.tensors[spec.tensor].q
        feeds[spec.onnx_name] = (
            rng.uniform(-1.5, 1.5, spec.onnx_shape).astype(np.float32)
            if spec.float
            else rng.integers(q.qmin, q.qmax + 1, spec.onnx_shape, q.np_dtype)
        )
    return feeds


@pytest.mark.parametrize("name", sorted(CASES))
def test_mutated_models_fail_cleanly(name, diff_cases):
    base = _base(name)
    blob = base.SerializeToString()
    outcomes = {"compiled": 0, "ran": 0, "rejected": 0}

    @settings(
        max_examples=CASES[name],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(kind=st.sampled_from(KINDS), data=st.data(), seed=st.integers(0, 2**32 - 1))
    def case(kind, data, seed):
        with tempfile.TemporaryDirectory() as folder:
            mutated = _mutate(data, base, blob, kind, os.path.join(folder, "m"))
            try:
                graph = compile_model(mutated)
            except BambooError:
                graph = None
        if graph is None:
            outcomes["rejected"] += 1
            return
        outcomes["compiled"] += 1
        try:
            executor.run(graph, _random_feeds(graph, seed))
            outcomes["ran"] += 1
        except BambooError:
            pass

    case()
    total = outcomes["compiled"] + outcomes["rejected"]
    print(f"{name}: {outcomes}")
    assert total >= CASES[name], outcomes
    assert outcomes["rejected"] > 0 and outcomes["ran"] > 0, outcomes
    diff_cases("fuzz", total)
