"""Emulated fabric time for the instruction simulator: runs paced by the cycle model.

The instruction simulator is hundreds of times slower than the fabric and holds
Python's GIL while it works, whereas the board's engine costs the ARM cores nothing
while it runs. So on the plain ``isa`` backend a pipelined session
(:meth:`bamboo.runtime.session.Session.run_batch`) cannot overlap anything, and it
gains nothing. To measure what the pipeline overlaps on the board, an
:class:`~bamboo.sim.isa_device.IsaDevice` made with ``pace=True`` emulates the fabric
with a :class:`FabricPacer`:

* a run shows done on STATUS the cycle model's time after ``CTRL.start``
  (:func:`bamboo.sim.cycles.simulate` at the configuration's clock behind the board's
  memory model, ``bamboo.arch.timing.BOARDS``), and the device waits for it in
  ``time.sleep``, which releases the GIL as the board's wait for the interrupt does;
* the simulator's results are memoized by the bytes the run reads: the first run of a
  program on given DDR contents executes the simulator (host time spent before the
  emulated end: warm up before timing), later runs on the same bytes write the recorded
  output bytes back. The key is the program words and every DDR byte its LOADs read that
  its own STOREs did not write first (inputs, weights, parameters, tables), so a hit
  writes exactly what the simulator would, given that a segment does not depend on
  on-chip state left by an earlier run (the back end resets its on-chip caches per
  segment; the session relies on the same property to interleave frames).

Times measured on a paced device are emulated fabric times: they show what the
runtime overlaps, not what any hardware does.
"""

import hashlib

import numpy as np
from bamboo.arch import isa
from bamboo.arch import timing as T
from bamboo.arch.errors import BambooError
from bamboo.arch.layout import transfer_elem_bytes

__all__ = ["FabricPacer", "PacedProgram"]

#: Memoized results kept per pacer (oldest dropped first).
MAX_ENTRIES = 256


class PacedProgram:
    """What the pacer knows of one run's instruction words in a window of ``size`` bytes.

    Attributes
    ----------
    cycles : int
        The cycle model's length of the run.
    seconds : float
        ``cycles`` at the pacer's clock, times its ``stretch``: the emulated time.
    reads, writes : list of (int, int) or None
        Window byte ranges ``[lo, hi)`` read from DDR before being written by the run,
        and written by it; None when the program does not decode or a transfer leaves
        the window (the simulator traps: never memoized).
    """

    def __init__(self, cycles, seconds, reads, writes):
        self.cycles, self.seconds, self.reads, self.writes = cycles, seconds, reads, writes


def _intervals(mask):
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _transfer_bytes(config, f):
    """Window byte indices of a LOAD's or STORE's DRAM side, row by row."""
    eb = transfer_elem_bytes(config, f)
    rows = f["dram_addr"] + np.arange(f["y_size"], dtype=np.int64)[:, None] * f["x_stride"] * eb
    return (rows + np.arange(f["x_size"] * eb, dtype=np.int64)[None, :]).reshape(-1)


class FabricPacer:
    """Emulated fabric: the cycle model's time per run, the simulator's results memoized.

    Parameters
    ----------
    config : AcceleratorConfig
        The emulated accelerator.
    memory : str or MemoryTiming
        The memory behind the engine (``bamboo.arch.timing.BOARDS``; default ``ultra96``).
    clock_mhz : float, optional
        The engine's clock (default the configuration's), with the memory model at it.
    stretch : float
        Emulated time = ``stretch`` x the modelled time (default 1): a slower fabric with
        the same cycle counts (tests use it to make fabric and CPU times comparable).
    """

    def __init__(self, config, memory="ultra96", clock_mhz=None, stretch=1.0):
        if isinstance(memory, str):
            if memory not in T.BOARDS:
                raise ValueError(f"memory must be one of {sorted(T.BOARDS)}, not {memory!r}")
            memory = T.BOARDS[memory]
        clock = config.clock_mhz if clock_mhz is None else float(clock_mhz)
        if not clock > 0:
            raise ValueError(f"clock_mhz must be positive, not {clock_mhz!r}")
        if not stretch > 0:
            raise ValueError(f"stretch must be positive, not {stretch!r}")
        self.config, self.memory, self.clock_mhz = config, memory, clock
        self.stretch = float(stretch)
        self._programs = {}
        self._memo = {}
        self.hits = self.misses = 0

    def program(self, words, size):
        """The :class:`PacedProgram` of instruction bytes ``words`` in a ``size``-byte window."""
        key = (words, size)
        prog = self._programs.get(key)
        if prog is None:
            prog = self._programs[key] = self._analyse(words, size)
        return prog

    def _analyse(self, words, size):
        from . import cycles

        try:
            _, end, fields = cycles.simulate(
                self.config, isa.decode_bytes(words), self.memory, self.clock_mhz
            )
        except (BambooError, RuntimeError):
            # Undecodable, or a pop no push feeds (the cycle model's deadlock): the
            # simulator traps such a run at once; it is neither paced nor memoized.
            return PacedProgram(0, 0.0, None, None)
        total = int(round(max(end))) if end else 0
        seconds = total / (self.clock_mhz * 1e6) * self.stretch
        read, written = np.zeros(size, bool), np.zeros(size, bool)
        for f in fields:
            if f["opcode"] not in (isa.Opcode.LOAD, isa.Opcode.STORE):
                continue
            idx = _transfer_bytes(self.config, f)
            if idx.size and (idx.min() < 0 or idx.max() >= size):
                return PacedProgram(total, seconds, None, None)
            if f["opcode"] == isa.Opcode.LOAD:
                read[idx[~written[idx]]] = True
            else:
                written[idx] = True
        return PacedProgram(total, seconds, _intervals(read), _intervals(written))

    def _key(self, words, prog, window):
        h = hashlib.blake2b(words, digest_size=16)
        for lo, hi in prog.reads:
            h.update(window[lo:hi])  # hashlib releases the GIL on large buffers
        return (len(window), h.digest())

    def replay(self, words, prog, window):
        """Write the memoized result of this run into ``window``; returns ``(hit, key)``."""
        if prog.reads is None:
            return False, None
        key = self._key(words, prog, window)
        entry = self._memo.get(key)
        if entry is None:
            self.misses += 1
            return False, key
        for (lo, hi), data in zip(prog.writes, entry):
            window[lo:hi] = data
        self.hits += 1
        return True, key

    def record(self, key, prog, window):
        """Remember what a successful simulator run wrote (``key`` from :meth:`replay`)."""
        if key is None:
            return
        if len(self._memo) >= MAX_ENTRIES:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = [window[lo:hi].copy() for lo, hi in prog.writes]
