"""The walker of an artifact's step schedule, shared by the session and the simulator.

The METADATA section (:class:`bamboo.arch.metadata.Metadata`) lists fabric and CPU
steps in order. :func:`walk` runs them on ``values`` (``{tensor: codes}``, IR physical
layout): a CPU step through ``cpu(k, step, values)``; a fabric step by writing the
inputs it reads from the processor into their exchange buffers (channel-blocked,
``bamboo.runtime.layout``; a tensor an earlier fabric step left in DRAM is not copied
again), running its instructions and reading its outputs back. The DRAM side is a
:class:`Port`: the session's DDR buffer and device, or the simulator's memory array.
"""

import numpy as np
from bamboo.arch.layout import act_bytes

from .layout import from_blocked, to_blocked

__all__ = ["Port", "walk"]


class Port:
    """The DMA window seen by :func:`walk` (override all four)."""

    def write(self, k, step, blobs):
        """Write ``blobs`` (``[(offset, uint8 array)]``), the inputs of fabric step ``k``."""
        raise NotImplementedError

    def execute(self, k, step):
        """Run fabric step ``k``'s instructions to the end."""
        raise NotImplementedError

    def read(self, k, step, spans):
        """The bytes of ``spans`` (``[(offset, nbytes)]``), the outputs of step ``k``."""
        raise NotImplementedError


def walk(meta, rows, values, port, cpu):
    """Run the schedule of ``meta`` on ``values`` (updated in place) and return it.

    ``rows`` is the array's row count (the channel block); ``cpu(k, step, values)``
    runs CPU step ``k``.
    """
    tensors = meta.tensors
    on_device = set()
    for k, step in enumerate(meta.steps):
        if not step.on_fabric:
            cpu(k, step, values)
            continue
        port.write(
            k,
            step,
            [
                (tensors[t].offset, to_blocked(values[t], rows))
                for t in step.inputs
                if t not in on_device
            ],
        )
        port.execute(k, step)
        outs = [tensors[t] for t in step.outputs]
        raws = port.read(k, step, [(d.offset, act_bytes(*d.canon, rows)) for d in outs])
        for t, d, raw in zip(step.outputs, outs, raws):
            values[t] = from_blocked(raw, *d.canon, rows, np.dtype(d.dtype)).reshape(d.shape)
        on_device.update(step.outputs)
    return values
