"""The accelerator configuration: one frozen object read by hw, compiler and runtime.

The configuration is passed explicitly, never held in a global. Everything the
hardware, the compiler and the runtime need to agree on (array shape, buffer
sizes, bus widths, LUT slots) is a field here or derived from one, and the whole
object hashes to a ``config_id`` that the hardware reports in a register, the
compiler writes into every artifact and the runtime checks before running.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from . import isa
from .errors import ConfigError
from .isa import Opcode

# The instruction fields that address each sized part of the configuration: a size
# the narrowest of them cannot address is refused when the configuration is made.
_ADDRESSED_BY = {
    "input_buffer_depth": (
        (Opcode.LOAD, "sram_addr"),
        (Opcode.CONV, "inp_addr"),
        (Opcode.CONV, "inp_block_stride"),
        (Opcode.VEC, "src_a"),
        (Opcode.VEC, "src_b"),
    ),
    "weight_buffer_depth": ((Opcode.LOAD, "sram_addr"), (Opcode.CONV, "wgt_addr")),
    "output_buffer_depth": (
        (Opcode.STORE, "sram_addr"),
        (Opcode.CONV, "out_addr"),
        (Opcode.VEC, "out_addr"),
    ),
    "lut_slots": ((Opcode.LOAD, "sram_addr"), (Opcode.CONV, "lut_slot"), (Opcode.VEC, "lut_slot")),
}

__all__ = ["AcceleratorConfig", "PRESETS", "preset"]


def _is_pow2(v):
    return v > 0 and (v & (v - 1)) == 0


#: The standalone depthwise engine's fields (hw/dwengine.py), absent from ``to_dict`` at
#: their defaults and from ``config_id`` while ``dw_lanes`` is 0.
_ENGINE_FIELDS = ("dw_lanes", "dw_kernel", "dw_width")
#: Fields added after the presets' identities were fixed: absent from ``to_dict`` (and so
#: from ``config_id``) at their defaults, so a configuration that does not use them keeps
#: the identity, artifacts and recorded estimates it had before they existed.
_LATER_FIELDS = _ENGINE_FIELDS + ("postproc_lanes", "acc_banks")


@dataclass(frozen=True)
class AcceleratorConfig:
    """Shape and sizes of one Bamboo accelerator build.

    Parameters
    ----------
    name : str
        Preset name, informational (not part of ``config_id``).
    rows : int
        Systolic array rows: input channels consumed per cycle.
    cols : int
        Systolic array columns: output channels produced per cycle.
    input_buffer_depth, weight_buffer_depth, acc_buffer_depth, output_buffer_depth : int
        On-chip buffer depths in array-wide words (``rows`` bytes for input,
        ``rows * cols`` bytes for weights, ``cols`` int32 for accumulators,
        ``cols`` bytes for output).
    axi_data_width : int
        Data width of the AXI4 master in bits (S_AXI_HP0_FPD takes 32/64/128).
    axi_addr_width : int
        Address width of the AXI4 master in bits.
    axil_addr_width : int
        Address width of the AXI-Lite register window in bits.
    lut_slots : int
        Number of 256-entry activation LUTs held on chip at once.
    dsp_packing : bool
        Pack two INT8 multiplies sharing one operand into one DSP48E2 (Xilinx WP486).
    vector_lanes : int or None
        Arithmetic lanes of the vector unit (ADD, pools, MUL); ``None``: one per row.
        Fewer lanes take an INP word's ``rows`` channels in ``rows / vector_lanes``
        turns (:attr:`vector_turns`), which costs ADD nothing while it is at most 2
        (ADD reads two words per pixel anyway).
    clock_mhz : float
        Design-intent clock, used by timing constraints and FPS projections.
    depthwise_blocks : int
        Channel blocks (of ``rows`` channels) one depthwise CONV computes side by side,
        each on its own column range, read through its own INP port: the depthwise
        channels are ``min(depthwise_blocks * rows, cols / depthwise_column_step)``.
    depthwise_groups : int
        Row groups of the array in depthwise mode: ``rows / depthwise_groups`` rows
        each, group ``g`` holding kernel row ``ky = p * groups + g`` of pass ``p`` and
        reading its own input row through its own INP port, so a kernel of
        ``kernel_w <= rows / groups`` takes ``ceil(kernel_h / groups)`` passes instead of
        ``kernel_h``. The depthwise path reads ``depthwise_blocks * depthwise_groups``
        INP words a cycle (:attr:`depthwise_ports`).
    dw_lanes : int
        Channels per cycle of the standalone depthwise engine (hw/dwengine.py, engine
        generation 2, docs/engine2.md): a power of two, or 0 for no engine (the default,
        so no preset changes). Not yet wired into the accelerator.
    dw_kernel : int
        The engine's largest kernel, 3 or 5 (``dw_kernel**2 * dw_lanes`` multipliers); a
        smaller odd kernel runs embedded in it with zero taps and one more padding.
    dw_width : int
        The engine's longest padded input row in pixels (line-buffer depth), a power of two.
    postproc_lanes : int or None
        Post-processing lanes (requantizer and activation, hw/postproc.py); ``None``: one
        per column. Fewer lanes take an ACC word's ``cols`` accumulators in ``cols /
        postproc_lanes`` turns (:attr:`postproc_turns`), so an emit takes that many cycles
        a pixel, for 2 DSP48E2 and several hundred LUTs less per lane removed
        (docs/hardware.md, "Post-processing lanes"). A value equal to ``cols`` is stored
        as ``None``: the same hardware has one identity.
    acc_banks : int
        ACC banks of ``acc_buffer_depth`` words each, 1 or 2. With 2 (ping-pong), a CONV
        that emits hands its bank to the emitter and the next CONV accumulates in the
        other bank while post-processing drains the first (hw/compute.py). The bank is
        implicit: it changes after every CONV with ``acc_emit``, so the ISA and the
        compiler's tiling (at most ``acc_buffer_depth`` pixels a CONV) are unchanged.
    """

    name: str = "custom"
    rows: int = 8
    cols: int = 8
    input_buffer_depth: int = 2048
    weight_buffer_depth: int = 1024
    acc_buffer_depth: int = 1024
    output_buffer_depth: int = 1024
    axi_data_width: int = 128
    axi_addr_width: int = 40
    axil_addr_width: int = 12
    lut_slots: int = 2
    dsp_packing: bool = False
    clock_mhz: float = 250.0
    vector_lanes: int | None = None
    depthwise_blocks: int = 1
    depthwise_groups: int = 1
    dw_lanes: int = 0
    dw_kernel: int = 3
    dw_width: int = 256
    postproc_lanes: int | None = None
    acc_banks: int = 1

    def __post_init__(self):
        for field in (
            "rows",
            "cols",
            "input_buffer_depth",
            "weight_buffer_depth",
            "acc_buffer_depth",
            "output_buffer_depth",
            "lut_slots",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or not _is_pow2(value):
                raise ConfigError(f"{field} must be a power of two, not {value!r}")
        for name, fields in _ADDRESSED_BY.items():
            op, f = min(((op, isa.field(op, n)) for op, n in fields), key=lambda p: p[1].max)
            if getattr(self, name) > f.max + 1:
                raise ConfigError(
                    f"{name} must be at most {f.max + 1} ({isa.opcode_name(op)}.{f.name} is "
                    f"{f.width} bits), not {getattr(self, name)!r}"
                )
        lanes = isa.field(Opcode.STORE, "lane")
        if self.cols // self.rows > lanes.max + 1:
            raise ConfigError(
                f"cols / rows must be at most {lanes.max + 1} (STORE.lane is "
                f"{lanes.width} bits), not {self.cols // self.rows}"
            )
        if self.axi_data_width not in (32, 64, 128):
            raise ConfigError(f"axi_data_width must be 32, 64 or 128, not {self.axi_data_width!r}")
        if not 32 <= self.axi_addr_width <= 49:
            raise ConfigError(
                f"axi_addr_width must be between 32 and 49, not {self.axi_addr_width!r}"
            )
        if not 8 <= self.axil_addr_width <= 16:
            raise ConfigError(
                f"axil_addr_width must be between 8 and 16, not {self.axil_addr_width!r}"
            )
        if self.axi_data_width // 8 < 4:
            raise ConfigError("axi_data_width must hold at least one int32")
        if not self.clock_mhz > 0:
            raise ConfigError(f"clock_mhz must be positive, not {self.clock_mhz!r}")
        if self.vector_lanes is not None and not (
            isinstance(self.vector_lanes, int)
            and _is_pow2(self.vector_lanes)
            and self.vector_lanes <= self.rows
        ):
            raise ConfigError(
                f"vector_lanes must be a power of two up to rows ({self.rows}), "
                f"not {self.vector_lanes!r}"
            )
        if self.postproc_lanes is not None:
            if not (
                isinstance(self.postproc_lanes, int)
                and _is_pow2(self.postproc_lanes)
                and self.postproc_lanes <= self.cols
            ):
                raise ConfigError(
                    f"postproc_lanes must be a power of two up to cols ({self.cols}), "
                    f"not {self.postproc_lanes!r}"
                )
            if self.postproc_lanes == self.cols:
                object.__setattr__(self, "postproc_lanes", None)
        for field in ("depthwise_blocks", "depthwise_groups"):
            value = getattr(self, field)
            if not isinstance(value, int) or not _is_pow2(value):
                raise ConfigError(f"{field} must be a power of two, not {value!r}")
        if self.acc_banks not in (1, 2):
            raise ConfigError(f"acc_banks must be 1 or 2, not {self.acc_banks!r}")
        if self.depthwise_groups > self.rows:
            raise ConfigError(
                f"depthwise_groups must be at most rows ({self.rows}), not {self.depthwise_groups}"
            )
        if not isinstance(self.dw_lanes, int) or not (
            self.dw_lanes == 0 or _is_pow2(self.dw_lanes)
        ):
            raise ConfigError(f"dw_lanes must be 0 or a power of two, not {self.dw_lanes!r}")
        if self.dw_kernel not in (3, 5):
            raise ConfigError(f"dw_kernel must be 3 or 5, not {self.dw_kernel!r}")
        if not isinstance(self.dw_width, int) or not _is_pow2(self.dw_width) or self.dw_width < 8:
            raise ConfigError(
                f"dw_width must be a power of two of at least 8, not {self.dw_width!r}"
            )
        step = 2 if self.dsp_packing else 1
        if self.depthwise_blocks > 1 and self.depthwise_blocks * self.rows > self.cols // step:
            raise ConfigError(
                f"depthwise_blocks {self.depthwise_blocks} needs "
                f"{self.depthwise_blocks * self.rows} depthwise columns, the array has "
                f"{self.cols // step}"
            )
        if self.dsp_packing and not (self.rows <= 16 and self.cols >= 2 * self.rows):
            # A column pair's low lane holds sums of `rows` products of 8-bit codes and
            # weights in [-127, 127]: 15 + log2(rows) bits, and the high weight shifted
            # that far must fit the DSP48E2's 27-bit port (rows <= 16). In depthwise mode
            # pair k computes channel k: `rows` channels need `cols / 2 >= rows` pairs.
            raise ConfigError(
                f"dsp_packing needs rows <= 16 and cols >= 2 * rows, not "
                f"rows={self.rows}, cols={self.cols}"
            )

    # Derived quantities -------------------------------------------------------------

    @property
    def macs_per_cycle(self):
        """Peak multiply-accumulates per clock cycle of the array."""
        return self.rows * self.cols

    @property
    def dsp_count(self):
        """DSP48E2 slices the array needs (two MACs per DSP when packed)."""
        return self.macs_per_cycle // 2 if self.dsp_packing else self.macs_per_cycle

    @property
    def array_latency(self):
        """Cycles from a word entering the array to its column sums leaving it.

        ``rows + cols + 2``; a packed array has ``cols / 2`` DSP columns, so
        ``rows + cols / 2 + 2`` (the skew, one cycle per PE, plus the PE's operand and
        product registers: hw/array.py).
        """
        return self.rows + (self.cols // 2 if self.dsp_packing else self.cols) + 2

    @property
    def depthwise_column_step(self):
        """WGT columns per depthwise channel: channel ``c``'s kernel row sits in column
        ``c * step``. A packed array multiplies column pair ``(2k, 2k + 1)`` as one
        operand, so channel ``k`` takes the pair's low column and the high one holds 0."""
        return 2 if self.dsp_packing else 1

    @property
    def depthwise_channels(self):
        """Channels one depthwise CONV computes:
        ``min(depthwise_blocks * rows, cols / depthwise_column_step)``."""
        return min(self.depthwise_blocks * self.rows, self.cols // self.depthwise_column_step)

    @property
    def depthwise_emit_turns(self):
        """Cycles post-processing takes per ACC word of a depthwise CONV. Its results sit in
        columns ``0 .. depthwise_channels - 1`` (the other columns' OUT bytes are written
        0), so the lane groups past them are skipped: ``ceil(depthwise_channels /
        postproc_lanes)`` turns, at least 2 (a one-turn beat would have to know it is
        one before its first group), or :attr:`postproc_turns` when that is no fewer."""
        lanes = self.cols // self.postproc_turns
        short = max(2, -(-self.depthwise_channels // lanes))
        return min(short, self.postproc_turns)

    def emit_turns(self, depthwise):
        """Cycles post-processing takes per ACC word of a CONV: :attr:`depthwise_emit_turns`
        for a depthwise one, else :attr:`postproc_turns`."""
        return self.depthwise_emit_turns if depthwise else self.postproc_turns

    @property
    def depthwise_ports(self):
        """INP words the depthwise path reads a cycle: one per channel block and row group."""
        return self.depthwise_blocks * self.depthwise_groups

    def depthwise_row_groups(self, kernel_w):
        """Row groups a depthwise CONV of ``kernel_w`` uses: ``depthwise_groups`` when a
        kernel row fits a group's ``rows / depthwise_groups`` rows, else 1."""
        g = self.depthwise_groups
        return g if kernel_w <= self.rows // g else 1

    def depthwise_passes(self, kernel_h, kernel_w):
        """WGT words (passes over the input) of a depthwise CONV:
        ``ceil(kernel_h / depthwise_row_groups(kernel_w))``."""
        return -(-kernel_h // self.depthwise_row_groups(kernel_w))

    @property
    def vector_turns(self):
        """Cycles the vector unit's lanes take per pixel: ``rows / vector_lanes``."""
        return self.rows // (self.vector_lanes or self.rows)

    @property
    def postproc_turns(self):
        """Cycles post-processing takes per ACC word: ``cols / postproc_lanes``."""
        return self.cols // (self.postproc_lanes or self.cols)

    @property
    def axi_data_bytes(self):
        return self.axi_data_width // 8

    def buffer_addr_width(self, depth):
        """Address bits for a buffer of ``depth`` words."""
        return max(1, (depth - 1).bit_length())

    # Identity ------------------------------------------------------------------------

    def to_dict(self):
        """The fields as a dict; the depthwise engine's (``dw_*``), ``postproc_lanes`` and
        ``acc_banks`` only where they differ from their defaults, so configurations that
        do not use them serialize as before they existed."""
        out = dataclasses.asdict(self)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in _LATER_FIELDS:
            if out[name] == defaults[name]:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown configuration fields: {sorted(unknown)}")
        return cls(**data)

    @property
    def config_id(self):
        """32-bit identity of everything that changes the hardware (not the name).

        Hardware, artifact and runtime compare this value; it is the first four
        bytes of a SHA-256 over the canonical JSON of the fields.
        """
        fields = self.to_dict()
        del fields["name"]
        if not self.dw_lanes:  # no depthwise engine: the identities from before it existed
            for name in _ENGINE_FIELDS:
                fields.pop(name, None)
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")


PRESETS = {
    # Small enough that whole networks simulate in RTL within the test budget.
    "tiny": AcceleratorConfig(
        name="tiny",
        rows=4,
        cols=4,
        input_buffer_depth=1024,
        weight_buffer_depth=256,
        acc_buffer_depth=256,
        output_buffer_depth=256,
        axi_data_width=64,
        lut_slots=2,
        dsp_packing=False,
        clock_mhz=100.0,
        vector_lanes=2,
        depthwise_groups=2,
    ),
    # xczu3eg (Ultra96): 360 DSP48E2, 70,560 LUT, 216 BRAM36; budget 300 DSP.
    # The shape comes from the DSP count (Yosys, `make resources BOARD=ultra96`):
    # 16 x 32 packed (WP486, two MACs per DSP) is 256 DSP48E2 for 512 MACs a cycle
    # (256 GOP/s at 250 MHz). A requantizer lane per column would add 64 DSPs (~346 in
    # all), so 8 post-processing lanes take the 32 columns in 4 turns, and two ACC banks
    # of 512 let the emit of one tile overlap the next tile's MACs (the same BRAM as one
    # bank of 1024): 298 DSP48E2, 66 % LUT, 77 % BRAM36 (boards/estimates/ultra96.json),
    # estimated Fmax 253 MHz once the walker's flags took the issue signal as a clock
    # enable only (docs/hardware.md, "The 16 x 32 preset"). One depthwise channel block
    # (16 rows of channels) with two row groups: a second block's INP ports would cost
    # BRAM the budget no longer has. Against the 8 x 32 preset before it (218 DSP48E2,
    # calibration points ultra96-pp16*), the cycle model at 250 MHz gives Tiny-YOLOv3
    # +77 %, MobileNetV1 +42 %, EfficientNet-B4 +35 %, MobileNetV2 +10 %, GhostNet -2 %
    # (its depthwise layers lose the second block), no zoo model below -5 %.
    # The design-space search (`bamboo explore --board ultra96`, docs/explore.md) puts it
    # on the Pareto front, tied by geometric-mean FPS of MobileNetV2, EfficientNet-B4 and
    # Tiny-YOLOv3 with the same design at INP 4096 (1.00x, 30 BRAM36 fewer; session 16's
    # 2 % lead of 4096 was EfficientNet-B4's global pools falling back to the CPU, which
    # the back end's pool lowering of session 17 made moot).
    "ultra96": AcceleratorConfig(
        name="ultra96",
        rows=16,
        cols=32,
        input_buffer_depth=8192,
        weight_buffer_depth=512,
        acc_buffer_depth=512,
        output_buffer_depth=2048,
        axi_data_width=128,
        lut_slots=4,
        dsp_packing=True,
        clock_mhz=250.0,
        vector_lanes=2,
        depthwise_blocks=1,
        depthwise_groups=2,
        postproc_lanes=8,
        acc_banks=2,
    ),
    # xczu7ev (ZCU104): 1728 DSP48E2, 230,400 LUT, 312 BRAM36, 96 URAM.
    # The DSPs would allow a far larger array, but BRAM bounds what Yosys can place:
    # it maps every buffer through 36-bit-wide true-dual-port blocks, which took a
    # 16 x 32 design with these deeper buffers and a lane per column to ~380 BRAM36
    # (budget 250). So the 8 x 32 array (ultra96's until session 16) with deeper WGT/ACC
    # buffers and a lane per row in the vector unit; INP 8192, since the depthwise
    # path's four read ports replicate it four times. The 16 x 32 ultra96 build (165.5
    # BRAM36 with WGT 512, two ACC banks of 512, one depthwise block) would fit here too:
    # not yet a preset (not synthesized for this board). A wider array wants the
    # buffers in URAM (not done).
    "zcu104": AcceleratorConfig(
        name="zcu104",
        rows=8,
        cols=32,
        input_buffer_depth=8192,
        weight_buffer_depth=1024,
        acc_buffer_depth=2048,
        output_buffer_depth=2048,
        axi_data_width=128,
        lut_slots=4,
        dsp_packing=True,
        clock_mhz=250.0,
        depthwise_blocks=2,
        depthwise_groups=2,
    ),
    # xck26 (Kria KV260): 1248 DSP48E2, 117,120 LUT, 144 BRAM36, 64 URAM.
    # BRAM bounds it: Yosys maps every buffer through 36-bit-wide true-dual-port
    # blocks, so a 16 x 32 weight word (4096 bits) alone takes 114 of the 115 BRAM36
    # the budget allows at depth 1024 (the 16 x 32 ultra96 build takes 165.5 in all).
    # 8 x 32 packed (ultra96's shape until session 16), with smaller INP/OUT buffers
    # (fewer BRAM36: boards/estimates/kv260.json) and 4 vector lanes (more LUTs).
    "kv260": AcceleratorConfig(
        name="kv260",
        rows=8,
        cols=32,
        input_buffer_depth=4096,
        weight_buffer_depth=512,
        acc_buffer_depth=1024,
        output_buffer_depth=1024,
        axi_data_width=128,
        lut_slots=4,
        dsp_packing=True,
        clock_mhz=250.0,
        vector_lanes=4,
        depthwise_blocks=2,
        depthwise_groups=2,
    ),
    # xc7z020 (PYNQ-Z2): 220 DSP48E1, 53,200 LUT, 140 BRAM36; HP0 is 64 bits, addresses
    # 32 bits. No packing (WP486 needs DSP48E2's 27x18), and a DSP48E1's 25x18 takes
    # more slices per requantizer product: 8 x 16 does not fit the budget (docs/hardware.md,
    # "Other presets"), so 8 x 8 = 64 MACs with 2 vector lanes.
    "pynqz2": AcceleratorConfig(
        name="pynqz2",
        rows=8,
        cols=8,
        input_buffer_depth=4096,
        weight_buffer_depth=1024,
        acc_buffer_depth=1024,
        output_buffer_depth=1024,
        axi_data_width=64,
        axi_addr_width=32,
        lut_slots=2,
        dsp_packing=False,
        clock_mhz=100.0,
        vector_lanes=2,
        depthwise_groups=2,
    ),
}


def preset(name):
    """Return the preset configuration called ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown configuration {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None
