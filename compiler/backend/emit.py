"""Instruction emission: steps of loads/computes/stores, dependency tokens, encoding.

The tiler produces :class:`Step` s in program order. A step's loads fill on-chip
slots, its computes read them and write one OUT slot, its stores drain that slot.
:func:`assign_tokens` then sets the four token bits of every instruction so the
three queues may run concurrently (VTA's access-execute split):

* RAW load -> compute: the step's last load ``push_next``, its first compute ``pop_prev``.
* RAW compute -> store: the step's last compute ``push_next``, its first store ``pop_prev``.
* WAR compute -> load: a load overwriting slots last read by the computes of step
  ``w`` waits for step ``w``'s last compute (``push_prev``) with its ``pop_next``.
  Token FIFOs match the k-th pop with the k-th push, so waits are kept only when
  ``w`` exceeds every earlier wait (a later wait implies the earlier ones).
  With two slots per buffer ``w`` is at most ``s - 2``: loads of tile ``n + 1`` overlap
  compute of tile ``n``.
* WAR store -> compute on OUT slots the same way (``push_prev`` / ``pop_next``).
* DRAM RAW: a load reading bytes stored by an earlier step ``d`` waits (``pop_next``)
  for a barrier step (a compute that moves no data, ``VEC`` with ``out_h = 0``) that
  waits for ``d``'s last store. The barrier sits right after step ``max(d, WAR)``, so the
  next layer's first loads overlap the previous layer's last computes and stores as far
  as the bytes they read allow (:func:`_place_barriers`); loads of weights, PARAM words
  and LUTs, which no store writes, need no barrier. ``FINISH`` waits for the last store.
  DRAM WAR needs no token: a step's stores follow its computes, which follow every
  earlier load.
"""

from dataclasses import dataclass, field

import numpy as np
from bamboo.arch import isa

#: Steps a store is assumed to lag its compute by: a DRAM barrier also waits for the
#: stores of steps this far before it (chosen on the cycle model: docs/backend.md, "Tokens").
_STORE_LAG = 2
#: LOADs at least this long are cut by the steps that stored their rows (:func:`_pieces`);
#: shorter ones gain less than the LOADs and barriers the cuts add (cycle model).
_SPLIT_BYTES = 16384

__all__ = ["Op", "Step", "assign_tokens", "barrier_step", "encode_steps", "finish_step"]


@dataclass
class Op:
    """One instruction before its token bits: ``fields`` for :func:`bamboo.arch.isa.encode`;
    ``dram``: a LOAD's or STORE's DRAM bytes, ``(address, rows, row bytes, pitch bytes)``."""

    opcode: int
    fields: dict
    reads: tuple = ()
    writes: tuple = ()
    nbytes: int = 0
    macs: int = 0
    dram: tuple = ()
    tokens: dict = field(default_factory=dict)

    @property
    def queue(self):
        return isa.QUEUE_OF[self.opcode]


@dataclass
class Step:
    """Loads, computes and stores of one tile (``node`` names the layer)."""

    node: str
    loads: list = field(default_factory=list)
    computes: list = field(default_factory=list)
    stores: list = field(default_factory=list)
    barrier: bool = False
    after_store: int = None


def barrier_step(node, after_store=None):
    """A compute that moves nothing: orders loads after stores (``after_store``: the index
    of the step whose stores it waits for; None: every earlier store)."""
    return Step(
        node,
        computes=[Op(isa.Opcode.VEC, {"vop": isa.VecOp.COPY, "out_h": 0})],
        barrier=True,
        after_store=after_store,
    )


def finish_step(node="finish", irq=1):
    return Step(node, computes=[Op(isa.Opcode.FINISH, {"irq": irq})], barrier=True)


class _DramWriters:
    """The last step storing each unit of DRAM, over the DRAM spans (``Op.dram``) of
    ``ops``; a unit is the largest power of two dividing every address, row and pitch."""

    def __init__(self, ops):
        spans = [op.dram for op in ops if op.dram]
        unit = 1 << 12
        for a, _, row, pitch in spans:
            while (a | row | pitch) % unit:
                unit //= 2
        self.unit = unit
        pad = max((pitch for _, _, _, pitch in spans), default=0)
        end = max((a + n * max(row, pitch) for a, n, row, pitch in spans), default=0)
        self.last = np.full((end + pad) // unit + 1, -1, np.int64)

    def _view(self, span):
        n = span[1]
        a, row, pitch = (span[k] // self.unit for k in (0, 2, 3))
        if n == 1 or pitch == row:
            return self.last[a : a + n * row]
        if pitch > row:
            return self.last[a : a + n * pitch].reshape(n, pitch)[:, :row]
        return self.last[a : a + (n - 1) * pitch + row]  # rows overlap: their hull

    def rows(self, op):
        """The last step storing each DRAM row of ``op`` (-1: none)."""
        a, n, row, pitch = op.dram
        u = self.unit
        return np.array(
            [
                self.last[(a + r * pitch) // u : (a + r * pitch + row) // u].max(initial=-1)
                for r in range(n)
            ]
        )

    def writer(self, op):
        """The last step storing any byte ``op`` reads (-1: none)."""
        return int(self._view(op.dram).max(initial=-1)) if op.dram else -1

    def store(self, op, s):
        self._view(op.dram)[...] = s


def _split_rows(op, cuts):
    """``op`` (a LOAD) as one LOAD per run of its DRAM rows between the row indices
    ``cuts``: the same words land at the same INP addresses (padding rows with the first
    and last run, padding columns with every row)."""
    f = op.fields
    y, width = f["y_size"], f["pad_left"] + f["x_size"] + f["pad_right"]
    a, _, row, pitch = op.dram
    out = []
    for r0, r1 in zip([0] + cuts, cuts + [y]):
        g = dict(
            f,
            y_size=r1 - r0,
            dram_addr=f["dram_addr"] + r0 * pitch,
            pad_top=f["pad_top"] if r0 == 0 else 0,
            pad_bottom=f["pad_bottom"] if r1 == y else 0,
            sram_addr=f["sram_addr"] + (f["pad_top"] + r0 if r0 else 0) * width,
        )
        out.append(
            Op(
                op.opcode,
                g,
                reads=op.reads,
                writes=op.writes,
                nbytes=(r1 - r0) * row,
                dram=(a + r0 * pitch, r1 - r0, row, pitch),
            )
        )
    return out


def _pieces(op, writers, covered):
    """``op`` cut so that the rows stored last come in a LOAD of their own: runs of rows
    from the end, the last run the rows of the latest storing step, each run before
    twice as long (a LOAD fewer per halving). Rows stored at most by step ``covered``
    (already waited for) need no cut, nor LOADs shorter than ``_SPLIT_BYTES``."""
    if op.nbytes < _SPLIT_BYTES or op.dram[1] < 2 or writers.writer(op) <= covered:
        return [op]
    rows = writers.rows(op)
    if rows.min() == rows.max():
        return [op]
    n = len(rows)
    last = n - int(np.argmax(rows[::-1] != rows.max()))  # rows [last, n): the latest
    cuts, size, end = [], n - last, last
    while end > 0 and rows[:end].max() > covered:
        cuts.append(end)
        size *= 2
        end = max(0, end - size)
    if end > 0:
        cuts.append(end)
    cuts = sorted(set(cuts) - {0, n})
    return _split_rows(op, cuts) if cuts else [op]


def _place_barriers(steps):
    """``(steps with DRAM barriers inserted, {id(load op): step index it waits for})``.

    A load waits for the last compute reading a slot it writes (WAR) and, if it reads
    DRAM bytes stored by an earlier step ``d`` not yet waited for, for a barrier that
    waits for ``d``'s stores (and for those of the steps ``_STORE_LAG`` and more before
    it, most likely done, so later loads need no barrier of their own). The barrier goes
    right after step ``max(d, WAR, q)``, ``q`` the last compute an earlier load waits for
    (the load queue runs in order): the load waits no longer than it must, and only
    computes past that point wait for the stores. A load of rows stored by several
    steps is cut (:func:`_pieces`), so its first rows need not wait for the last store.
    Within a step, loads that need no new barrier go first. Indices are those of the
    returned list."""
    writers = _DramWriters([op for st in steps for op in st.loads + st.stores])
    last_reader, covered, stored, queued = {}, -1, [], -1
    waits, after = [], {}  # (op, WAR, barrier after) per load; after[p] = store waited
    for j, step in enumerate(steps):
        ops = [piece for op in step.loads for piece in _pieces(op, writers, covered)]
        deps = [
            (op, max([last_reader.get(w, -1) for w in op.writes]), writers.writer(op)) for op in ops
        ]
        deps.sort(key=lambda x: (x[2] > covered, x[2] if x[2] > covered else x[1]))
        step.loads = [op for op, _, _ in deps]
        for op, war, dep in deps:
            p = None
            if dep > covered:
                p = max(dep, war, queued)
                d = max([dep] + [x for x in stored if x <= p - _STORE_LAG][-1:])
                after[p], covered = max(after.get(p, -1), d), d
            waits.append((op, war, p))
            queued = max(queued, war if p is None else p)
        for op in step.computes:
            for slot in op.reads:
                last_reader[slot] = j
        for op in step.stores:
            writers.store(op, j)
        if step.stores:
            stored.append(j)
    return _insert(steps, waits, after)


def _insert(steps, waits, after):
    """The steps with a barrier after every step ``p`` of ``after`` (waiting for the stores
    of step ``after[p]``), and each load's wait as an index into that list."""
    index, out = {}, []
    for j, step in enumerate(steps):
        index[j] = len(out)
        out.append(step)
        if j in after:
            out.append(barrier_step(step.node, after_store=after[j]))
    final = {}
    for op, war, p in waits:
        w = index.get(war, -1)
        final[id(op)] = max(w, index[p] + 1) if p is not None else w
    for step in out:
        if step.after_store is not None:
            step.after_store = index[step.after_store]
    return out, final


def assign_tokens(steps):
    """Set the token bits of every op in ``steps`` (see the module docstring); returns the
    steps with the DRAM barriers inserted (those left without tokens dropped)."""
    steps, load_wait = _place_barriers(steps)
    _set_tokens(steps, load_wait)
    unused = {
        s
        for s, step in enumerate(steps)
        if step.after_store is not None and not any(step.computes[0].tokens.values())
    }
    if not unused:
        return steps
    index, kept = {}, []
    for s, step in enumerate(steps):
        index[s] = len(kept) - (s in unused)  # a dropped barrier: the step before it
        if s not in unused:
            kept.append(step)
        for op in step.loads + step.computes + step.stores:
            op.tokens.clear()
    for step in kept:
        if step.after_store is not None:
            step.after_store = index[step.after_store]
    _set_tokens(kept, {k: index[w] if w >= 0 else w for k, w in load_wait.items()})
    return kept


def _set_tokens(steps, load_wait):
    """The token bits of ``steps``; ``load_wait``: the step each load waits for."""
    out_reader = {}  # OUT slot -> step index of its last store
    wait_cl, wait_sc, last_store = -1, -1, -1
    for s, step in enumerate(steps):
        assert step.computes, "every step computes"
        first_c, last_c = step.computes[0], step.computes[-1]
        for op in step.loads:
            w = load_wait[id(op)]
            if w > wait_cl:
                op.tokens["pop_next"] = 1
                steps[w].computes[-1].tokens["push_prev"] = 1
                wait_cl = w
        if step.loads:
            step.loads[-1].tokens["push_next"] = 1
            first_c.tokens["pop_prev"] = 1
        outs = {w for op in step.computes for w in op.writes}
        store = (
            -1 if not step.barrier else last_store if step.after_store is None else step.after_store
        )
        w = max([out_reader.get(slot, -1) for slot in outs] + [store])
        if w > wait_sc:
            first_c.tokens["pop_next"] = 1
            steps[w].stores[-1].tokens["push_prev"] = 1
            wait_sc = w
        if step.stores:
            last_c.tokens["push_next"] = 1
            step.stores[0].tokens["pop_prev"] = 1
            for op in step.stores:
                for slot in op.reads:
                    out_reader[slot] = s
            last_store = s


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
