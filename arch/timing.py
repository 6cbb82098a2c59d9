"""Cycle formulas of the engine and the memory timing of the boards: the cost model's contract.

The compiler's tiler, the cycle model (``bamboo.sim.cycles``) and the benchmark read
these; the hardware tests check them against the RTL. Standard library only.

Per unit (Ref: docs/compute.md, hw/compute.py, hw/vector.py, hw/dma_read.py,
hw/dma_write.py, hw/load.py, hw/fetch.py):

* CONV: :func:`conv_cycles`, the sequencer's exact busy time (equal to
  ``bamboo.hw.compute.conv_cycles``, which tests/sim/test_cycles.py asserts).
* VEC: :func:`vec_cycles`, ``START + pixels * max(elements, turns) + LATENCY`` about
  (one INP read per cycle, ``bamboo.hw.vector.VectorUnit.cycles``).
* LOAD: the read engine emits one chunk per cycle (an element no wider than the bus is
  one chunk, a wider one ``elem / bus`` chunks; padding elements too, without memory
  traffic); LUT words are written a byte per cycle (256 cycles). Memory side: the
  row's beats, one burst per row (at most 256 beats), after the read latency.
* STORE: one element per cycle on the engine side, beats to memory, then the write
  response.
* Fetch: one instruction per AXI burst, not pipelined (ADDR, read latency, beats, PUSH).
* Bus: a burst announced every ``BURST_ISSUE_CYCLES`` per direction; fetch and LOAD
  share the read direction (hw/bus.py).

Memory: :class:`MemoryTiming` (sustained bandwidth shared by all masters, latencies,
per-burst overhead). ``BOARDS["ultra96"]``: LPDDR4-2133 ... see the comment there.

The processor side: :class:`HostTiming`, what the board's ARM cores spend per frame on
the runtime's CPU steps and on each fabric step (``HOSTS["ultra96"]``, an assumption
until measured on the board, see the comment there).
"""

from dataclasses import dataclass

from .errors import ConfigError
from .isa import ConvMode, VecOp

__all__ = [
    "BOARDS",
    "HOSTS",
    "HostTiming",
    "MemoryTiming",
    "VEC_LATENCY",
    "VEC_START",
    "conv_cycles",
    "conv_insn_cycles",
    "narrow_emit",
    "load_chunks",
    "transfer_beats",
    "vec_cycles",
    "vec_insn_cycles",
    "EngineLevers",
    "dw_engine_cycles",
    "dw_engine_latency",
    "postproc_group_latency",
    "BURST_ISSUE_CYCLES",
    "LUT_BYTES_PER_CYCLE",
    "LUT_CHUNK_OVERHEAD",
    "INSN_FETCH_OVERHEAD",
]

#: hw/vector.py VectorUnit.START / LATENCY (4 + 32 + ActivationUnit.LATENCY: two 13-stage FMAs).
VEC_START = 3
VEC_LATENCY = 39
#: The load unit writes LUT entries a byte per cycle.
LUT_BYTES_PER_CYCLE = 1
#: Cycles a LUT chunk (one bus word) stops the read stream besides its bytes: the cycle
#: it waits in the load unit's chunk register and the one that takes the next chunk
#: (hw/load.py).
LUT_CHUNK_OVERHEAD = 2
#: Fetcher cycles per instruction besides the read latency and the beats (ADDR, PUSH).
INSN_FETCH_OVERHEAD = 2
#: Cycles between two bursts the engine's bus arbiter announces in one direction
#: (hw/bus.py: its AR and AW registers load in the cycle after their handshake). The
#: fetcher's and the load unit's read bursts share the AR register, round robin; a
#: transfer of one-beat rows (a fully connected layer's input column) is AR-bound.
BURST_ISSUE_CYCLES = 2
_MAX_BURST_BEATS = 256


def conv_cycles(config, words_per_tap, taps, emit_pixels=0, depthwise=False):
    """Cycles a CONV instruction keeps the compute unit busy (docs/compute.md).

    Closed form of the sequencer's recurrence: tap ``j`` starts at
    ``max(end(j-1) + 1, end(j-2) + L + 1)``, where ``L = config.array_latency``
    (``rows + cols + 2``, or ``rows + cols / 2 + 2`` packed), so with ``W`` words per
    tap and
    ``cool = L`` tap ``j`` starts at ``1 + (j // 2) * max(2W, W + cool) +
    (j % 2) * W``. Busy = ``1 + run + (L + 4) + (emit_pixels * turns + 1 if emit)``,
    ``turns = config.emit_turns(depthwise)`` (post-processing takes an ACC word a cycle,
    or in ``turns`` lane groups when it has fewer lanes than columns; a depthwise CONV's
    skip the groups past its channels).
    Exact for ``hw/compute.py``'s sequencer: tests/hw/test_compute.py checks it against
    the RTL.
    """
    if taps < 1 or words_per_tap < 1:
        raise ValueError(
            f"taps and words_per_tap must be positive, not {taps!r}, {words_per_tap!r}"
        )
    w, cool = words_per_tap, config.array_latency
    j = taps - 1
    run = 1 + (j // 2) * max(2 * w, w + cool) + (j % 2) * w + w
    emit = emit_pixels * config.emit_turns(depthwise) + 1 if emit_pixels else 0
    return 1 + run + (cool + 4) + emit


def postproc_group_latency(config):
    """Cycles post-processing's lane groups add to its latency: hw/postproc.py registers
    the group before the lanes when ``config.postproc_turns > 1``."""
    return int(config.postproc_turns > 1)


def narrow_emit(f):
    """A decoded CONV ``f`` emits narrow (only its first ``depthwise_channels`` columns):
    every depthwise CONV, and a dense one with ``narrow`` (arch/isa.py)."""
    return f["mode"] == ConvMode.DEPTHWISE or bool(f.get("narrow"))


def conv_insn_cycles(config, f):
    """:func:`conv_cycles` of a decoded CONV instruction ``f`` (a dict of fields)."""
    oh, ow = f["out_h"], f["out_w"]
    if f["mode"] == ConvMode.DEPTHWISE:  # the walker streams whole input row spans,
        # one pass per WGT word (row groups take several kernel rows a pass)
        words = oh * (f["stride_w"] * (ow - 1) + f["kernel_w"])
        taps = config.depthwise_passes(f["kernel_h"], f["kernel_w"])
    else:
        words, taps = oh * ow, f["kernel_h"] * f["kernel_w"] * f["in_blocks"]
    return conv_cycles(config, words, taps, oh * ow if f["acc_emit"] else 0, narrow_emit(f))


def vec_cycles(config, pixels, elements):
    """Cycles of a VEC instruction: ``elements`` INP reads per pixel, one per cycle.

    The lanes take ``turns = config.vector_turns`` cycles per pixel, so pixels start
    ``max(elements, turns)`` cycles apart and the last one leaves ``turns - 1``
    cycles after its first lane group.
    """
    if pixels == 0:
        return 0
    turns = config.vector_turns
    return VEC_START + (pixels - 1) * max(elements, turns) + elements + VEC_LATENCY + turns - 1


def vec_insn_cycles(config, f):
    """:func:`vec_cycles` of a decoded VEC instruction: pools read their window, ADD and
    MUL two operands, the rest one."""
    pixels = f["out_h"] * f["out_w"]
    vop = f["vop"]
    if vop in (VecOp.MAX_POOL, VecOp.AVG_POOL):
        elements = max(1, f["kernel_h"]) * max(1, f["kernel_w"])
    elif vop in (VecOp.ADD, VecOp.MUL):
        elements = 2
    else:
        elements = 1
    return vec_cycles(config, pixels, elements)


def load_chunks(config, elem_bytes, words, lut=False):
    """Engine-side cycles of a LOAD of ``words`` padded elements of ``elem_bytes``."""
    if lut:
        chunks = -(-words * elem_bytes // config.axi_data_bytes)
        return words * elem_bytes // LUT_BYTES_PER_CYCLE + chunks * LUT_CHUNK_OVERHEAD
    return words * max(1, elem_bytes // config.axi_data_bytes)


def transfer_beats(config, dram_addr, y_size, x_size, x_stride, elem_bytes):
    """``(beats, bursts)`` on the bus of a 2-D transfer: each row its own bursts."""
    bus = config.axi_data_bytes
    row = x_size * elem_bytes
    if x_stride * elem_bytes % bus == 0 or y_size == 1:
        off = dram_addr % bus
        per_row = -(-(off + row) // bus)
        beats = per_row * y_size
    else:
        beats = sum(
            -(-((dram_addr + y * x_stride * elem_bytes) % bus + row) // bus) for y in range(y_size)
        )
        per_row = -(-beats // y_size)
    bursts = y_size * -(-per_row // _MAX_BURST_BEATS)
    return beats, bursts


@dataclass(frozen=True)
class MemoryTiming:
    """What the engine's AXI master sees of the memory behind it.

    Parameters
    ----------
    name : str
    bandwidth_gbps : float
        Sustained bandwidth shared by every master of the engine, in GB/s (bytes per ns).
        ``0``: unlimited (the bus's one beat per cycle is the limit).
    read_latency_ns, write_latency_ns : float
        Address to first read beat; last write beat to write response.
    burst_overhead_ns : float
        Memory time lost per burst (command slots, bank/turnaround), on top of its bytes.
    latency_cycles : tuple
        ``(read, write)`` latencies in engine cycles added to the ns figures (for a
        simulation model clocked with the engine).
    """

    name: str
    bandwidth_gbps: float
    read_latency_ns: float = 0.0
    write_latency_ns: float = 0.0
    burst_overhead_ns: float = 0.0
    latency_cycles: tuple = (0, 0)

    def bytes_per_cycle(self, config, clock_mhz):
        """Sustained bytes per engine cycle: the memory's share or the bus, whichever is less."""
        bus = config.axi_data_bytes
        if not self.bandwidth_gbps:
            return float(bus)
        return min(float(bus), self.bandwidth_gbps * 1000.0 / clock_mhz)

    def latencies(self, clock_mhz):
        """``(read, write)`` latency in engine cycles."""
        return (
            self.read_latency_ns * clock_mhz / 1000.0 + self.latency_cycles[0],
            self.write_latency_ns * clock_mhz / 1000.0 + self.latency_cycles[1],
        )


BOARDS = {
    # Ultra96 (xczu3eg): 2 GB LPDDR4, 32-bit, run at 1066 MT/s by the board's PS
    # configuration: 4 B x 1.066 GT/s = 4.26 GB/s peak. Sustained: 75 % of peak = 3.2 GB/s,
    # because (a) the DDR controller of the Zynq UltraScale+ PS reaches ~80-90 % of peak
    # on long sequential single-stream bursts, (b) Bamboo mixes reads and writes (bus
    # turnarounds) and row-strided 2-D tiles (page misses), (c) refresh and the PS (Linux,
    # DisplayPort scan-out) share the same DDR. The engine's one S_AXI_HP port of 128 bits
    # caps it further at 16 B x f_clk (3.0 GB/s at 187.5 MHz, 4.0 GB/s at 250 MHz).
    # Latencies: HP port to LPDDR4 and back, ~200 ns read (published ZynqMP HP measurements
    # are 150-250 ns), ~150 ns write response. 10 ns of DDR time per burst: short rows
    # (3-pixel halo rows of 48 B) pay it, 4 KiB bursts do not notice it.
    "ultra96": MemoryTiming(
        "ultra96",
        bandwidth_gbps=3.2,
        read_latency_ns=200.0,
        write_latency_ns=150.0,
        burst_overhead_ns=10.0,
    ),
    # cocotbext-axi's AxiRam behind the RTL tests (tests/sim/cocotb_cycles.py): a beat per
    # cycle; the latencies (with the engine's own pipeline around them) are fitted to the
    # RTL's CYCLES counter together with sim.cycles.Calibration.
    "cocotb": MemoryTiming("cocotb", bandwidth_gbps=0.0, latency_cycles=(2, 2)),
    # An ideal memory: one beat per cycle, no latency (upper bound of the engine).
    "ideal": MemoryTiming("ideal", bandwidth_gbps=0.0),
}


@dataclass(frozen=True)
class HostTiming:
    """What the processor side costs per frame: the runtime (``bamboo.runtime.session``,
    numpy) on the board's ARM cores.

    The runtime's own CPU work (its CPU nodes, quantizing, channel-blocking) is measured
    on the workstation (``bamboo.report.host_time``) and scaled by ``slowdown``; what
    cannot run there is modelled.

    Parameters
    ----------
    name : str
    slowdown : float
        Board core seconds per workstation CPU second of the same numpy code.
    step_us : float
        Fixed cost of one fabric step on the board (register accesses, start, completion).
    copy_bytes_per_us : float
        Copying an exchange tensor into or out of the DMA buffer, with its cache flush or
        invalidate, per microsecond.
    """

    name: str
    slowdown: float
    step_us: float
    copy_bytes_per_us: float

    def __post_init__(self):
        for f in ("slowdown", "copy_bytes_per_us"):
            if not getattr(self, f) > 0:
                raise ValueError(f"{f} must be positive, not {getattr(self, f)!r}")
        if self.step_us < 0:
            raise ValueError(f"step_us must not be negative, not {self.step_us!r}")

    def seconds(self, workstation_cpu_s, steps, exchange_bytes):
        """Board seconds per frame: scaled CPU work, fixed step costs and the copies."""
        return (
            self.slowdown * workstation_cpu_s
            + 1e-6 * steps * self.step_us
            + 1e-6 * exchange_bytes / self.copy_bytes_per_us
        )


HOSTS = {
    # Ultra96: four Cortex-A53 at 1.2 GHz (xczu3eg, -1 speed grade), PYNQ (Python 3.10,
    # numpy 1.x), one core running the runtime. Assumed, not measured on the board yet:
    # * slowdown 4: an in-order 1.2 GHz A53 (NEON 128-bit, LPDDR4 shared with the fabric)
    #   against a recent x86-64 core (AVX2, ~3-4 GHz) on numpy's streaming loops.
    # * step_us 60: ~6 AXI-Lite accesses through PYNQ's MMIO from Python (~3 us each),
    #   the completion interrupt's wake-up (~20 us), the flush/invalidate calls.
    # * copy_bytes_per_us 1000: memcpy into the uncached-coherent DMA buffer plus the cache
    #   flush or invalidate of its lines, ~1 GB/s on one A53.
    "ultra96": HostTiming("ultra96", slowdown=4.0, step_us=60.0, copy_bytes_per_us=1000.0),
}


# Engine generation 2 (issue 15): levers of unbuilt hardware ---------------------------


@dataclass(frozen=True)
class EngineLevers:
    """What the cycle model projects of engine-generation-2 hardware that is not built.

    Not part of :class:`~bamboo.arch.config.AcceleratorConfig` (nor of its ``config_id``):
    no hardware, compiler or artifact reads these; only ``bamboo.sim.cycles`` (timing),
    ``bamboo.boards.resource_model`` (cost) and ``bamboo explore --gen2``. Every default is
    today's engine, so ``EngineLevers()`` leaves every figure as it is.
    docs/engine2-levers.md says what of each model is RTL-validated and what is not.

    Parameters
    ----------
    dw_lanes : int
        Depthwise engine (hw/dwengine.py): channels per cycle, 0 for none. Depthwise CONVs
        with a kernel of at most ``dw_kernel`` run on it (:func:`dw_engine_cycles`)
        instead of the array's depthwise mapping.
    dw_kernel : int
        The engine's window, 3 or 5 (a smaller kernel runs embedded, scanning a wider
        padded frame).
    dw_multiplier : str
        ``"dsp"`` (a DSP48E2 per tap and lane) or ``"lut"`` (shift-and-add in LUTs).
    dma_words : int
        INP/OUT words the load and store units move per cycle on the engine side (1 or 2);
        the AXI port and the DDR are unchanged.
    fuse_add : bool
        Residual Add in the producing conv's post-processing: the VEC ADD, its store and
        the reload of the conv's output disappear; the skip tensor is still read once.
    fuse_se : bool
        Squeeze-excite on the fly: the global average pool accumulated in the producing
        conv's post-processing (the pool's reload disappears) and the channel scale
        applied as the next conv loads (the MUL_CHANNEL pass disappears).
    fuse_block : bool
        Inverted-residual blocks (expand 1x1, depthwise, project 1x1) over row bands kept
        on chip: the expanded tensor is neither stored by the expand conv nor loaded by
        the depthwise conv, and the depthwise output is not stored nor reloaded.
    """

    dw_lanes: int = 0
    dw_kernel: int = 3
    dw_multiplier: str = "dsp"
    dma_words: int = 1
    fuse_add: bool = False
    fuse_se: bool = False
    fuse_block: bool = False

    def __post_init__(self):
        if not isinstance(self.dw_lanes, int) or (
            self.dw_lanes and self.dw_lanes & (self.dw_lanes - 1)
        ):
            raise ConfigError(f"dw_lanes must be 0 or a power of two, not {self.dw_lanes!r}")
        if self.dw_kernel not in (3, 5):
            raise ConfigError(f"dw_kernel must be 3 or 5, not {self.dw_kernel!r}")
        if self.dw_multiplier not in ("dsp", "lut"):
            raise ConfigError(f"dw_multiplier must be dsp or lut, not {self.dw_multiplier!r}")
        if self.dma_words not in (1, 2):
            raise ConfigError(f"dma_words must be 1 or 2, not {self.dma_words!r}")

    @property
    def fused(self):
        """Whether any fusion lever is on (instructions whose work moves elsewhere)."""
        return self.fuse_add or self.fuse_se or self.fuse_block

    def describe(self):
        """Short name of the levers that differ from today's engine (``"today"`` if none)."""
        parts = []
        if self.dw_lanes:
            lut = "L" if self.dw_multiplier == "lut" else ""
            parts.append(f"dw{self.dw_lanes}x{self.dw_kernel}{lut}")
        if self.dma_words > 1:
            parts.append(f"dma{self.dma_words}")
        for name in ("fuse_add", "fuse_se", "fuse_block"):
            if getattr(self, name):
                parts.append(name.replace("fuse_", "fuse-"))
        return "+".join(parts) or "today"


def dw_engine_latency(kernel):
    """hw/dwengine.py ``DepthwiseEngine.LATENCY``: five stages (x, window, operands, two
    product registers), one register per adder-tree level, two for its output FIFO."""
    return 5 + (kernel * kernel - 1).bit_length() + 2


def dw_engine_cycles(levers, channels, in_h, in_w):
    """Cycles of the depthwise engine on ``channels`` channels of a padded ``in_h x in_w``
    input (a kernel smaller than ``levers.dw_kernel`` passed in already embedded).

    The engine scans the padded frame one position per cycle for each group of
    ``dw_lanes`` channels (stride 2 scans every position too, emitting a quarter of
    them); a group's frame starts as the previous one's scan ends (the engine takes its
    next parameters when it stops scanning), and the last one's pipeline drains.
    ``channels / dw_lanes`` is not rounded up: an engine wider than the instruction's
    channel tile is charged its share, as if the compiler gave it ``dw_lanes``-channel
    tiles (an extrapolation: today's depthwise CONV carries
    ``config.depthwise_channels``)."""
    return channels * in_h * in_w / levers.dw_lanes + dw_engine_latency(levers.dw_kernel)
