"""The instruction-level simulator: runs Bamboo programs on numpy arrays, bit-exact.

:class:`Machine` holds a DRAM window (a byte array), the on-chip buffers of one
:class:`~bamboo.arch.AcceleratorConfig` (INP, WGT, PARAM, LUT, ACC, OUT) and the four
token counters between the load, compute and store queues. :meth:`Machine.run`
executes instructions in program order with the semantics of arch/isa.py (LOAD/STORE
2-D transfers with padding, CONV per docs/compute.md, VEC, post-processing through
``bamboo.runtime.requant``) and traps like the hardware, raising :class:`IsaSimError`
with the ``ErrorCode`` and the instruction index (``STATUS.error_code``, ``ERR_INSN``):
illegal opcode, malformed instruction (a field past a buffer's depth, bits set above
the last field, a token bit towards a queue that does not exist), a DMA transfer
outside the window. A pop with no earlier push would wait forever: ``TIMEOUT``.

:func:`run_artifact` runs a whole ``.bmb`` file: fabric segments here, CPU steps
through a callback (the caller's reference kernels).
"""

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from bamboo.arch import isa
from bamboo.arch.artifact import read_artifact
from bamboo.arch.errors import BambooError
from bamboo.arch.layout import LUT_ENTRIES, PARAM_DEPTH, elem_bytes
from bamboo.arch.registers import ErrorCode
from bamboo.runtime.schedule import Port, walk

from . import isa_ops
from .isa_ops import Trap

__all__ = ["IsaSimError", "Machine", "Stats", "layer_stats", "run_artifact"]

_ELEM = {
    isa.Buffer.INP: "rows",
    isa.Buffer.WGT: "wgt",
    isa.Buffer.PARAM: "param",
    isa.Buffer.LUT: "lut",
}


class IsaSimError(BambooError):
    """The simulated engine stopped on an error: ``code`` (ErrorCode), ``index`` (instruction)."""

    def __init__(self, code, index, message):
        super().__init__(f"instruction {index}: {code.name}: {message}")
        self.code, self.index = code, index


@dataclass
class Stats:
    """Counts of one run: per opcode, bytes per buffer, MACs; per-instruction for layers."""

    instructions: dict = field(default_factory=dict)
    load_bytes: dict = field(default_factory=dict)
    store_bytes: int = 0
    macs: int = 0
    per_insn: dict = field(default_factory=dict)  # index -> (bytes, macs)
    tokens_left: dict = field(default_factory=dict)


class Machine:
    """Buffers and DRAM of one accelerator. ``dram``: a uint8 array, the whole DMA window."""

    def __init__(self, config, dram):
        c = self.config = config
        B, C = c.rows, c.cols
        self.dram = dram
        self.inp = np.zeros((c.input_buffer_depth, B), np.uint8)
        self.wgt = np.zeros((c.weight_buffer_depth, C, B), np.int8)
        self.param = np.zeros((PARAM_DEPTH, C), np.uint64)
        self.lut = np.zeros((c.lut_slots, LUT_ENTRIES), np.uint8)
        # ACC banks (config.acc_banks): CONVs accumulate in ``acc``, the bank after the
        # last CONV with acc_emit (hw/compute.py flips banks as it hands one to the emitter).
        self.acc_banks = [np.zeros((c.acc_buffer_depth, C), np.int64) for _ in range(c.acc_banks)]
        self.acc_bank = 0
        self.out = np.zeros((c.output_buffer_depth, C), np.uint8)
        self.stats = Stats()
        self.tokens = {t.name: 0 for t in isa.TOKEN_FIFOS}

    @property
    def acc(self):
        """The ACC bank CONVs accumulate in."""
        return self.acc_banks[self.acc_bank]

    # DMA ---------------------------------------------------------------------------------
    def _dram_rows(self, f, eb):
        y, x, stride = f["y_size"], f["x_size"], f["x_stride"]
        if y == 0 or x == 0:
            raise Trap(ErrorCode.MALFORMED_INSTRUCTION, "transfer of zero elements")
        first, last = f["dram_addr"], f["dram_addr"] + ((y - 1) * stride + x) * eb
        if last > self.dram.size:
            raise Trap(
                ErrorCode.DMA_OUT_OF_WINDOW,
                f"DRAM bytes [{first}, {last}) leave the {self.dram.size}-byte window",
            )
        return f["dram_addr"] + (np.arange(y)[:, None] * stride + np.arange(x)[None, :]) * eb

    def _load(self, f):
        c = self.config
        buf = f["buffer"]
        eb = elem_bytes(c, buf)
        target = {
            isa.Buffer.INP: self.inp,
            isa.Buffer.WGT: self.wgt,
            isa.Buffer.PARAM: self.param,
            isa.Buffer.LUT: self.lut,
        }[buf]
        pt, pb, pl, pr = f["pad_top"], f["pad_bottom"], f["pad_left"], f["pad_right"]
        rows, cols = pt + f["y_size"] + pb, pl + f["x_size"] + pr
        n = rows * cols
        if f["sram_addr"] + n > target.shape[0]:
            raise Trap(
                ErrorCode.MALFORMED_INSTRUCTION,
                f"LOAD of {n} words at "
                f"{f['sram_addr']} passes the {_ELEM[buf]} buffer depth {target.shape[0]}",
            )
        starts = self._dram_rows(f, eb)
        data = self.dram[starts[..., None] + np.arange(eb)]  # (y, x, eb)
        tile = np.full((rows, cols, eb), f["pad_value"], np.uint8)
        tile[pt : pt + f["y_size"], pl : pl + f["x_size"]] = data
        words = tile.reshape(n, eb)
        if buf == isa.Buffer.PARAM:
            words = words.view("<u8").astype(np.uint64)
        target[f["sram_addr"] : f["sram_addr"] + n] = words.view(target.dtype).reshape(
            (n,) + target.shape[1:]
        )
        self.stats.load_bytes[_ELEM[buf]] = (
            self.stats.load_bytes.get(_ELEM[buf], 0) + f["y_size"] * f["x_size"] * eb
        )
        return f["y_size"] * f["x_size"] * eb

    def _store(self, f):
        B, C = self.config.rows, self.config.cols
        if f["lane"] >= C // B:
            raise Trap(ErrorCode.MALFORMED_INSTRUCTION, f"STORE lane {f['lane']} of {C // B}")
        n = f["y_size"] * f["x_size"]
        if f["sram_addr"] + n > self.out.shape[0]:
            raise Trap(ErrorCode.MALFORMED_INSTRUCTION, "STORE passes the OUT buffer depth")
        starts = self._dram_rows(f, B)
        words = self.out[f["sram_addr"] : f["sram_addr"] + n, f["lane"] * B : (f["lane"] + 1) * B]
        self.dram[starts[..., None] + np.arange(B)] = words.reshape(f["y_size"], f["x_size"], B)
        self.stats.store_bytes += n * B
        return n * B

    # tokens -------------------------------------------------------------------------------
    _TOKEN_BITS: ClassVar[tuple] = tuple(f.name for f in isa.HEADER if f.name != "opcode")
    _LEGAL: ClassVar[dict] = {q: isa.token_bits(q) for q in isa.QUEUES}

    def _tokens(self, f, queue, pop):
        legal = self._LEGAL[queue]
        for bit in self._TOKEN_BITS:
            if not f[bit]:
                continue
            if bit not in legal:
                raise Trap(ErrorCode.MALFORMED_INSTRUCTION, f"{queue} queue has no {bit} token")
            fifo = legal[bit].name
            if pop and bit == legal[bit].pop:
                if self.tokens[fifo] == 0:
                    raise Trap(
                        ErrorCode.TIMEOUT,
                        f"{bit} waits for a {fifo} token that no earlier instruction pushes",
                    )
                self.tokens[fifo] -= 1
            elif not pop and bit == legal[bit].push:
                self.tokens[fifo] += 1

    # run ----------------------------------------------------------------------------------
    def step(self, word):
        """Execute one instruction word; returns ``(opcode, bytes, macs)``; raises Trap."""
        opcode = word & 0xF
        if opcode not in isa.FORMATS:
            raise Trap(ErrorCode.ILLEGAL_OPCODE, f"illegal opcode {opcode}")
        try:
            f = isa.decode(word)
        except isa.IsaError as exc:
            raise Trap(ErrorCode.MALFORMED_INSTRUCTION, str(exc)) from None
        queue = isa.QUEUE_OF[opcode]
        self._tokens(f, queue, pop=True)
        nbytes = macs = 0
        if opcode == isa.Opcode.LOAD:
            nbytes = self._load(f)
        elif opcode == isa.Opcode.STORE:
            nbytes = self._store(f)
        elif opcode == isa.Opcode.CONV:
            macs = isa_ops.conv(self, f)
        elif opcode == isa.Opcode.VEC:
            macs = isa_ops.vec(self, f)
        self._tokens(f, queue, pop=False)
        return opcode, nbytes, macs

    def run(self, words, start=0, count=None):
        """Run ``words[start:start+count]`` (ints) up to and including FINISH; returns Stats."""
        end = len(words) if count is None else start + count
        st = self.stats
        for i in range(start, end):
            try:
                opcode, nbytes, macs = self.step(words[i])
            except Trap as trap:
                raise IsaSimError(trap.args[0], i, trap.args[1]) from None
            name = isa.opcode_name(opcode)
            st.instructions[name] = st.instructions.get(name, 0) + 1
            st.macs += macs
            st.per_insn[i] = (nbytes, macs)
            if opcode == isa.Opcode.FINISH:
                break
        st.tokens_left = dict(self.tokens)
        return st


def layer_stats(stats, layers):
    """``{node: {"instructions", "bytes", "macs"}}`` from :class:`Stats` and artifact layers
    (:class:`bamboo.arch.metadata.Layer`)."""
    out = {}
    for ly in layers:
        d = out.setdefault(ly.node, {"instructions": 0, "bytes": 0, "macs": 0})
        for i in range(ly.first, ly.first + ly.count):
            if i in stats.per_insn:
                b, m = stats.per_insn[i]
                d["instructions"] += 1
                d["bytes"] += b
                d["macs"] += m
    return out


class _DramPort(Port):
    """The simulator's DRAM array and :class:`Machine` as the schedule walker's port."""

    def __init__(self, machine, dram, program):
        self.machine, self.dram = machine, dram
        self.words = isa.decode_bytes(program)

    def write(self, k, step, blobs):
        for offset, blob in blobs:
            self.dram[offset : offset + blob.size] = blob

    def execute(self, k, step):
        m = self.machine
        m.run(self.words, step.insn_start, step.insn_count)
        if any(m.tokens.values()):
            raise IsaSimError(
                ErrorCode.TIMEOUT,
                step.insn_start + step.insn_count - 1,
                f"tokens left at FINISH: {m.tokens}",
            )

    def read(self, k, step, spans):
        return [self.dram[offset : offset + n] for offset, n in spans]


def run_artifact(data, feeds, config, cpu=None):
    """Run a ``.bmb`` on ``feeds`` (``{tensor: codes}``, IR physical layout).

    ``cpu(nodes, values)`` runs CPU steps (updating ``values``, a dict of code
    arrays). The schedule is walked by ``bamboo.runtime.schedule.walk``, as the
    session walks it. Returns ``(values, machine)``: every tensor computed, by name.
    """
    art = read_artifact(data, config_id=config.config_id)
    meta = art.metadata
    dram = np.zeros(meta.memory.footprint, np.uint8)
    w0 = meta.memory.region("weights")[0]
    dram[w0 : w0 + len(art.weights)] = np.frombuffer(art.weights, np.uint8)
    p0 = meta.memory.region("program")[0]
    dram[p0 : p0 + len(art.program)] = np.frombuffer(art.program, np.uint8)
    machine = Machine(config, dram)

    def cpu_step(k, step, values):
        if cpu is None:
            raise BambooError(f"CPU step {list(step.nodes)} needs a cpu callback")
        cpu(list(step.nodes), values)

    values = walk(meta, config.rows, dict(feeds), _DramPort(machine, dram, art.program), cpu_step)
    return values, machine
