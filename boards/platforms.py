"""The boards Bamboo builds for: device, PS, capacities, reachable PL clocks and configuration.

A board's programmable logic has no oscillator of its own that Bamboo uses: its
clock is the processing system's ``pl_clk0`` (Zynq UltraScale+) or ``FCLK_CLK0``
(Zynq-7000), a PS PLL divided by two 6-bit dividers. Only the frequencies
``pll_mhz / n`` exist, so a board lists those and refuses any other (Ultra96's
IOPLL runs at 1500 MHz: 250 = 1500/6 and 187.5 = 1500/8 exist, 200 does not).

Ref: UG1085 (Zynq UltraScale+ TRM), "PL clocks": ``PLx_REF_CTRL`` DIVISOR0/1, 6 bits each.
Ref: UG585 (Zynq-7000 TRM), 25.10.9 ``FPGA0_CLK_CTRL``: DIVISOR0/1, 6 bits each.
"""

import dataclasses
from dataclasses import dataclass

from ..arch.config import AcceleratorConfig, preset
from ..arch.errors import BambooError

__all__ = ["BOARDS", "Board", "BoardError", "board", "check_config", "clock_choices"]

#: The PS divides its PLL by two 6-bit dividers in series (1 to 63 each).
MAX_DIVIDER = 63 * 63


class BoardError(BambooError, ValueError):
    """An unknown board, or a clock the board's PS cannot produce."""


@dataclass(frozen=True)
class Board:
    """One board: the part, its processing system and the configuration built for it.

    Attributes
    ----------
    name : str
        ``BOARD=`` value of ``make bitstream`` / ``make resources``.
    title : str
        Human-readable name.
    device, package, speed : str
        Amaranth ``XilinxPlatform`` part fields; :attr:`part` joins them as Vivado wants.
    ps : str
        ``"zynqmp"`` (``zynq_ultra_ps_e``) or ``"zynq7"`` (``processing_system7``).
    capacity : dict
        Device resources: ``dsp``, ``lut``, ``ff``, ``bram36``, ``uram``.
    pll_mhz : float
        The PS PLL ``pl_clk0`` is divided from (IOPLL).
    clock_range : (float, float)
        PL clock frequencies worth offering, in MHz.
    preset : str
        ``bamboo.arch.config`` preset built for this board.
    reg_base : int
        Address of the accelerator's register window as the PS sees it.
    board_parts : tuple of str
        Vivado board-part globs; when one of :attr:`part` is installed its PS preset is
        applied first (else the ``.xsa`` is PL-only, which PYNQ does not mind).
    dsp_budget : int
        DSP slices the accelerator may take (0: 85 % of the device); :attr:`budget`.
    """

    name: str
    title: str
    device: str
    package: str
    speed: str
    ps: str
    capacity: dict
    pll_mhz: float
    clock_range: tuple
    preset: str
    reg_base: int
    board_parts: tuple = ()
    dsp_budget: int = 0

    @property
    def budget(self):
        """What the preset's build may use: ``{resource: limit}``. DSP as
        :attr:`dsp_budget`, at most 70 % of the LUTs (room for Vivado's placer and the
        user's own logic) and 80 % of the BRAM36."""
        cap = self.capacity
        return dict(
            dsp=self.dsp_budget or int(0.85 * cap["dsp"]),
            lut=0.70 * cap["lut"],
            bram36=0.80 * cap["bram36"],
        )

    @property
    def part(self):
        """Vivado part name (``xczu3eg-sbva484-1-i``; Zynq-7000: ``xc7z020clg400-1``)."""
        if self.ps == "zynq7":
            return f"{self.device}{self.package}-{self.speed}"
        return f"{self.device}-{self.package}-{self.speed}"

    @property
    def yosys_family(self):
        """``synth_xilinx -family`` of the device."""
        return "xc7" if self.ps == "zynq7" else "xcup"

    def clock_choices(self):
        """PL clock frequencies in MHz the PS can produce, fastest first."""
        return clock_choices(self.pll_mhz, *self.clock_range)

    def pl_clock(self, mhz):
        """``(mhz, divider)`` of the reachable clock ``mhz``; raises :class:`BoardError` if none."""
        for f in self.clock_choices():
            if abs(f - mhz) < 0.01:
                return f, round(self.pll_mhz / f)
        listed = ", ".join(_fmt(f) for f in self.clock_choices())
        raise BoardError(
            f"{self.title}'s PS cannot clock the PL at {_fmt(mhz)} MHz ({_fmt(self.pll_mhz)} "
            f"MHz PLL / integer divider); choose one of: {listed}"
        )

    def config(self, clock_mhz=None):
        """The :class:`AcceleratorConfig` built for this board, at ``clock_mhz`` if given."""
        cfg = preset(self.preset)
        mhz, _ = self.pl_clock(cfg.clock_mhz if clock_mhz is None else clock_mhz)
        if mhz != cfg.clock_mhz:
            cfg = dataclasses.replace(cfg, clock_mhz=mhz)
        return cfg

    def platform(self):
        """An Amaranth ``XilinxPlatform`` for the part (no PL pins: the PS owns the I/O)."""
        from amaranth.vendor import XilinxPlatform

        attrs = {
            "device": self.device,
            "package": self.package,
            "speed": self.speed,
            "default_clk": None,
            "resources": [],
            "connectors": [],
        }
        cls = type(f"{self.name.capitalize()}Platform", (XilinxPlatform,), attrs)
        return cls(toolchain="Vivado")


def _fmt(mhz):
    return f"{mhz:.6g}"


def clock_choices(pll_mhz, low, high):
    """``pll_mhz / n`` for every divider ``n`` of two 6-bit dividers within ``[low, high]`` MHz."""
    out = []
    for n in range(1, MAX_DIVIDER + 1):
        f = pll_mhz / n
        if f < low:
            break
        if f <= high and any(n % a == 0 and n // a <= 63 for a in range(1, 64)):
            out.append(round(f, 4))
    return out


_ZYNQMP = dict(ps="zynqmp", pll_mhz=1500.0, reg_base=0xA000_0000)

BOARDS = {
    b.name: b
    for b in [
        # Avnet Ultra96-V2: industrial-grade xczu3eg. IOPLL 1500 MHz (33.333 MHz PS_REF x 45).
        Board(
            "ultra96",
            "Ultra96-V2",
            "xczu3eg",
            "sbva484",
            "1-i",
            capacity=dict(dsp=360, lut=70560, ff=141120, bram36=216, uram=0),
            clock_range=(100.0, 300.0),
            preset="ultra96",
            dsp_budget=300,
            # Avnet/bdf: em.avnet.com (1.0, part -1-e), avnet.com (1.2), Avnet-tria (1.3).
            board_parts=("*:ultra96v2:part0:*",),
            **_ZYNQMP,
        ),
        Board(
            "ultra96v1",
            "Ultra96 (V1)",
            "xczu3eg",
            "sbva484",
            "1-e",
            capacity=dict(dsp=360, lut=70560, ff=141120, bram36=216, uram=0),
            clock_range=(100.0, 300.0),
            preset="ultra96",
            dsp_budget=300,
            board_parts=("*:ultra96v1:part0:*", "*:ultra96:part0:*"),
            **_ZYNQMP,
        ),
        Board(
            "zcu104",
            "ZCU104",
            "xczu7ev",
            "ffvc1156",
            "2-e",
            capacity=dict(dsp=1728, lut=230400, ff=460800, bram36=312, uram=96),
            clock_range=(100.0, 300.0),
            preset="zcu104",
            board_parts=("xilinx.com:zcu104:part0:*",),
            **_ZYNQMP,
        ),
        Board(
            "kv260",
            "Kria KV260",
            "xck26",
            "sfvc784",
            "2LV-c",
            capacity=dict(dsp=1248, lut=117120, ff=234240, bram36=144, uram=64),
            clock_range=(100.0, 300.0),
            preset="kv260",
            board_parts=("xilinx.com:kv260_som:part0:*",),
            **_ZYNQMP,
        ),
        # TUL PYNQ-Z2: IOPLL 1000 MHz (50 MHz PS_CLK x 20), 7-series fabric at speed grade -1.
        Board(
            "pynqz2",
            "PYNQ-Z2",
            "xc7z020",
            "clg400",
            "1",
            ps="zynq7",
            capacity=dict(dsp=220, lut=53200, ff=106400, bram36=140, uram=0),
            pll_mhz=1000.0,
            clock_range=(50.0, 200.0),
            preset="pynqz2",
            reg_base=0x4000_0000,
            board_parts=("tul.com.tw:pynq-z2:part0:*",),
        ),
    ]
}


def board(name):
    """The :class:`Board` called ``name``; the error lists the valid names."""
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}; valid boards: {', '.join(BOARDS)}") from None


def check_config(b, config):
    """Raise :class:`BoardError` if ``config`` cannot be built for board ``b``."""
    if not isinstance(config, AcceleratorConfig):
        raise BoardError(f"config must be an AcceleratorConfig, not {config!r}")
    if b.ps == "zynq7" and config.axi_data_width > 64:
        raise BoardError(
            f"{b.title}'s S_AXI_HP0 is at most 64 bits wide, not {config.axi_data_width}"
        )
    if b.ps == "zynq7" and config.dsp_packing:
        # WP486 packs two products into the 27x18 DSP48E2; the DSP48E1 multiplier is 25x18.
        raise BoardError(f"{b.title} has DSP48E1 slices: dsp_packing needs DSP48E2")
    b.pl_clock(config.clock_mhz)
