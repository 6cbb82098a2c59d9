"""Instruction emission: steps of loads/computes/stores, dependency tokens, encoding.

The tiler produces :class:`Step` s in program order. A step's loads fill on-chip
slots, its computes read them and write one OUT slot, its stores drain that slot.
:func:`assign_tokens` then sets the four token bits of every instruction so the
three queues may run concurrently (VTA's access-execute split):

* RAW load -> compute: the step's last load ``push_next``, its first compute ``pop_prev``.
* RAW compute -> store: the step's last compute ``push_next``, its first store ``pop_prev``.
* WAR compute -> load: a load step overwriting slots last read by the computes of step
  ``w`` waits for step ``w``'s last compute (``push_prev``) with its first load's
  ``pop_next``. Token FIFOs match the k-th pop with the k-th push, so waits are kept
  only when ``w`` exceeds every earlier wait (a later wait implies the earlier ones).
  With two slots per buffer ``w`` is at most ``s - 2``: loads of tile ``n + 1`` overlap
  compute of tile ``n``.
* WAR store -> compute on OUT slots the same way (``push_prev`` / ``pop_next``).
* DRAM RAW between layers: a barrier step (a compute that moves no data, ``VEC`` with
  ``out_h = 0``) waits for the last store of the layer before, and the next layer's
  first load waits for the barrier. ``FINISH`` waits for the last store.

Every push is matched by exactly one pop, so all token FIFOs are empty at ``FINISH``.
"""

from dataclasses import dataclass, field

from bamboo.arch import isa

__all__ = ["Op", "Step", "assign_tokens", "barrier_step", "encode_steps", "finish_step"]

_QUEUE = {isa.Opcode.LOAD: "load", isa.Opcode.STORE: "store", isa.Opcode.CONV: "compute",
          isa.Opcode.VEC: "compute", isa.Opcode.FINISH: "compute"}


@dataclass
class Op:
    """One instruction before its token bits: ``fields`` for :func:`bamboo.arch.isa.encode`."""

    opcode: int
    fields: dict
    reads: tuple = ()
    writes: tuple = ()
    nbytes: int = 0
    macs: int = 0
    tokens: dict = field(default_factory=dict)

    @property
    def queue(self):
        return _QUEUE[self.opcode]


@dataclass
class Step:
    """Loads, computes and stores of one tile (``node`` names the layer)."""

    node: str
    loads: list = field(default_factory=list)
    computes: list = field(default_factory=list)
    stores: list = field(default_factory=list)
    barrier: bool = False


def barrier_step(node):
    """A compute that moves nothing: orders the next layer's loads after this one's stores."""
    return Step(node, computes=[Op(isa.Opcode.VEC, {"vop": isa.VecOp.COPY, "out_h": 0})],
                barrier=True)


def finish_step(node="finish", irq=1):
    return Step(node, computes=[Op(isa.Opcode.FINISH, {"irq": irq})], barrier=True)


def assign_tokens(steps):
    """Set the token bits of every op in ``steps`` (see the module docstring); returns steps."""
    last_reader = {}      # slot -> step index of its last compute reader
    out_reader = {}       # OUT slot -> step index of its last store
    wait_cl, wait_sc = -1, -1
    last_store, barrier = -1, -1
    for s, step in enumerate(steps):
        assert step.computes, "every step computes"
        first_c, last_c = step.computes[0], step.computes[-1]
        if step.loads:
            written = {w for op in step.loads for w in op.writes}
            w = max([last_reader.get(slot, -1) for slot in written] + [barrier])
            if w > wait_cl:
                step.loads[0].tokens["pop_next"] = 1
                steps[w].computes[-1].tokens["push_prev"] = 1
                wait_cl = w
            step.loads[-1].tokens["push_next"] = 1
            first_c.tokens["pop_prev"] = 1
        outs = {w for op in step.computes for w in op.writes}
        w = max([out_reader.get(slot, -1) for slot in outs] +
                [last_store if step.barrier else -1])
        if w > wait_sc:
            first_c.tokens["pop_next"] = 1
            steps[w].stores[-1].tokens["push_prev"] = 1
            wait_sc = w
        if step.barrier:
            barrier = s
        for op in step.computes:
            for slot in op.reads:
                last_reader[slot] = s
        if step.stores:
            last_c.tokens["push_next"] = 1
            step.stores[0].tokens["pop_prev"] = 1
            for op in step.stores:
                for slot in op.reads:
                    out_reader[slot] = s
            last_store = s
    return steps


def encode_steps(steps):
    """Instruction integers of ``steps`` in program order, and ``[(node, first, count)]``."""
    words, ranges = [], []
    for step in steps:
        first = len(words)
        for op in step.loads + step.computes + step.stores:
            words.append(isa.encode(op.opcode, **op.fields, **op.tokens))
        if ranges and ranges[-1][0] == step.node:
            ranges[-1] = (step.node, ranges[-1][1], ranges[-1][2] + len(words) - first)
        else:
            ranges.append((step.node, first, len(words) - first))
    return words, ranges
