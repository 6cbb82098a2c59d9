"""The typed schema of an artifact's METADATA and IOQUANT sections, and its validation.

The compiler writes these sections from the dataclasses here (``to_json``); every
reader (runtime, simulators, profiler, reports) gets them back from
:func:`bamboo.arch.artifact.read_artifact` as the same dataclasses (``from_json``),
after :func:`check_artifact` has checked the whole artifact for consistency:

* each field has its type and range (counts non-negative, names strings, ``dtype``
  and ``layout`` known, scales finite and positive, zero points in range);
* the memory plan: the four regions in order, disjoint, inside the DMA window (the
  ``footprint``, addressable by the ISA's ``dram_addr`` field); the WEIGHTS and
  PROGRAM sections exactly as long as their regions; the program region aligned to
  whole instructions; every buffer and every exchanged tensor inside the window;
* the schedule: fabric steps run existing instructions, every tensor a step or an
  output reads is an input of the model or made by an earlier step, CPU steps run
  existing CPU nodes;
* the configuration the metadata names is the one of the header's ``config_id``.

Anything else raises :class:`MetadataError` with one line naming the field; the
artifact loader reports it as an :class:`~bamboo.arch.artifact.ArtifactCorruptError`.
The schema is versioned (:data:`SCHEMA_VERSION`, the ``version`` key of METADATA).
"""

import math
from dataclasses import dataclass, field
from typing import Optional

from . import isa
from .config import AcceleratorConfig
from .errors import BambooError
from .layout import act_bytes

__all__ = [
    "CPU",
    "DTYPES",
    "FABRIC",
    "LAYOUTS",
    "REGIONS",
    "SCHEMA_VERSION",
    "WINDOW_LIMIT",
    "Buffer",
    "CpuNode",
    "IoQuant",
    "IoSpec",
    "Layer",
    "Memory",
    "Metadata",
    "MetadataError",
    "MetadataVersionError",
    "Placement",
    "Step",
    "Tensor",
    "check_artifact",
]

SCHEMA_VERSION = 1
FABRIC, CPU = "fabric", "cpu"
#: The regions of the DMA window, in address order (see ``compiler/backend/memplan.py``).
REGIONS = ("weights", "activations", "exchange", "program")
#: Code types of tensors, and their (min, max).
DTYPES = {"uint8": (0, 255), "int8": (-128, 127)}
#: Tensor layouts: physical equals logical (``ND``), or channels last (``NHWC``).
LAYOUTS = ("ND", "NHWC")
#: Bytes the DMA can address from the window base: the LOAD/STORE ``dram_addr`` field.
WINDOW_LIMIT = 1 << next(f.width for f in isa.FORMATS[isa.Opcode.LOAD] if f.name == "dram_addr")


class MetadataError(BambooError, ValueError):
    """METADATA or IOQUANT that does not follow the schema or contradicts the artifact."""


class MetadataVersionError(MetadataError):
    """Metadata of another schema version."""


# Field readers: each names the field at fault -------------------------------------------


def _dict(v, where):
    if not isinstance(v, dict):
        raise MetadataError(f"{where} must be an object, not {type(v).__name__}")
    return v


def _get(d, key, where):
    _dict(d, where)
    if key not in d:
        raise MetadataError(f"{where} lacks {key!r}")
    return d[key]


def _int(v, where, lo=0, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise MetadataError(f"{where} must be an integer, not {v!r:.40}")
    if v < lo or (hi is not None and v > hi):
        raise MetadataError(f"{where} = {v} is outside [{lo}, {hi if hi is not None else ''}]")
    return v


def _str(v, where, choices=None):
    if not isinstance(v, str):
        raise MetadataError(f"{where} must be a string, not {v!r:.40}")
    if choices is not None and v not in choices:
        raise MetadataError(f"{where} is {v!r:.40}, not one of {', '.join(choices)}")
    return v


def _list(v, where):
    if not isinstance(v, list):
        raise MetadataError(f"{where} must be a list, not {type(v).__name__}")
    return v


def _strs(v, where):
    return tuple(_str(x, f"{where}[{i}]") for i, x in enumerate(_list(v, where)))


def _ints(v, where, n=None, lo=0):
    out = tuple(_int(x, f"{where}[{i}]", lo) for i, x in enumerate(_list(v, where)))
    if n is not None and len(out) != n:
        raise MetadataError(f"{where} must have {n} entries, not {len(out)}")
    return out


def _scale(v, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise MetadataError(f"{where} must be a finite positive number, not {v!r:.40}")
    return float(v)


def _prod(shape):
    return math.prod(shape)


# The sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Buffer:
    """A tensor's DRAM buffer in the memory plan: ``region``, ``offset``, ``size``, ``live``."""

    region: str
    offset: int
    size: int
    live: tuple

    def to_json(self):
        return {
            "region": self.region,
            "offset": self.offset,
            "size": self.size,
            "live": list(self.live),
        }

    @classmethod
    def from_json(cls, d, where):
        return cls(
            _str(_get(d, "region", where), f"{where}.region", REGIONS),
            _int(_get(d, "offset", where), f"{where}.offset"),
            _int(_get(d, "size", where), f"{where}.size"),
            _ints(_get(d, "live", where), f"{where}.live", 2, lo=-1),
        )


@dataclass(frozen=True)
class Memory:
    """The memory plan: ``regions`` ``{name: (offset, size)}``, ``footprint``, buffers."""

    regions: dict
    footprint: int
    buffers: dict = field(default_factory=dict)
    alias: dict = field(default_factory=dict)

    def region(self, name):
        """``(offset, size)`` of region ``name``."""
        return self.regions[name]

    def to_json(self):
        return {
            "regions": {k: list(v) for k, v in self.regions.items()},
            "footprint": self.footprint,
            "alias": dict(self.alias),
            "buffers": {k: b.to_json() for k, b in self.buffers.items()},
        }

    @classmethod
    def from_json(cls, d, where="memory"):
        regions = _dict(_get(d, "regions", where), f"{where}.regions")
        missing = [r for r in REGIONS if r not in regions]
        if missing or len(regions) != len(REGIONS):
            raise MetadataError(
                f"{where}.regions must be exactly {', '.join(REGIONS)}; has "
                f"{', '.join(map(str, regions)) or 'none'}"
            )
        buffers = _dict(d.get("buffers", {}), f"{where}.buffers")
        alias = _dict(d.get("alias", {}), f"{where}.alias")
        return cls(
            {r: _ints(regions[r], f"{where}.regions.{r}", 2) for r in REGIONS},
            _int(_get(d, "footprint", where), f"{where}.footprint"),
            {
                _str(k, f"{where}.buffers key"): Buffer.from_json(b, f"{where}.buffers.{k}")
                for k, b in buffers.items()
            },
            {
                _str(k, f"{where}.alias key"): _str(v, f"{where}.alias.{k}")
                for k, v in alias.items()
            },
        )


@dataclass(frozen=True)
class Step:
    """One step of the schedule: a fabric step runs ``insn_count`` instructions from
    ``insn_start`` after its ``inputs`` are in DRAM and leaves its ``outputs`` there;
    a CPU step runs its ``nodes`` (CPU nodes) in order."""

    target: str
    nodes: tuple
    insn_start: int = 0
    insn_count: int = 0
    inputs: tuple = ()
    outputs: tuple = ()

    @property
    def on_fabric(self):
        return self.target == FABRIC

    def to_json(self):
        d = {"target": self.target, "nodes": list(self.nodes)}
        if self.on_fabric:
            d.update(
                insn_start=self.insn_start,
                insn_count=self.insn_count,
                inputs=list(self.inputs),
                outputs=list(self.outputs),
            )
        return d

    @classmethod
    def from_json(cls, d, where):
        target = _str(_get(d, "target", where), f"{where}.target", (FABRIC, CPU))
        nodes = _strs(_get(d, "nodes", where), f"{where}.nodes")
        if target == CPU:
            extra = sorted(k for k in ("insn_start", "insn_count", "inputs", "outputs") if k in d)
            if extra:
                raise MetadataError(f"{where} runs on the CPU but has fabric fields {extra}")
            return cls(target, nodes)
        return cls(
            target,
            nodes,
            _int(_get(d, "insn_start", where), f"{where}.insn_start"),
            _int(_get(d, "insn_count", where), f"{where}.insn_count", 1),
            _strs(_get(d, "inputs", where), f"{where}.inputs"),
            _strs(_get(d, "outputs", where), f"{where}.outputs"),
        )


class _Flat:
    """A record of scalar fields, each read by its entry of ``_READERS`` (name: reader)."""

    _READERS: dict = {}

    def to_json(self):
        return {name: getattr(self, name) for name in self._READERS}

    @classmethod
    def from_json(cls, d, where):
        return cls(
            **{
                name: read(_get(d, name, where), f"{where}.{name}")
                for name, read in cls._READERS.items()
            }
        )


@dataclass(frozen=True)
class Layer(_Flat):
    """The instructions ``[first, first + count)`` of fabric node ``node``."""

    node: str
    first: int
    count: int

    _READERS = {"node": _str, "first": _int, "count": _int}


@dataclass(frozen=True)
class Placement(_Flat):
    """Where a node runs (``target``), why, and its ``op``."""

    target: str
    reason: str
    op: str

    _READERS = {
        "target": lambda v, where: _str(v, where, (FABRIC, CPU)),
        "reason": _str,
        "op": _str,
    }


@dataclass(frozen=True)
class Tensor:
    """A tensor of codes: physical ``shape``, ``layout``, quantization; with ``canon``
    ``(h, w, c)`` and window ``offset`` when it has a DRAM buffer."""

    shape: tuple
    layout: str
    dtype: str
    scale: float
    zp: int
    canon: Optional[tuple] = None
    offset: Optional[int] = None

    @property
    def in_dram(self):
        return self.canon is not None

    def to_json(self):
        d = {
            "shape": list(self.shape),
            "layout": self.layout,
            "dtype": self.dtype,
            "scale": self.scale,
            "zp": self.zp,
        }
        if self.in_dram:
            d.update(canon=list(self.canon), offset=self.offset)
        return d

    @classmethod
    def from_json(cls, d, where):
        dtype = _str(_get(d, "dtype", where), f"{where}.dtype", tuple(DTYPES))
        canon = offset = None
        if "canon" in d or "offset" in d:
            canon = _ints(_get(d, "canon", where), f"{where}.canon", 3)
            offset = _int(_get(d, "offset", where), f"{where}.offset")
        t = cls(
            _ints(_get(d, "shape", where), f"{where}.shape"),
            _str(_get(d, "layout", where), f"{where}.layout", LAYOUTS),
            dtype,
            _scale(_get(d, "scale", where), f"{where}.scale"),
            _int(_get(d, "zp", where), f"{where}.zp", *DTYPES[dtype]),
            canon,
            offset,
        )
        if canon is not None and _prod(canon) != _prod(t.shape):
            raise MetadataError(f"{where}.canon {list(canon)} does not hold shape {list(t.shape)}")
        return t


@dataclass(frozen=True)
class CpuNode:
    """A node the processor runs: ``op``, tensor names, ``attrs`` (JSON-encoded values,
    read by ``bamboo.runtime.cpu_ops.decode_value``)."""

    op: str
    inputs: tuple
    outputs: tuple
    attrs: dict

    def to_json(self):
        return {
            "op": self.op,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "attrs": dict(self.attrs),
        }

    @classmethod
    def from_json(cls, d, where):
        outputs = _strs(_get(d, "outputs", where), f"{where}.outputs")
        if not outputs:
            raise MetadataError(f"{where}.outputs is empty")
        return cls(
            _str(_get(d, "op", where), f"{where}.op"),
            _strs(_get(d, "inputs", where), f"{where}.inputs"),
            outputs,
            dict(_dict(_get(d, "attrs", where), f"{where}.attrs")),
        )


def _table(d, where, cls):
    return {
        _str(k, f"{where} key"): cls.from_json(v, f"{where}.{k}")
        for k, v in _dict(d, where).items()
    }


def _rows(v, where, cls):
    return tuple(cls.from_json(x, f"{where}[{i}]") for i, x in enumerate(_list(v, where)))


@dataclass(frozen=True)
class Metadata:
    """The METADATA section: configuration, memory plan, schedule, layers, tensors."""

    name: str
    config: dict
    memory: Memory
    steps: tuple
    layers: tuple
    tensors: dict
    cpu_nodes: dict
    placement: dict = field(default_factory=dict)
    version: int = SCHEMA_VERSION

    def accelerator(self):
        """The :class:`~bamboo.arch.config.AcceleratorConfig` the metadata names."""
        try:
            return AcceleratorConfig.from_dict(self.config)
        except (BambooError, TypeError, ValueError) as exc:
            raise MetadataError(f"config is not an accelerator configuration: {exc}") from None

    def to_json(self):
        return {
            "version": self.version,
            "name": self.name,
            "config": dict(self.config),
            "memory": self.memory.to_json(),
            "steps": [s.to_json() for s in self.steps],
            "layers": [ly.to_json() for ly in self.layers],
            "placement": {k: p.to_json() for k, p in self.placement.items()},
            "tensors": {k: t.to_json() for k, t in self.tensors.items()},
            "cpu_nodes": {k: n.to_json() for k, n in self.cpu_nodes.items()},
        }

    @classmethod
    def from_json(cls, d):
        where = "metadata"
        version = _get(d, "version", where)
        if version != SCHEMA_VERSION:
            raise MetadataVersionError(
                f"metadata schema version {version!r:.20}, this loader "
                f"reads version {SCHEMA_VERSION}: recompile the model"
            )
        return cls(
            _str(_get(d, "name", where), "metadata.name"),
            dict(_dict(_get(d, "config", where), "metadata.config")),
            Memory.from_json(_get(d, "memory", where)),
            _rows(_get(d, "steps", where), "metadata.steps", Step),
            _rows(_get(d, "layers", where), "metadata.layers", Layer),
            _table(_get(d, "tensors", where), "metadata.tensors", Tensor),
            _table(_get(d, "cpu_nodes", where), "metadata.cpu_nodes", CpuNode),
            _table(d.get("placement", {}), "metadata.placement", Placement),
            version,
        )


@dataclass(frozen=True)
class IoSpec:
    """A model input or output: ONNX ``name`` and shape, IR ``tensor``, whether it is
    float (quantized on the way in, dequantized on the way out) and its codes.
    ``mean_axes`` (a float output only): after dequantizing, the float32 mean over these
    trailing axes as onnxruntime computes it, reshaped to ``onnx_shape`` (a model ending
    in a float ReduceMean)."""

    name: str
    tensor: str
    onnx_shape: tuple
    float: bool
    dtype: str
    scale: float
    zp: int
    layout: str
    offset: Optional[int] = None
    mean_axes: tuple = ()

    def to_json(self):
        d = {
            "name": self.name,
            "tensor": self.tensor,
            "onnx_shape": list(self.onnx_shape),
            "float": self.float,
            "dtype": self.dtype,
            "scale": self.scale,
            "zp": self.zp,
            "layout": self.layout,
        }
        if self.offset is not None:
            d["offset"] = self.offset
        if self.mean_axes:
            d["mean_axes"] = list(self.mean_axes)
        return d

    @classmethod
    def from_json(cls, d, where):
        dtype = _str(_get(d, "dtype", where), f"{where}.dtype", tuple(DTYPES))
        is_float = _get(d, "float", where)
        if not isinstance(is_float, bool):
            raise MetadataError(f"{where}.float must be true or false, not {is_float!r:.20}")
        return cls(
            _str(_get(d, "name", where), f"{where}.name"),
            _str(_get(d, "tensor", where), f"{where}.tensor"),
            _ints(_get(d, "onnx_shape", where), f"{where}.onnx_shape"),
            is_float,
            dtype,
            _scale(_get(d, "scale", where), f"{where}.scale"),
            _int(_get(d, "zp", where), f"{where}.zp", *DTYPES[dtype]),
            _str(_get(d, "layout", where), f"{where}.layout", LAYOUTS),
            None if d.get("offset") is None else _int(d["offset"], f"{where}.offset"),
            _ints(d.get("mean_axes", []), f"{where}.mean_axes"),
        )


@dataclass(frozen=True)
class IoQuant:
    """The IOQUANT section: the model's inputs and outputs, in ONNX order."""

    inputs: tuple
    outputs: tuple

    def to_json(self):
        return {
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
        }

    @classmethod
    def from_json(cls, d):
        io = cls(
            _rows(_get(d, "inputs", "ioquant"), "ioquant.inputs", IoSpec),
            _rows(_get(d, "outputs", "ioquant"), "ioquant.outputs", IoSpec),
        )
        for kind, specs in (("inputs", io.inputs), ("outputs", io.outputs)):
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise MetadataError(f"ioquant.{kind} names a tensor twice: {names}")
        if not io.inputs or not io.outputs:
            raise MetadataError("ioquant must list at least one input and one output")
        return io


# Whole-artifact consistency --------------------------------------------------------------


def _check_memory(mem, program_size, weights_size):
    regions = mem.regions
    if mem.footprint > WINDOW_LIMIT:
        raise MetadataError(
            f"memory footprint {mem.footprint} bytes exceeds the "
            f"{WINDOW_LIMIT} the DMA's dram_addr can address"
        )
    end = 0
    for name in REGIONS:
        off, size = regions[name]
        if off < end or off + size > mem.footprint:
            raise MetadataError(
                f"memory region {name} [{off}, {off + size}) is out of order or "
                f"outside the window [0, {mem.footprint})"
            )
        end = off + size
    if regions["weights"][1] != weights_size:
        raise MetadataError(
            f"the WEIGHTS section has {weights_size} bytes, the memory plan's "
            f"weights region {regions['weights'][1]}"
        )
    if regions["program"][1] != program_size:
        raise MetadataError(
            f"the PROGRAM section has {program_size} bytes, the memory plan's "
            f"program region {regions['program'][1]}"
        )
    if program_size % isa.INSN_BYTES or regions["program"][0] % isa.INSN_BYTES:
        raise MetadataError(
            f"the program region {list(regions['program'])} is not whole "
            f"{isa.INSN_BYTES}-byte instructions"
        )
    for name, b in mem.buffers.items():
        off, size = regions[b.region]
        if b.offset < off or b.offset + b.size > off + size:
            raise MetadataError(
                f"buffer of {name!r} [{b.offset}, {b.offset + b.size}) lies "
                f"outside its {b.region} region"
            )


def _check_tensors(meta, rows):
    lo = meta.memory.regions["activations"][0]
    ex_off, ex_size = meta.memory.regions["exchange"]
    mem = meta.memory
    for name, t in meta.tensors.items():
        if t.in_dram:
            n = act_bytes(*t.canon, rows)
            b = mem.buffers.get(mem.alias.get(name, name))
            if b is None or b.offset != t.offset or b.size < n:
                raise MetadataError(
                    f"tensor {name!r} at {t.offset} ({n} bytes) is not where "
                    "the memory plan puts its buffer"
                )
            if t.offset < lo or t.offset + n > ex_off + ex_size:
                raise MetadataError(
                    f"tensor {name!r} [{t.offset}, {t.offset + n}) lies outside "
                    "the activation and exchange regions"
                )
    for name, node in meta.cpu_nodes.items():
        for t in node.inputs + node.outputs:
            if t not in meta.tensors:
                raise MetadataError(f"CPU node {name!r} names unknown tensor {t!r}")


def _check_schedule(meta, io, insns):
    ready = {s.tensor for s in io.inputs}
    for k, step in enumerate(meta.steps):
        where = f"step {k}"
        if step.on_fabric:
            if step.insn_start + step.insn_count > insns:
                raise MetadataError(
                    f"{where} runs instructions [{step.insn_start}, "
                    f"{step.insn_start + step.insn_count}) of a {insns}-instruction program"
                )
            for t in step.inputs + step.outputs:
                if t not in meta.tensors or not meta.tensors[t].in_dram:
                    raise MetadataError(f"{where} exchanges {t!r}, a tensor with no DRAM buffer")
            reads, made = step.inputs, step.outputs
        else:
            unknown = [n for n in step.nodes if n not in meta.cpu_nodes]
            if unknown:
                raise MetadataError(f"{where} runs unknown CPU nodes {unknown}")
            reads, made = [], []
            for n in step.nodes:
                node = meta.cpu_nodes[n]
                reads += [t for t in node.inputs if t not in made]
                made += node.outputs
        missing = sorted(set(reads) - ready)
        if missing:
            raise MetadataError(f"{where} reads {missing}, made by no earlier step")
        ready |= set(made)
    missing = sorted({s.tensor for s in io.outputs} - ready)
    if missing:
        raise MetadataError(f"model outputs {missing} are made by no step")
    # A tensor the processor makes that has a DRAM buffer is there for the fabric to read:
    # some fabric step must copy it in, or the engine would read stale bytes.
    mem = meta.memory
    from_cpu = {s.tensor for s in io.inputs} | {
        t for n in meta.cpu_nodes.values() for t in n.outputs
    }
    copied = {t for s in meta.steps if s.on_fabric for t in s.inputs}
    for t in sorted(from_cpu - copied):
        b = mem.buffers.get(mem.alias.get(t, t))
        if (
            t in meta.tensors
            and meta.tensors[t].in_dram
            and b is not None
            and b.region == "exchange"
        ):
            raise MetadataError(f"{t!r} has an exchange buffer but no fabric step copies it in")
    for ly in meta.layers:
        if ly.first + ly.count > insns:
            raise MetadataError(f"layer {ly.node!r} spans instructions past the program end")


def _check_io(meta, io):
    for kind, specs in (("input", io.inputs), ("output", io.outputs)):
        for s in specs:
            t = meta.tensors.get(s.tensor)
            if t is None:
                raise MetadataError(f"model {kind} {s.name!r} is unknown tensor {s.tensor!r}")
            if (s.scale, s.zp) != (t.scale, t.zp):
                raise MetadataError(
                    f"model {kind} {s.name!r} is quantized with scale {s.scale!r:.12}, zero "
                    f"point {s.zp!r:.6}; its tensor with {t.scale!r:.12}, {t.zp!r:.6}"
                )
            if s.mean_axes:
                _check_mean(kind, s, t)
            elif (
                (s.dtype, s.layout) != (t.dtype, t.layout)
                or _prod(s.onnx_shape) != _prod(t.shape)
                or (s.layout == "NHWC" and len(s.onnx_shape) != 4)
            ):
                raise MetadataError(
                    f"model {kind} {s.name!r} ({s.dtype}{list(s.onnx_shape)} "
                    f"{s.layout}) does not match its tensor ({t.dtype}"
                    f"{list(t.shape)} {t.layout})"
                )


def _check_mean(kind, s, t):
    """An output whose float mean over ``mean_axes`` of its tensor has ``onnx_shape``."""
    rank = len(t.shape)
    if (
        kind != "output"
        or not s.float
        or (s.dtype, s.layout) != (t.dtype, t.layout)
        or list(s.mean_axes) != list(range(rank - len(s.mean_axes), rank))
    ):
        raise MetadataError(
            f"model {kind} {s.name!r}: mean_axes {list(s.mean_axes)} do not "
            f"apply to its tensor ({t.dtype}{list(t.shape)} {t.layout})"
        )
    logical = [t.shape[i] for i in (0, 3, 1, 2)] if t.layout == "NHWC" else list(t.shape)
    if _prod(s.onnx_shape) * _prod([logical[a] for a in s.mean_axes]) != _prod(t.shape):
        raise MetadataError(
            f"model output {s.name!r} ({list(s.onnx_shape)}, the mean over "
            f"axes {list(s.mean_axes)}) does not match its tensor "
            f"({t.dtype}{list(t.shape)} {t.layout})"
        )


def check_artifact(meta, io, *, program_size, weights_size, config_id):
    """Check METADATA ``meta`` and IOQUANT ``io`` against each other and the artifact.

    Returns the :class:`~bamboo.arch.config.AcceleratorConfig` the metadata names.

    Raises
    ------
    MetadataError
        Naming the first inconsistency found.
    """
    config = meta.accelerator()
    if config.config_id != config_id:
        raise MetadataError(
            f"the metadata's configuration has config_id "
            f"{config.config_id:#010x}, the header {config_id:#010x}"
        )
    _check_memory(meta.memory, program_size, weights_size)
    _check_tensors(meta, config.rows)
    _check_io(meta, io)
    _check_schedule(meta, io, program_size // isa.INSN_BYTES)
    return config
