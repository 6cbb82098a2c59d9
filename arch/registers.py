"""The AXI-Lite register map: one table read by the register file, the runtime and the docs.

Every register is a :class:`Register` of 32-bit :class:`Field` records, and every
field names its *kind*: how the hardware drives it (``rw`` storage, a ``pulse``
on write, a live ``status`` input, a ``counter``...). The kind fixes what software
sees (``RW``, ``RO``, ``W1C``, ``W1P``) and what ``bamboo.hw.regfile`` builds, so
the register file, this module's encode/decode and ``docs/registers.md`` all come
from :data:`REGISTERS` and cannot drift apart.

Regenerate the document with ``python -m bamboo.arch.registers > docs/registers.md``.
"""

import enum
import sys
from dataclasses import dataclass

from .errors import BambooError
from .isa import ISA_VERSION

__all__ = [
    "ACCESS",
    "ERROR_CODES",
    "ErrorCode",
    "Field",
    "HW_VERSION_MAJOR",
    "HW_VERSION_MINOR",
    "KINDS",
    "MAGIC",
    "REGISTERS",
    "Register",
    "RegisterError",
    "UNITS",
    "decode",
    "encode",
    "register",
    "render_markdown",
]

#: Value of the ``ID`` register: ASCII "BAMB", so software can tell it mapped the right IP.
MAGIC = 0x42414D42
HW_VERSION_MAJOR = 0
HW_VERSION_MINOR = 1

#: Engine units with a busy and a stall cycle counter each (one source for names and offsets).
UNITS = ("fetch", "load", "compute", "store")

#: Field kind -> (software access, how the hardware drives it).
KINDS = {
    "rw": ("RW", "read/write storage, driven to the engine as an output"),
    "pulse": ("W1P", "writing 1 sends the engine a one-cycle pulse; reads as 0"),
    "status": ("RO", "live value of an engine input"),
    "sticky": ("RO", "set by an engine pulse, cleared by start and soft reset"),
    "capture": ("RO", "loaded from an engine input when its trigger pulses; cleared like sticky"),
    "event": ("W1C", "set by an engine pulse; writing 1 clears it (interrupt source)"),
    "const": ("RO", "constant of this hardware revision"),
    "config": ("RO", "constant taken from the AcceleratorConfig attribute named by signal"),
    "counter": ("RO", "counts cycles its engine strobe is high; cleared by start and soft reset"),
}
#: The software-visible access types.
ACCESS = {
    "RW": "read/write",
    "RO": "read-only; writes are ignored",
    "W1C": "write 1 to clear; writing 0 has no effect",
    "W1P": "write 1 to pulse; reads as 0",
}


class RegisterError(BambooError, ValueError):
    """A malformed register table entry, or a value that does not fit its field."""


class ErrorCode(enum.IntEnum):
    """Values of ``STATUS.error_code``; zero means no error."""

    NONE = 0
    ILLEGAL_OPCODE = 1
    MALFORMED_INSTRUCTION = 2
    DMA_OUT_OF_WINDOW = 3
    AXI_ERROR = 4
    TIMEOUT = 5


#: Error code -> what raised it; rendered into the register map.
ERROR_CODES = {
    ErrorCode.NONE: "No error.",
    ErrorCode.ILLEGAL_OPCODE: "An instruction's opcode is not defined by the ISA.",
    ErrorCode.MALFORMED_INSTRUCTION: "An instruction field is out of range (address, size...).",
    ErrorCode.DMA_OUT_OF_WINDOW: "A DMA access fell outside WINDOW_BASE + [0, WINDOW_SIZE).",
    ErrorCode.AXI_ERROR: "The AXI master received SLVERR or DECERR.",
    ErrorCode.TIMEOUT: "The engine made no progress within its watchdog limit.",
}


@dataclass(frozen=True)
class Field:
    """A bit range of a register.

    Parameters
    ----------
    name : str
        Field name, unique within its register.
    lsb, width : int
        Bit position and width; the field must fit in 32 bits.
    kind : str
        One of :data:`KINDS`.
    description : str
        One sentence for the register map.
    reset : int
        Reset value (``rw`` and ``const`` fields; others reset to zero).
    signal : str or None
        Engine-facing signal this field drives or reads (for ``config``, the
        configuration attribute). Fields sharing a signal form one wide value.
    signal_lsb : int
        Which bit of ``signal`` this field's bit 0 is (``32`` for a ``_HI`` word).
    trigger : str or None
        For ``capture`` fields, the engine pulse that loads the field.
    """

    name: str
    lsb: int
    width: int
    kind: str
    description: str
    reset: int = 0
    signal: str | None = None
    signal_lsb: int = 0
    trigger: str | None = None

    def __post_init__(self):
        where = f"field {self.name!r}"
        if not self.name.isidentifier():
            raise RegisterError(f"{where}: name must be an identifier")
        if self.kind not in KINDS:
            raise RegisterError(f"{where}: kind must be one of {sorted(KINDS)}, not {self.kind!r}")
        if not (0 <= self.lsb and 1 <= self.width and self.lsb + self.width <= 32):
            raise RegisterError(
                f"{where}: bits [{self.lsb + self.width - 1}:{self.lsb}] do not fit in 32 bits"
            )
        if not 0 <= self.reset < (1 << self.width):
            raise RegisterError(f"{where}: reset {self.reset:#x} does not fit {self.width} bits")
        if self.reset and self.kind not in ("rw", "const"):
            raise RegisterError(f"{where}: only rw and const fields have a reset value")
        if self.kind not in ("rw", "const") and self.signal is None:
            raise RegisterError(f"{where}: a {self.kind} field needs a signal")
        if self.kind == "const" and self.signal is not None:
            raise RegisterError(f"{where}: a const field takes no signal")
        if self.signal_lsb < 0:
            raise RegisterError(f"{where}: signal_lsb must be non-negative")
        if self.kind == "counter" and self.signal_lsb < 32 < self.signal_lsb + self.width:
            # The register file latches a counter's high word when its low word is read.
            raise RegisterError(f"{where}: a counter field may not straddle bit 32")
        if (self.kind == "capture") != (self.trigger is not None):
            raise RegisterError(f"{where}: a trigger goes with capture fields, and only them")

    @property
    def msb(self):
        return self.lsb + self.width - 1

    @property
    def mask(self):
        """The field's bits within its register."""
        return ((1 << self.width) - 1) << self.lsb

    @property
    def access(self):
        """Software view: ``RW``, ``RO``, ``W1C`` or ``W1P``."""
        return KINDS[self.kind][0]


@dataclass(frozen=True)
class Register:
    """A 32-bit register at a byte offset of the AXI-Lite window.

    Parameters
    ----------
    name : str
        Upper-case register name, unique in the map.
    offset : int
        Byte offset, a multiple of four.
    description : str
        One sentence for the register map.
    fields : tuple of Field
        Non-overlapping bit ranges; unlisted bits read as zero.
    """

    name: str
    offset: int
    description: str
    fields: tuple

    def __post_init__(self):
        if not (self.offset >= 0 and self.offset % 4 == 0):
            raise RegisterError(
                f"register {self.name}: offset must be a non-negative multiple of 4, "
                f"not {self.offset!r}"
            )
        if not self.fields:
            raise RegisterError(f"register {self.name}: needs at least one field")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise RegisterError(f"register {self.name}: field names repeat: {names}")
        used = 0
        for f in self.fields:
            if used & f.mask:
                raise RegisterError(f"register {self.name}: field {f.name!r} overlaps another")
            used |= f.mask

    @property
    def access(self):
        """The fields' accesses, joined with ``/`` when they differ (``"W1P/RW"``)."""
        return "/".join(dict.fromkeys(f.access for f in self.fields))

    @property
    def width(self):
        """Implemented bits: one past the highest field bit."""
        return max(f.msb for f in self.fields) + 1

    @property
    def reset(self):
        """Reset value of the whole word (``config`` fields count as zero here)."""
        return sum(f.reset << f.lsb for f in self.fields)

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise RegisterError(
            f"register {self.name} has no field {name!r}; "
            f"it has {', '.join(f.name for f in self.fields)}"
        )


def _word(
    name,
    offset,
    description,
    kind,
    field_description,
    *,
    signal=None,
    signal_lsb=0,
    reset=0,
    width=32,
    trigger=None,
):
    """A register holding one field called ``value`` (most of the map)."""
    field = Field(
        "value",
        0,
        width,
        kind,
        field_description,
        reset=reset,
        signal=signal,
        signal_lsb=signal_lsb,
        trigger=trigger,
    )
    return Register(name, offset, description, (field,))


def _wide(name, offset, description, kind, signal):
    """A 64-bit value as a ``_LO``/``_HI`` pair (software writes or reads LO first)."""
    return (
        _word(
            f"{name}_LO", offset, f"{description} (bits 31:0).", kind, "Low word.", signal=signal
        ),
        _word(
            f"{name}_HI",
            offset + 4,
            f"{description} (bits 63:32).",
            kind,
            "High word.",
            signal=signal,
            signal_lsb=32,
        ),
    )


def _build():
    regs = [
        _word("ID", 0x000, "Identification: ASCII 'BAMB'.", "const", "Magic number.", reset=MAGIC),
        Register(
            "HW_VERSION",
            0x004,
            "Hardware revision of the register file and engine.",
            (
                Field("minor", 0, 16, "const", "Minor revision.", reset=HW_VERSION_MINOR),
                Field("major", 16, 16, "const", "Major revision.", reset=HW_VERSION_MAJOR),
            ),
        ),
        _word(
            "ISA_VERSION",
            0x008,
            "Instruction set version the engine decodes.",
            "const",
            "ISA version.",
            reset=ISA_VERSION,
        ),
        _word(
            "CONFIG_ID",
            0x00C,
            "AcceleratorConfig.config_id of this build; the runtime "
            "compares it with the artifact's.",
            "config",
            "Configuration hash.",
            signal="config_id",
        ),
        Register(
            "CTRL",
            0x010,
            "Control.",
            (
                Field(
                    "start",
                    0,
                    1,
                    "pulse",
                    "Start executing INSN_COUNT instructions at "
                    "INSN_BASE; clears STATUS and the counters. Ignored while busy.",
                    signal="start",
                ),
                Field(
                    "soft_reset",
                    1,
                    1,
                    "pulse",
                    "Abort the engine and clear STATUS, IRQ_STATUS "
                    "and the counters; RW registers keep their values.",
                    signal="soft_reset",
                ),
                Field(
                    "irq_enable",
                    2,
                    1,
                    "rw",
                    "Drive the interrupt line while IRQ_STATUS has a bit set.",
                    signal="irq_enable",
                ),
            ),
        ),
        Register(
            "STATUS",
            0x014,
            "Engine status.",
            (
                Field("busy", 0, 1, "status", "The engine is running.", signal="busy"),
                Field("done", 1, 1, "sticky", "The last run finished.", signal="done"),
                Field("error", 2, 1, "sticky", "The last run stopped on an error.", signal="error"),
                Field(
                    "error_code",
                    8,
                    8,
                    "capture",
                    "Why it stopped: see the error codes.",
                    signal="error_code",
                    trigger="error",
                ),
            ),
        ),
        Register(
            "IRQ_STATUS",
            0x018,
            "Pending interrupt sources; write 1 to acknowledge.",
            (
                Field(
                    "done",
                    0,
                    1,
                    "event",
                    "A run finished at a FINISH with irq set (a run "
                    "that ends otherwise sets only STATUS.done).",
                    signal="done_irq",
                ),
                Field("error", 1, 1, "event", "A run stopped on an error.", signal="error"),
            ),
        ),
        _word(
            "ERR_INSN",
            0x01C,
            "Index of the instruction that raised STATUS.error.",
            "capture",
            "Instruction index from INSN_BASE.",
            signal="err_insn",
            trigger="error",
        ),
        *_wide("INSN_BASE", 0x020, "Bus address of the first instruction", "rw", "insn_base"),
        _word(
            "INSN_COUNT",
            0x028,
            "Number of instructions to execute.",
            "rw",
            "Instruction count.",
            signal="insn_count",
        ),
        _word(
            "SCRATCH",
            0x02C,
            "Scratch word for bus tests; no effect on the engine.",
            "rw",
            "Any value.",
        ),
        *_wide("WINDOW_BASE", 0x030, "Lowest bus address the DMA may touch", "rw", "window_base"),
        *_wide("WINDOW_SIZE", 0x038, "Size in bytes of the DMA window", "rw", "window_size"),
        *_wide("CYCLES", 0x040, "Cycles busy since start", "counter", "busy"),
    ]
    for i, unit in enumerate(UNITS):
        for j, what in enumerate(("busy", "stall")):
            regs.append(
                _word(
                    f"{unit.upper()}_{what.upper()}",
                    0x080 + 8 * i + 4 * j,
                    f"Cycles the {unit} unit was {'working' if what == 'busy' else 'stalled'} "
                    f"since start (wraps at 2**32).",
                    "counter",
                    "Cycle count.",
                    signal=f"{unit}_{what}",
                )
            )
    return tuple(regs)


def _check(registers):
    """Checks across registers: unique names and offsets, one direction per signal."""
    names, offsets, direction = set(), set(), {}
    for r in registers:
        if r.name in names or r.offset in offsets:
            raise RegisterError(f"register {r.name} at {r.offset:#x} repeats a name or offset")
        names.add(r.name)
        offsets.add(r.offset)
        for f in r.fields:
            if f.signal is None or f.kind == "config":
                continue
            # An engine signal is either driven by the register file or read by it, never both.
            out = f.kind in ("rw", "pulse")
            if direction.setdefault(f.signal, out) != out:
                raise RegisterError(f"signal {f.signal!r} is both an input and an output")
    return tuple(sorted(registers, key=lambda r: r.offset))


#: The register map, in offset order.
REGISTERS = _check(_build())
_BY_NAME = {r.name: r for r in REGISTERS}


def register(name):
    """Return the :class:`Register` called ``name`` (case-insensitive)."""
    try:
        return _BY_NAME[name.upper()]
    except KeyError:
        raise RegisterError(f"no register named {name!r}") from None


def encode(name, **values):
    """Pack field values into a register word; unnamed fields are zero.

    >>> hex(encode("CTRL", start=1, irq_enable=1))
    '0x5'
    """
    reg = register(name)
    word = 0
    for key, value in values.items():
        f = reg.field(key)
        if not 0 <= value < (1 << f.width):
            raise RegisterError(f"{reg.name}.{key} is {f.width} bits wide; {value!r} does not fit")
        word |= value << f.lsb
    return word


def decode(name, word):
    """Unpack a register word into ``{field: value}``."""
    reg = register(name)
    if not 0 <= word < (1 << 32):
        raise RegisterError(f"a register word is 32 bits; {word!r} does not fit")
    return {f.name: (word >> f.lsb) & ((1 << f.width) - 1) for f in reg.fields}


def _bits(f):
    return f"{f.msb}:{f.lsb}" if f.width > 1 else f"{f.lsb}"


def _reset_text(f):
    return f"`{f.signal}`" if f.kind == "config" else f"{f.reset:#x}"


def render_markdown():
    """Return the register map as Markdown (the text of ``docs/registers.md``)."""
    out = [
        "# Bamboo register map",
        "",
        "<!-- Generated by `python -m bamboo.arch.registers > docs/registers.md`; do not edit. -->",
        "",
        "An AXI4-Lite slave with 32-bit data, byte addresses, word-aligned registers "
        "(address bits 1:0 are ignored; WSTRB masks RW bytes). Unmapped offsets read "
        "as zero and ignore writes with an OKAY response (the register file can be "
        "built to answer SLVERR instead). Unlisted bits read as zero. A write has "
        "taken effect when its B response comes.",
        "",
        "Wide values are `_LO`/`_HI` pairs. Write LO then HI; the engine samples "
        "them at start. For counters, reading `_LO` latches the high word, so read "
        "LO then HI for a consistent 64-bit value.",
        "",
        "## Access types",
        "",
        "| Access | Meaning |",
        "|---|---|",
        *(f"| {a} | {m} |" for a, m in ACCESS.items()),
        "",
        "## Summary",
        "",
        "| Offset | Name | Access | Reset | Description |",
        "|---|---|---|---|---|",
    ]
    for r in REGISTERS:
        reset = "`config_id`" if any(f.kind == "config" for f in r.fields) else f"{r.reset:#010x}"
        out.append(f"| {r.offset:#05x} | {r.name} | {r.access} | {reset} | {r.description} |")
    out += ["", "## Registers", ""]
    for r in REGISTERS:
        out += [
            f"### {r.name} ({r.offset:#05x})",
            "",
            r.description,
            "",
            "| Bits | Field | Access | Reset | Description |",
            "|---|---|---|---|---|",
        ]
        for f in sorted(r.fields, key=lambda f: -f.lsb):
            out.append(
                f"| {_bits(f)} | {f.name} | {f.access} | {_reset_text(f)} | {f.description} |"
            )
        out.append("")
    out += ["## Error codes", "", "| Code | Name | Meaning |", "|---|---|---|"]
    out += [f"| {int(c)} | {c.name} | {ERROR_CODES[c]} |" for c in ErrorCode]
    out += [
        "",
        "## Interrupt",
        "",
        "The `irq` line is high while `CTRL.irq_enable` is set and any bit of "
        "`IRQ_STATUS` is set; write the bits back to `IRQ_STATUS` to acknowledge. "
        "A new start leaves `IRQ_STATUS` alone; a soft reset clears it.",
        "",
        "A run that ends at a `FINISH` with `irq = 1` sets `IRQ_STATUS.done`; one that "
        "ends at a `FINISH` with `irq = 0`, or after `INSN_COUNT` instructions without "
        "a `FINISH`, sets only `STATUS.done` (software polls). Every error sets "
        "`IRQ_STATUS.error`.",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
