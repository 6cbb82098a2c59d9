"""Lowering of ONNX nodes to IR nodes (used by :mod:`.onnx_import`).

Every ONNX value is classified as it is met, as one of the value classes of
:mod:`.onnx_common` (``kind`` in messages):

``Const``        (``const``)   a folded constant (numpy array)
``QConst``       (``qconst``)  ``DequantizeLinear`` of a constant: integer codes with
                               scale/zp/axis (weights, bias)
``Codes``        (``q``)       8-bit codes, an IR tensor (QuantizeLinear or QOperator outputs)
``Dequantized``  (``dq``)      the float view of an IR tensor (a DequantizeLinear output)
``Pending``      (``pending``) the float result of a compute op, waiting for the
                               QuantizeLinear that fixes its output scale (``DQ -> Conv ->
                               Q``); ``Relu``/``Clip`` in between become a clamp
``FloatInput``   (``fin``)     a float graph input, waiting for its QuantizeLinear
``Refused``      (``bad``)     the output of an unsupported node (reported once)

Each op is lowered by its entry in ``HANDLERS`` (at the bottom).

Ops that only move codes (Reshape, Transpose, MaxPool, Slice, Resize nearest...) are
lowered as soon as their input is ``q``/``dq``: the output keeps the input's
quantization, and a QuantizeLinear with the same parameters after them is an alias.
"""

import numpy as np

from . import ir
from .errors import (
    CompilerError,
    MissingInitializerError,
    MixedPrecisionError,
    NotQuantizedError,
    UnsupportedOpError,
)
from .onnx_common import (
    Codes,
    Const,
    Dequantized,
    FloatInput,
    Pending,
    QConst,
    Refused,
    requant_table,
)
from .onnx_common import attrs as _attrs
from .onnx_common import elem_name as _elem_name
from .onnx_common import scalar_q as _scalar_q
from .onnx_compute import lower_compute, reduce_axes
from .onnx_moves import lower_move
from .onnx_qop import lower_qop
from .resize import is_copy_resize, is_float_resize
from .shapes import MAX_TENSOR_BYTES, check_tensor_size, resolve_input_shapes

__all__ = ["Lowering"]

MS = "com.microsoft"
_VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose"}
_MOVE_OPS = _VIEW_OPS | {"MaxPool", "Slice", "Split", "Resize", "Upsample", "Pad"}
_COMPUTE_OPS = {
    "Conv",
    "Gemm",
    "MatMul",
    "Add",
    "Mul",
    "Concat",
    "GlobalAveragePool",
    "AveragePool",
    "Softmax",
    "Relu",
    "Clip",
    "ReduceMean",
}
_LUT_OPS = {"Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh"}
_QOPS = {
    "QLinearConv",
    "QLinearMatMul",
    "QGemm",
    "QLinearAdd",
    "QLinearMul",
    "QLinearGlobalAveragePool",
    "QLinearAveragePool",
    "QLinearConcat",
    "QLinearLeakyRelu",
    "QLinearSigmoid",
    "QLinearSoftmax",
}
# Never folded: DQ of a constant stays integer codes (weights); Constant is read directly.
_FOLD_SKIP = {"DequantizeLinear", "Constant"}


_FLOAT = 1  # onnx.TensorProto.FLOAT


class Lowering:
    """One pass over a prepared model; :meth:`run` returns the IR graph."""

    def __init__(self, model, consts, *, approx=(), input_shapes=None):
        self.model = model
        self.approx = set(approx)
        self.vals = {k: Const(v) for k, v in consts.items()}
        self.nodes = []
        self.tensors = {}
        self.inputs = []
        self.node_names = set()
        self.layout_cache = {}
        self.labels = {}
        self.producer = {}
        self.current = None  # output tensor base name -> IR node name
        self.opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        self.quantized = any(
            n.op_type == "QuantizeLinear" or n.op_type in _QOPS for n in model.graph.node
        )
        if not self.quantized:
            raise NotQuantizedError(
                "the model is float (no QuantizeLinear or QLinear* node); quantize it first "
                "with onnxruntime.quantization.quantize_static (QDQ, uint8 activations)"
            )
        resolved = resolve_input_shapes(model, input_shapes)
        self.notes = resolved.notes + _int8_float_note(model, consts)
        self.total_bytes = 0
        for name, shape in resolved.shapes.items():
            elem = next(i for i in model.graph.input if i.name == name).type.tensor_type.elem_type
            self.vals[name] = FloatInput(name, shape, elem)

    # --- bookkeeping -------------------------------------------------------------------------

    def _uname(self, base, used):
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        return name

    def tensor(self, base, shape, q, layout=ir.ND):
        name = self._uname(base, self.tensors)
        shape = tuple(int(s) for s in shape)
        self.total_bytes += check_tensor_size(f"tensor {name!r}", shape)
        if self.total_bytes > MAX_TENSOR_BYTES:
            raise CompilerError(
                f"the model's activations exceed the {MAX_TENSOR_BYTES:,} bytes the "
                f"accelerator's DMA offsets can address (at tensor {name!r}); use a smaller "
                f"input"
            )
        self.tensors[name] = ir.Tensor(name, shape, q, layout)
        return name

    def emit(self, op, base, inputs, out_shape, q, layout=ir.ND, source=(), **attrs):
        name = self._uname(self.labels.get(base) or base or op, self.node_names)
        self.node_names.add(name)
        out = self.tensor(base or name, out_shape, q, layout)
        self.nodes.append(ir.Node(name, op, tuple(inputs), (out,), attrs, source=tuple(source)))
        self.producer[out] = self.nodes[-1]
        return out

    def explicit_pad(self, tname):
        """``(source, (top, left, bottom, right), code)`` if NHWC ``tname`` is a constant-mode
        spatial ``pad`` (no cropping) of ``source``, else ``(tname, zeros, None)``: a Conv or
        pool reading it may take the padding as its own (the pad node is then pruned)."""
        p = self.producer.get(tname)
        if (
            p is None
            or p.op != "pad"
            or p.attrs["mode"] != "constant"
            or self.t(tname).layout != ir.NHWC
        ):
            return tname, (0, 0, 0, 0), None
        (n0, n1), (t, b), (le, r), (c0, c1) = p.attrs["pads"]
        if n0 or n1 or c0 or c1 or min(t, b, le, r) < 0:
            return tname, (0, 0, 0, 0), None
        return p.inputs[0], (t, le, b, r), p.attrs["value"]

    def get(self, name, node):
        if not name:
            return None
        v = self.vals.get(name)
        if v is None:
            raise MissingInitializerError(
                f"node {node.name or node.op_type!r} ({node.op_type}) reads {name!r}, which no "
                f"initializer, input or earlier node provides; the model is incomplete"
            )
        return v

    def const(self, name, node, what="input"):
        v = self.get(name, node)
        if v.kind != "const":
            raise UnsupportedOpError(
                f"node {node.name or node.op_type!r} ({node.op_type}): {what} {name!r} must be a "
                f"constant, but it is computed at run time"
            )
        return v.value

    def t(self, name):
        return self.tensors[name]

    def act(self, name, node):
        """IR tensor behind a ``q`` or ``dq`` value."""
        v = self.get(name, node)
        if v.kind in ("q", "dq"):
            return v.tensor
        if v.kind == "fin":
            raise NotQuantizedError(
                f"node {node.name or node.op_type!r} ({node.op_type}) reads the float input "
                f"{name!r} directly; quantize the model fully (QuantizeLinear on every input)"
            )
        if v.kind == "pending":
            p = v.node
            raise NotQuantizedError(
                f"node {node.name or node.op_type!r} ({node.op_type}) reads the float output of "
                f"{p.name or p.op_type!r} ({p.op_type}); quantize that node (no "
                f"QuantizeLinear follows it)"
            )
        raise UnsupportedOpError(
            f"node {node.name or node.op_type!r} ({node.op_type}): input {name!r} is a constant "
            f"where Bamboo expects an activation"
        )

    # --- layout ------------------------------------------------------------------------------

    def nhwc(self, tname):
        t = self.t(tname)
        if t.layout == ir.NHWC:
            return tname
        if len(t.shape) != 4:
            raise UnsupportedOpError(f"tensor {tname!r} of shape {t.shape} is not a feature map")
        key = (tname, ir.NHWC)
        if key not in self.layout_cache:
            n, c, h, w = t.shape
            if h == w == 1:  # (N, C, 1, 1): the same bytes in either layout
                self.layout_cache[key] = self.emit(
                    "view", f"{tname}_nhwc", [tname], (n, h, w, c), t.q, ir.NHWC, shape=(n, h, w, c)
                )
            else:
                self.layout_cache[key] = self.emit(
                    "transpose",
                    f"{tname}_nhwc",
                    [tname],
                    (n, h, w, c),
                    t.q,
                    ir.NHWC,
                    perm=(0, 2, 3, 1),
                )
        return self.layout_cache[key]

    def logical(self, tname):
        t = self.t(tname)
        if t.layout == ir.ND:
            return tname
        key = (tname, ir.ND)
        if key not in self.layout_cache:
            shape = ir.logical_shape(t)
            if t.shape[1] == t.shape[2] == 1:
                self.layout_cache[key] = self.emit(
                    "view", f"{tname}_nchw", [tname], shape, t.q, ir.ND, shape=shape
                )
            else:
                self.layout_cache[key] = self.emit(
                    "transpose", f"{tname}_nchw", [tname], shape, t.q, ir.ND, perm=(0, 3, 1, 2)
                )
        return self.layout_cache[key]

    # --- the walk ----------------------------------------------------------------------------

    def run(self):
        """Lower every node; unsupported ones are collected and refused together."""
        refused = []
        for node in self.model.graph.node:
            self.current = node
            if any(isinstance(self.vals.get(i), Refused) for i in node.input if i):
                bad = True  # downstream of an unsupported node: its error says it all
            else:
                try:
                    self.lower_node(node)
                    bad = False
                except UnsupportedOpError as exc:
                    refused.append(str(exc))
                    bad = True
            if bad:
                for o in node.output:
                    self.vals[o] = Refused(node)
        if len(refused) == 1:
            raise UnsupportedOpError(refused[0])
        if refused:
            raise UnsupportedOpError(
                f"{len(refused)} nodes are not supported: " + "; ".join(refused)
            )
        return self.finish()

    def lower_node(self, node):
        op = node.op_type
        if node.domain not in ("", "ai.onnx", MS):
            raise UnsupportedOpError(
                f"node {node.name or op!r}: {op} is a custom op of domain {node.domain!r}, "
                f"which needs its own runtime library; Bamboo runs standard ONNX and "
                f"com.microsoft quantized ops: export the model without it (or replace it "
                f"with standard ops)"
            )
        ins = [self.get(i, node) if i else None for i in node.input]
        if op not in _FOLD_SKIP and all(v is None or v.kind == "const" for v in ins):
            self.fold(node)  # any op, supported or not, of constants (shape arithmetic)
            return
        handler = HANDLERS.get(op)
        if handler is None:
            raise UnsupportedOpError(
                f"node {node.name or op!r}: operator {node.domain + '.' if node.domain else ''}"
                f"{op} is not supported by Bamboo; replace it in the model or file an issue"
            )
        handler(self, node, ins)

    # --- the handlers of HANDLERS: (self, node, input values) --------------------------------

    def constant(self, node, ins):
        from onnx import numpy_helper

        a = node.attribute[0]
        if a.name != "value":
            raise UnsupportedOpError(f"node {node.name!r}: Constant {a.name} unsupported")
        self.vals[node.output[0]] = Const(numpy_helper.to_array(a.t))

    def shape(self, node, ins):
        """``Shape``/``Size`` of a tensor whose shape is known: a constant."""
        t = self.t(self.act(node.input[0], node))
        shape = np.array(ir.logical_shape(t), dtype=np.int64)
        if node.op_type == "Size":
            val = np.int64(shape.prod())
        else:
            a = _attrs(node)
            val = shape[a.get("start", 0) : a.get("end", len(shape))]
        self.vals[node.output[0]] = Const(val)

    def identity(self, node, ins):
        if ins[0] is not None and ins[0].kind in ("qconst", "pending"):
            # The dynamo exporter shares a weight or bias through an Identity (after its
            # DequantizeLinear), and may put one after a float op: the same value.
            self.vals[node.output[0]] = ins[0]
        else:
            self.move(node, ins)

    def defer(self, node, ins):
        """A float op: its output waits for the QuantizeLinear that fixes its scale."""
        for o in node.output:
            self.vals[o] = Pending(node)

    def qop(self, node, ins):
        lower_qop(self, node)

    def finish(self):
        outputs = []
        for vi in self.model.graph.output:
            v = self.vals.get(vi.name)
            if v is None:
                raise MissingInitializerError(f"graph output {vi.name!r} is never computed")
            if v.kind == "pending" and v.node.op_type == "ReduceMean":
                outputs.append(self.float_mean_output(vi, v))
                continue
            if v.kind not in ("q", "dq"):
                what = v.node.op_type if v.kind == "pending" else v.kind
                raise NotQuantizedError(
                    f"output {vi.name!r} comes from a float {what}; quantize the model so a "
                    f"QuantizeLinear/DequantizeLinear pair ends every output"
                )
            t = self.t(v.tensor)
            outputs.append(ir.IOSpec(vi.name, v.tensor, ir.logical_shape(t), v.kind == "dq"))
        g = ir.Graph(
            tuple(self.nodes),
            self.tensors,
            tuple(self.inputs),
            tuple(outputs),
            name=self.model.graph.name or "model",
            notes=self.notes,
        )
        return ir.verify(g.prune())

    def float_mean_output(self, vi, v):
        """An output that is a float ``ReduceMean`` of dequantized codes (then reshaped), as
        SqueezeNet's head: onnxruntime runs it in float after DequantizeLinear, and so does
        the CPU (``IOSpec.mean_axes``, ``bamboo.runtime.pool.mean_float``)."""
        node, views = v.node, v.views
        src = self.get(node.input[0], node)
        if src.kind != "dq":
            raise NotQuantizedError(
                f"output {vi.name!r} comes from a float ReduceMean of a value that is not "
                f"dequantized codes; quantize the model so a QuantizeLinear/DequantizeLinear "
                f"pair ends every output"
            )
        shape = ir.logical_shape(self.t(src.tensor))
        axes = reduce_axes(self, node, len(shape))
        if not axes or axes != list(range(len(shape) - len(axes), len(shape))):
            raise UnsupportedOpError(
                f"output {vi.name!r} comes from a float ReduceMean over axes {axes} of "
                f"{shape}; Bamboo reproduces onnxruntime's float mean over trailing axes only"
            )
        out = np.zeros(shape, np.float32).mean(
            axis=tuple(axes), keepdims=bool(_attrs(node).get("keepdims", 1))
        )
        for view in views:
            out = self.fold_value(view, out)
        self.notes = tuple(self.notes) + (
            f"output {vi.name!r} is a float ReduceMean over axes {axes} of dequantized codes "
            f"(no QuantizeLinear follows it): onnxruntime runs it in float, and so does the "
            f"CPU after the output's DequantizeLinear, in onnxruntime's summation order",
        )
        return ir.IOSpec(
            vi.name, src.tensor, tuple(int(d) for d in out.shape), True, mean_axes=tuple(axes)
        )

    # --- constants ---------------------------------------------------------------------------

    def fold_value(self, node, value):
        """``node``'s first output when its first input is ``value`` (its other inputs are
        constants): the shape a view gives a value that is not a constant."""
        return self.fold(node, {node.input[0]: value})[0]

    def fold(self, node, given=None):
        """Evaluate a node whose inputs are all constants (onnx's reference evaluator), or
        ``given`` values; the outputs are recorded as constants (not with ``given``)."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        given = given or {}
        feeds = {
            f"i{k}": given[i] if i in given else self.vals[i].value
            for k, i in enumerate(node.input)
            if i
        }
        names = [f"i{k}" if i else "" for k, i in enumerate(node.input)]
        outs = [f"o{k}" for k in range(len(node.output))]
        n = helper.make_node(node.op_type, names, outs, domain=node.domain)
        n.attribute.extend(node.attribute)
        try:
            g = helper.make_graph(
                [n],
                "fold",
                [
                    helper.make_tensor_value_info(
                        k, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None
                    )
                    for k, v in feeds.items()
                ],
                [helper.make_tensor_value_info(o, 0, None) for o in outs],
            )
            m = helper.make_model(g, opset_imports=list(self.model.opset_import))
            res = ReferenceEvaluator(m).run(None, {k: np.asarray(v) for k, v in feeds.items()})
        except Exception as exc:
            raise UnsupportedOpError(
                f"node {node.name or node.op_type!r} ({node.op_type}): constant folding failed "
                f"({type(exc).__name__}: {exc})"
            ) from None
        if given:
            return [np.asarray(r) for r in res]
        for o, r in zip(node.output, res):
            self.vals[o] = Const(np.asarray(r))

    # --- Q / DQ ------------------------------------------------------------------------------

    def qparams(self, node, ins, k=1):
        scale = ins[k].value if ins[k] is not None and ins[k].kind == "const" else None
        if scale is None:
            raise UnsupportedOpError(f"node {node.name!r}: scale must be a constant")
        zp = (
            self.const(node.input[k + 1], node, "zero point")
            if len(ins) > k + 1 and ins[k + 1] is not None
            else np.uint8(0)
        )
        return scale, zp

    def quantize(self, node, ins):
        name = node.name or node.output[0]
        scale, zp = self.qparams(node, ins)
        q = _scalar_q(scale, zp, f"QuantizeLinear {name!r}")
        v = ins[0]
        kind = v.kind
        out = node.output[0]
        if kind == "fin":
            fname, shape, elem = v.name, v.shape, v.elem
            if elem != _FLOAT:
                raise UnsupportedOpError(
                    f"QuantizeLinear {name!r} quantizes the input {fname!r} of type "
                    f"{_elem_name(elem)}; Bamboo takes float32 inputs (or 8-bit codes)"
                )
            layout = ir.NHWC if len(shape) == 4 else ir.ND
            phys = (shape[0], shape[2], shape[3], shape[1]) if layout == ir.NHWC else shape
            t = self.tensor(out, phys, q, layout)
            self.inputs.append(ir.IOSpec(fname, t, tuple(shape), True))
            self.vals[out] = Codes(t)
        elif kind == "dq":
            self.vals[out] = Codes(self.requant(v.tensor, q, name))
        elif kind == "pending":
            t = self.compute(v.node, q, f"{out}_pre" if v.views else out, clamp=None)
            for view in v.views:
                (t,) = lower_move(self, view, t)
            self.vals[out] = Codes(t)
        else:
            raise UnsupportedOpError(f"QuantizeLinear {name!r}: input kind {kind} unsupported")

    def dequantize(self, node, ins):
        name = node.name or node.output[0]
        v = ins[0]
        kind = v.kind
        if kind == "q":
            t = self.t(v.tensor)
            q = _scalar_q(*self.qparams(node, ins), f"DequantizeLinear {name!r}")
            if (q.scale, q.zp) != (t.q.scale, t.q.zp):
                raise UnsupportedOpError(
                    f"DequantizeLinear {name!r}: parameters differ from "
                    f"the QuantizeLinear before it"
                )
            self.vals[node.output[0]] = Dequantized(v.tensor)
        elif kind == "const":
            codes = v.value
            scale, zp = self.qparams(node, ins)
            axis = _attrs(node).get("axis", 1)
            if codes.dtype not in (np.int8, np.uint8, np.int32):
                raise MixedPrecisionError(
                    f"DequantizeLinear {name!r}: constant of type {codes.dtype}; Bamboo takes "
                    f"int8/uint8 weights and int32 bias (quantize with weight_type QInt8)"
                )
            self.vals[node.output[0]] = QConst(
                codes, np.asarray(scale, np.float32), np.asarray(zp), axis
            )
        else:
            raise UnsupportedOpError(f"DequantizeLinear {name!r}: input kind {kind} unsupported")

    def requant(self, tname, q, base):
        """``Q(DQ(t))`` with new parameters: an alias, or a requantizing LUT."""
        t = self.t(tname)
        if (t.q.dtype, t.q.scale, t.q.zp) == (q.dtype, q.scale, q.zp):
            return tname
        return self.emit(
            "lut", base, [tname], t.shape, q, t.layout, table=requant_table(t.q, q), fn="requant"
        )

    # --- code-moving ops ---------------------------------------------------------------------

    def move(self, node, ins=None):
        v = self.get(node.input[0], node)
        if (
            v.kind == "pending"
            and (node.op_type in _VIEW_OPS or is_copy_resize(node))
            and len(node.output) == 1
        ):
            # A float op's result reshaped (ReduceMean -> Flatten) or copied (HardSwish ->
            # nearest Resize) before its QuantizeLinear: still pending. Moving elements
            # commutes with quantizing them, so the move applies to the codes once the
            # QuantizeLinear is met.
            self.vals[node.output[0]] = Pending(v.node, v.views + (node,))
            return
        if v.kind == "pending":
            raise NotQuantizedError(
                f"node {node.name or node.op_type!r} ({node.op_type}) reads the float output of "
                f"{v.node.name or v.node.op_type!r}; quantize that node"
            )
        if is_float_resize(node, v.kind):  # QDQ linear Resize: float, fixed by its Q
            self.vals[node.output[0]] = Pending(node)
            return
        tname = self.act(node.input[0], node)
        outs = lower_move(self, node, tname)
        for o, t in zip(node.output, outs):
            self.vals[o] = type(v)(t)

    # --- compute ops -------------------------------------------------------------------------

    def compute(self, node, q, base, clamp=None):
        """Lower the float ``node`` whose output QuantizeLinear gives ``q``."""
        self.labels.setdefault(base, node.name or f"{node.op_type}_{node.output[0]}")
        return lower_compute(self, node, q, base, clamp)


# {op_type: Lowering method(node, input values)}: every op the front end reads. A node
# whose inputs are all constants is folded instead (except DequantizeLinear of weights).
HANDLERS = {
    "Constant": Lowering.constant,
    "Shape": Lowering.shape,
    "Size": Lowering.shape,
    "QuantizeLinear": Lowering.quantize,
    "DequantizeLinear": Lowering.dequantize,
    **{op: Lowering.move for op in _MOVE_OPS},
    "Identity": Lowering.identity,
    **{op: Lowering.defer for op in _COMPUTE_OPS | _LUT_OPS},
    **{op: Lowering.qop for op in _QOPS},
}


def _int8_float_note(model, consts):
    """A note when the graph has int8-activation QDQ pairs, which onnxruntime (x86) may run
    partly in float.

    Its int8-to-uint8 rewrite skips pairs whose values have several readers, and the ops
    around one stay float there (54 of the 81 Convs of torchvision's EfficientNet-B0);
    Bamboo computes the integer result, which is onnxruntime's on the file's uint8 twin
    (README, Known limits)."""
    dq_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    pairs = [
        n
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
        and len(n.input) == 3
        and getattr(consts.get(n.input[2]), "dtype", None) == np.int8
        and n.output[0] in dq_inputs
    ]
    if not pairs:
        return ()
    return (
        f"int8 activations ({len(pairs)} QuantizeLinear/DequantizeLinear pairs): onnxruntime "
        "(x86) may run ops around them in float, so its run of this file can differ from "
        "Bamboo's integer result in the last code; the bit-exact reference is onnxruntime on "
        "bamboo.models.quantize.uint8_twin(model)",
    )
