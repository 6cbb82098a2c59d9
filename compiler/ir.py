"""The compiler's IR: an immutable graph of quantized ops with integer parameters.

A :class:`Graph` holds :class:`Tensor` descriptions (8-bit codes with a scale and
zero point) and :class:`Node` s in topological order. Nothing is mutated: every
pass returns a new graph (``graph.replace(nodes=...)``). Numpy parameters are
frozen read-only when a node is made.

Layout: a tensor's ``shape`` is its *physical* shape. ``layout == "NHWC"`` marks a
4-D feature map that ONNX sees as NCHW (logical = physical transposed by
``(0, 3, 1, 2)``); ``layout == "ND"`` means physical and logical are the same.

Ops (``OPS``) and their attributes:

``conv``       w (O, kh, kw, I/g) int8, w_zp (O,), bias (O,) int32, rq, lut (None, or a
               256-entry table applied after requant by fuse_activation; lut_fn names it),
               kernel, stride, dilation, pads (top, left, bottom, right), group
``fc``         w (O, I) int8, w_zp (O,), bias (O,) int32, rq, lut
``gap``        rq (global average pool, NHWC)
``avgpool``    kernel, stride, pads, count_include_pad, ceil_mode (float-like, as onnxruntime)
``maxpool``    kernel, stride, pads, dilation (ceil_mode folded into the trailing pads)
``add``        two inputs, the output's (scale, zp) on its tensor (float-FMA form)
``mul``        two inputs (elementwise or a per-channel vector: squeeze-excite scale)
``concat``     axis (physical), luts: per input a 256-entry requant table or None
``slice``      axis (physical), start, end, step
``shuffle``    groups (channel shuffle on NHWC: Reshape-Transpose-Reshape)
``resize``     mode, rows/cols (nearest) or ymap/xmap (linear), requant, scale: compiler/resize.py
``lut``        table: 256 output codes indexed by the input code's bit pattern (``code & 0xFF``);
               fn: the ONNX op(s) it stands for (Sigmoid, HardSigmoid+Mul, requant...);
               alpha (LeakyRelu); approx, approx_wrong_codes (opt-in leaky-shift)
``view``       shape: new physical shape, layout (no data moves)
``transpose``  perm (physical), layout of the result
``softmax``    axis (physical), as onnxruntime's QLinearSoftmax (CPU)
``add_const``  operand (codes or float32, broadcast to the input's physical shape),
``mul_const``  operand_scale/operand_zp (None for a float operand); fn "add"/"mul"
``pad``        pads ((before, after) per physical axis; negative crops), mode (constant,
               edge, reflect, wrap), value (the constant's code); an explicit Pad that
               could not fold into the Conv/pool after it

Requantization parameters (``rq``) are :class:`bamboo.runtime.requant.Requant`.
"""

import dataclasses
import os
import types
from dataclasses import dataclass, field

import numpy as np

from .errors import IRError

__all__ = [
    "OPS",
    "QType",
    "Tensor",
    "Node",
    "Graph",
    "IOSpec",
    "verify",
    "dump",
    "NHWC",
    "ND",
    "FABRIC",
    "CPU",
    "logical_shape",
    "to_physical_axis",
]

NHWC = "NHWC"
ND = "ND"
FABRIC, CPU = "fabric", "cpu"  # Node.target, set by the partitioner
OPS = frozenset(
    {
        "conv",
        "fc",
        "gap",
        "avgpool",
        "maxpool",
        "add",
        "mul",
        "concat",
        "slice",
        "shuffle",
        "resize",
        "lut",
        "view",
        "transpose",
        "softmax",
        "pad",
        "column_taps",
        "add_const",
        "mul_const",
    }
)
_NHWC_TO_NCHW = (0, 3, 1, 2)


@dataclass(frozen=True)
class QType:
    """8-bit quantization of a tensor: ``real = (code - zp) * scale``."""

    dtype: str  # "uint8" or "int8"
    scale: float  # a float32 value (kept exactly in a Python float)
    zp: int

    @property
    def qmin(self):
        return 0 if self.dtype == "uint8" else -128

    @property
    def qmax(self):
        return 255 if self.dtype == "uint8" else 127

    @property
    def np_dtype(self):
        return np.dtype(self.dtype)


@dataclass(frozen=True)
class Tensor:
    """A tensor of codes: physical ``shape``, ``layout`` and quantization ``q``."""

    name: str
    shape: tuple
    q: QType
    layout: str = ND

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))


def logical_shape(t):
    """The shape ONNX sees for tensor ``t``."""
    if t.layout == NHWC:
        return tuple(t.shape[i] for i in _NHWC_TO_NCHW)
    return tuple(t.shape)


def to_physical_axis(t, axis):
    """Map a logical (ONNX) axis of ``t`` to its physical axis."""
    axis = axis % len(t.shape)
    return _NHWC_TO_NCHW[axis] if t.layout == NHWC else axis


def _freeze(value):
    if isinstance(value, np.ndarray):
        value = value.copy()
        value.flags.writeable = False
    elif isinstance(value, list):
        value = tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Node:
    """One quantized operation.

    ``source`` names the ONNX nodes it came from, ``fused`` those folded into it
    by a later pass; ``target``/``reason`` are filled in by the partitioner.
    """

    name: str
    op: str
    inputs: tuple
    outputs: tuple
    attrs: types.MappingProxyType = field(default_factory=dict)
    source: tuple = ()
    fused: tuple = ()
    target: str = ""
    reason: str = ""

    def __post_init__(self):
        if self.op not in OPS:
            raise IRError(f"node {self.name!r}: unknown op {self.op!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "source", tuple(self.source))
        object.__setattr__(self, "fused", tuple(self.fused))
        attrs = {k: _freeze(v) for k, v in dict(self.attrs).items()}
        object.__setattr__(self, "attrs", types.MappingProxyType(attrs))

    def replace(self, **kw):
        if "attrs" in kw:
            kw["attrs"] = dict(kw["attrs"])
        return dataclasses.replace(self, **kw)

    def with_attrs(self, **kw):
        return self.replace(attrs={**self.attrs, **kw})


@dataclass(frozen=True)
class IOSpec:
    """A graph input or output as ONNX sees it.

    ``onnx_name``/``onnx_shape`` are the ONNX value; ``tensor`` the IR tensor of
    codes; ``float`` says whether ONNX carries float values there (a Quantize-
    or DequantizeLinear sits at the boundary) or the raw codes. ``mean_axes`` (outputs
    only): the model ends in a float ``ReduceMean`` over these trailing logical axes of
    the dequantized tensor, computed on the CPU as onnxruntime does
    (``bamboo.runtime.pool.mean_float``), then reshaped to ``onnx_shape``.
    """

    onnx_name: str
    tensor: str
    onnx_shape: tuple
    float: bool
    mean_axes: tuple = ()

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class Graph:
    """An immutable IR graph; nodes in topological order."""

    nodes: tuple
    tensors: types.MappingProxyType
    inputs: tuple
    outputs: tuple
    name: str = "model"
    notes: tuple = ()  # what the front end assumed (a dynamic batch compiled as 1...)

    def __post_init__(self):
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "tensors", types.MappingProxyType(dict(self.tensors)))

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)

    def producers(self):
        """``{tensor name: node}`` for every node output."""
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self):
        """``{tensor name: [nodes reading it]}``."""
        out = {}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def prune(self):
        """Drop nodes and tensors no graph output depends on."""
        live = {o.tensor for o in self.outputs}
        keep = []
        for n in reversed(self.nodes):
            if any(o in live for o in n.outputs):
                keep.append(n)
                live.update(n.inputs)
        live.update(i.tensor for i in self.inputs)
        tensors = {k: v for k, v in self.tensors.items() if k in live}
        return self.replace(nodes=tuple(reversed(keep)), tensors=tensors)


def verify(graph):
    """Check the IR invariants; raise :class:`IRError` naming the first broken one."""
    defined = {i.tensor for i in graph.inputs}
    for t in defined:
        if t not in graph.tensors:
            raise IRError(f"graph input {t!r} has no tensor description")
    names = set()
    for n in graph.nodes:
        if n.name in names:
            raise IRError(f"two nodes are called {n.name!r}")
        names.add(n.name)
        for i in n.inputs:
            if i not in defined:
                raise IRError(f"node {n.name!r} reads {i!r} before anything writes it")
        for o in n.outputs:
            if o in defined:
                raise IRError(f"node {n.name!r} writes {o!r}, already written")
            t = graph.tensors.get(o)
            if t is None:
                raise IRError(f"node {n.name!r} writes {o!r}, which has no tensor description")
            if t.q.dtype not in ("uint8", "int8"):
                raise IRError(f"tensor {o!r} is {t.q.dtype}, not 8-bit")
            if t.layout == NHWC and len(t.shape) != 4:
                raise IRError(f"tensor {o!r} is NHWC but has shape {t.shape}")
            defined.add(o)
        if n.op in ("conv", "fc"):
            w = n.attrs["w"]
            o_ch = graph.tensors[n.outputs[0]].shape[-1]
            if w.shape[0] != o_ch or n.attrs["bias"].shape != (o_ch,):
                raise IRError(f"node {n.name!r}: weights {w.shape} do not give {o_ch} channels")
        if "lut" in n.attrs and n.attrs["lut"] is not None and n.attrs["lut"].shape != (256,):
            raise IRError(f"node {n.name!r}: a LUT has 256 entries, not {n.attrs['lut'].shape}")
    for o in graph.outputs:
        if o.tensor not in defined:
            raise IRError(f"graph output {o.onnx_name!r} ({o.tensor!r}) is never written")
    return graph


def _fmt_attr(v):
    if isinstance(v, tuple) and any(isinstance(x, np.ndarray) or x is None for x in v):
        return "(" + ", ".join(_fmt_attr(x) for x in v) + ")"
    if isinstance(v, np.ndarray):
        return f"<{v.dtype}{list(v.shape)}>"
    if hasattr(v, "m") and hasattr(v, "e"):
        return f"<rq zp={v.zp} [{v.qmin},{v.qmax}]>"
    return repr(v)


def dump(graph, title=""):
    """The graph as text, one line per node (what ``BAMBOO_DUMP_IR=1`` prints)."""
    lines = [f"== {title or graph.name}: {len(graph.nodes)} nodes"]
    for i in graph.inputs:
        t = graph.tensors[i.tensor]
        lines.append(f"  input  {i.tensor} {t.shape} {t.layout} {t.q}")
    for n in graph.nodes:
        outs = ", ".join(f"{o}{graph.tensors[o].shape}" for o in n.outputs)
        attrs = " ".join(
            f"{k}={_fmt_attr(v)}" for k, v in n.attrs.items() if k not in ("w", "bias", "w_zp")
        )
        extra = f" fused={list(n.fused)}" if n.fused else ""
        extra += f" @{n.target}" if n.target else ""
        lines.append(f"  {n.name}: {n.op}({', '.join(n.inputs)}) -> {outs} {attrs}{extra}")
    for o in graph.outputs:
        lines.append(f"  output {o.onnx_name} <- {o.tensor}")
    return "\n".join(lines)


def env_flag(name):
    """True when the environment variable ``name`` is set to a true value."""
    return os.environ.get(name, "").lower() not in ("", "0", "false", "no")
