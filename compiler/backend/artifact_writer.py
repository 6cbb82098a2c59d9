"""The ``.bmb`` sections: metadata JSON (schedule, tensors, memory plan, CPU nodes) and I/O.

CPU nodes travel in the metadata with their attributes: numpy arrays as
``{"__nd__": base64, "dtype", "shape"}``, requantizers as ``{"__rq__": {...}}``
(read back by ``bamboo.runtime.cpu_ops.decode_value``, which the board runs).
"""

import base64

import numpy as np
from bamboo.arch import artifact as art
from bamboo.arch import metadata as md
from bamboo.runtime.cpu_ops import decode_value  # noqa: F401 (the reader lives in the runtime)
from bamboo.runtime.requant import Requant

from ..partition import CPU
from .check import canon

__all__ = ["build", "decode_value", "encode_value", "ioquant", "metadata"]


def encode_value(v):
    """A JSON-able form of an IR attribute value."""
    if isinstance(v, np.ndarray):
        return {
            "__nd__": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode(),
            "dtype": str(v.dtype),
            "shape": list(v.shape),
        }
    if isinstance(v, Requant):
        return {
            "__rq__": {
                "m": encode_value(np.asarray(v.m)),
                "e": encode_value(np.asarray(v.e)),
                "zp": int(v.zp),
                "qmin": int(v.qmin),
                "qmax": int(v.qmax),
            }
        }
    if isinstance(v, (tuple, list)):
        return [encode_value(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def _tensor(t, plan):
    c = canon(t)
    placed = c is not None and (t.name in plan.buffers or t.name in plan.alias)
    return md.Tensor(
        tuple(t.shape),
        t.layout,
        t.q.dtype,
        t.q.scale,
        t.q.zp,
        tuple(c) if placed else None,
        plan.offset(t.name) if placed else None,
    )


def metadata(compiled):
    """The METADATA section (:class:`bamboo.arch.metadata.Metadata`) of a
    :class:`~bamboo.compiler.backend.Compiled`."""
    g = compiled.graph
    # Every node the CPU runs: CPU nodes, and fabric views in CPU steps (a reshape only).
    on_cpu = {name for s in compiled.steps if s.target == CPU for name in s.nodes}
    cpu = {
        n.name: md.CpuNode(
            n.op,
            tuple(n.inputs),
            tuple(n.outputs),
            {k: encode_value(v) for k, v in n.attrs.items()},
        )
        for n in g.nodes
        if n.target == CPU or n.name in on_cpu
    }
    return md.Metadata(
        name=g.name,
        config=compiled.config.to_dict(),
        memory=compiled.plan.schema(),
        steps=tuple(compiled.steps),
        layers=tuple(md.Layer(n, f, c) for n, f, c in compiled.layers),
        tensors={k: _tensor(t, compiled.plan) for k, t in g.tensors.items()},
        cpu_nodes=cpu,
        placement={n.name: md.Placement(n.target, n.reason, n.op) for n in g.nodes},
    )


def ioquant(compiled):
    """The IOQUANT section (:class:`bamboo.arch.metadata.IoQuant`): every model input and
    output, its quantization and buffer."""
    g, plan = compiled.graph, compiled.plan

    def spec(s):
        t = g.tensors[s.tensor]
        placed = s.tensor in plan.buffers or s.tensor in plan.alias
        return md.IoSpec(
            s.onnx_name,
            s.tensor,
            tuple(s.onnx_shape),
            bool(s.float),
            t.q.dtype,
            t.q.scale,
            t.q.zp,
            t.layout,
            plan.offset(s.tensor) if placed else None,
            tuple(s.mean_axes),
        )

    return md.IoQuant(tuple(spec(s) for s in g.inputs), tuple(spec(s) for s in g.outputs))


def build(compiled):
    """The artifact bytes."""
    return art.write_artifact(
        {
            art.Section.PROGRAM: compiled.program,
            art.Section.WEIGHTS: compiled.weights,
            art.Section.METADATA: metadata(compiled),
            art.Section.IOQUANT: ioquant(compiled),
        },
        config_id=compiled.config.config_id,
    )
