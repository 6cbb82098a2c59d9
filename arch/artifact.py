"""The ``.bmb`` artifact: one file holding everything the runtime needs to run a model.

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"\\x89BMB\\r\\n\\x1a\\n"  (catches text-mode and 7-bit corruption)
    8       2     format version (FORMAT_VERSION)
    10      2     ISA version (bamboo.arch.isa.ISA_VERSION)
    12      4     config_id of the AcceleratorConfig the program was compiled for
    16      4     number of sections
    20      4     flags (0)
    24      8     total file size in bytes
    32      32    SHA-256 of the whole file with these 32 bytes zeroed
    64      32*n  section table: kind u32, flags u32, offset u64, size u64, reserved u64
    ...           section payloads, each starting on a SECTION_ALIGN boundary

Sections (:class:`Section`): ``PROGRAM`` (instruction words, as fetched), ``WEIGHTS``
(the initial DRAM image of the weight region: WGT words, PARAM words, LUTs),
``METADATA`` (UTF-8 JSON: memory plan, schedule of fabric/CPU steps, tensors, CPU
nodes) and ``IOQUANT`` (UTF-8 JSON: quantization and DRAM placement of the model's
inputs and outputs). Unknown section kinds are kept, so newer writers stay readable.

Loading checks, in order: length, magic, format version, size field, checksum,
section table bounds, ISA version and config_id against the expected ones, then the
whole content against its schema (``bamboo.arch.metadata``: all four sections present,
JSON of the schema's version, the section sizes and the memory plan, the schedule
against the program and the tensors). Each failure raises an :class:`ArtifactError`
subclass naming what is wrong, before anything runs.
"""

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from . import metadata as md
from .errors import BambooError
from .isa import ISA_VERSION

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "SECTION_ALIGN",
    "SECTION_ENTRY_SIZE",
    "Artifact",
    "ArtifactCorruptError",
    "ArtifactError",
    "ArtifactMismatchError",
    "ArtifactTruncatedError",
    "REQUIRED",
    "Section",
    "read_artifact",
    "write_artifact",
]

MAGIC = b"\x89BMB\r\n\x1a\n"
FORMAT_VERSION = 1
HEADER_SIZE = 64
SECTION_ENTRY_SIZE = 32
SECTION_ALIGN = 64

_HEADER = struct.Struct("<8sHHIIIQ32s")
_ENTRY = struct.Struct("<IIQQQ")
assert _HEADER.size == HEADER_SIZE and _ENTRY.size == SECTION_ENTRY_SIZE


class Section:
    """Section kinds of the section table."""

    PROGRAM = 1
    WEIGHTS = 2
    METADATA = 3
    IOQUANT = 4

    NAMES: ClassVar[dict] = {1: "program", 2: "weights", 3: "metadata", 4: "ioquant"}


class ArtifactError(BambooError, ValueError):
    """An artifact that cannot be used."""


class ArtifactTruncatedError(ArtifactError):
    """The file ends before the data its header or section table describes."""


class ArtifactCorruptError(ArtifactError):
    """Not an artifact, or its bytes changed after it was written (magic, checksum, table)."""


class ArtifactMismatchError(ArtifactError):
    """A valid artifact for another format version, ISA version or accelerator configuration."""


#: The sections every artifact holds.
REQUIRED = (Section.PROGRAM, Section.WEIGHTS, Section.METADATA, Section.IOQUANT)


@dataclass(frozen=True)
class Artifact:
    """A loaded artifact: header values, section payloads (``{kind: bytes}``) and, when
    read with validation, the typed METADATA and IOQUANT and the configuration."""

    isa_version: int
    config_id: int
    sections: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    parsed: tuple = field(default=None, compare=False, repr=False)

    @property
    def program(self):
        return self.sections.get(Section.PROGRAM, b"")

    @property
    def weights(self):
        return self.sections.get(Section.WEIGHTS, b"")

    @property
    def metadata(self):
        """The METADATA section, a :class:`bamboo.arch.metadata.Metadata`."""
        return self._parsed()[0]

    @property
    def ioquant(self):
        """The IOQUANT section, a :class:`bamboo.arch.metadata.IoQuant`."""
        return self._parsed()[1]

    @property
    def config(self):
        """The :class:`~bamboo.arch.config.AcceleratorConfig` the program was compiled for."""
        return self._parsed()[2]

    def _parsed(self):
        if self.parsed is None:
            raise ArtifactError(
                "this artifact was read without validation: its metadata is "
                "unchecked (read_artifact(..., validate=True))"
            )
        return self.parsed


def _json(sections, kind):
    name = Section.NAMES[kind]
    try:
        return json.loads(sections[kind].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactCorruptError(
            f"the {name.upper()} section is not UTF-8 JSON: {str(exc).splitlines()[0]}"
        ) from None
    except RecursionError:
        raise ArtifactCorruptError(f"the {name.upper()} section nests too deeply") from None


def _validate(sections, config_id):
    """``(Metadata, IoQuant, AcceleratorConfig)`` of checked ``sections`` (see module doc)."""
    missing = [Section.NAMES[k].upper() for k in REQUIRED if k not in sections]
    if missing:
        raise ArtifactCorruptError(
            f"artifact lacks its {', '.join(missing)} section{'s' if len(missing) > 1 else ''}"
        )
    meta_json, io_json = _json(sections, Section.METADATA), _json(sections, Section.IOQUANT)
    try:
        meta, io = md.Metadata.from_json(meta_json), md.IoQuant.from_json(io_json)
        config = md.check_artifact(
            meta,
            io,
            program_size=len(sections[Section.PROGRAM]),
            weights_size=len(sections[Section.WEIGHTS]),
            config_id=config_id,
        )
    except md.MetadataVersionError as exc:
        raise ArtifactMismatchError(f"artifact {exc}") from None
    except md.MetadataError as exc:
        raise ArtifactCorruptError(f"invalid artifact: {exc}") from None
    return meta, io, config


def _align(n, a=SECTION_ALIGN):
    return (n + a - 1) // a * a


def write_artifact(sections, *, config_id, isa_version=ISA_VERSION):
    """Serialize ``sections`` (``{Section kind: bytes}``) to bytes; JSON sections may be
    dicts or objects with ``to_json`` (``bamboo.arch.metadata``)."""
    items = []
    for kind, payload in sorted(sections.items()):
        if hasattr(payload, "to_json"):
            payload = payload.to_json()
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        if not isinstance(kind, int) or not 0 < kind < 1 << 32:
            raise ArtifactError(f"section kind must be a positive 32-bit integer, not {kind!r}")
        items.append((kind, bytes(payload)))
    table_end = HEADER_SIZE + SECTION_ENTRY_SIZE * len(items)
    pos = _align(table_end)
    entries, body = [], bytearray()
    for kind, payload in items:
        entries.append(_ENTRY.pack(kind, 0, pos, len(payload), 0))
        body += bytes(pos - table_end - len(body)) + payload
        pos = _align(pos + len(payload))
    total = table_end + len(body)
    head = _HEADER.pack(
        MAGIC, FORMAT_VERSION, isa_version, config_id & 0xFFFFFFFF, len(items), 0, total, bytes(32)
    )
    blob = bytearray(head + b"".join(entries) + body)
    blob[32:64] = hashlib.sha256(blob).digest()
    return bytes(blob)


def read_artifact(data, *, config_id=None, isa_version=ISA_VERSION, validate=True):
    """Parse and check an artifact; ``config_id`` (if given) must match the artifact's.

    ``validate=False`` checks only the container (header, checksum, section table):
    the typed :attr:`Artifact.metadata` needs the full check.

    Raises
    ------
    ArtifactTruncatedError, ArtifactCorruptError, ArtifactMismatchError
        With a message naming the field or section at fault.
    """
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        if not MAGIC.startswith(data[: len(MAGIC)]):
            raise ArtifactCorruptError("not a Bamboo artifact: bad magic number")
        raise ArtifactTruncatedError(
            f"artifact truncated: {len(data)} bytes, the header alone is {HEADER_SIZE}"
        )
    magic, fmt, isa_v, cfg, count, _flags, total, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ArtifactCorruptError(f"not a Bamboo artifact: bad magic number {magic!r}")
    if fmt != FORMAT_VERSION:
        raise ArtifactMismatchError(
            f"artifact format version {fmt}, this loader reads version {FORMAT_VERSION}"
        )
    if len(data) < total:
        raise ArtifactTruncatedError(
            f"artifact truncated: {len(data)} bytes of the {total} its header announces"
        )
    if len(data) > total:
        raise ArtifactCorruptError(
            f"artifact has {len(data) - total} trailing bytes after the {total} announced"
        )
    check = bytearray(data)
    check[32:64] = bytes(32)
    if hashlib.sha256(check).digest() != digest:
        raise ArtifactCorruptError("artifact checksum mismatch: the file is corrupted")
    table_end = HEADER_SIZE + SECTION_ENTRY_SIZE * count
    if table_end > total:
        raise ArtifactCorruptError(f"section table of {count} entries runs past the file end")
    sections = {}
    for i in range(count):
        kind, _f, off, size, _r = _ENTRY.unpack_from(data, HEADER_SIZE + SECTION_ENTRY_SIZE * i)
        name = Section.NAMES.get(kind, f"kind {kind}")
        if off < table_end or off + size > total:
            raise ArtifactCorruptError(
                f"section {name} [{off}, {off + size}) lies outside the file body"
            )
        if kind in sections:
            raise ArtifactCorruptError(f"section {name} appears twice")
        sections[kind] = data[off : off + size]
    if isa_v != isa_version:
        raise ArtifactMismatchError(
            f"artifact was compiled for ISA version {isa_v}, the hardware runs {isa_version}"
        )
    if config_id is not None and cfg != config_id:
        raise ArtifactMismatchError(
            f"artifact config_id {cfg:#010x} does not match the accelerator's {config_id:#010x}: "
            "recompile for this configuration"
        )
    parsed = _validate(sections, cfg) if validate else None
    return Artifact(
        isa_version=isa_v, config_id=cfg, sections=sections, format_version=fmt, parsed=parsed
    )
