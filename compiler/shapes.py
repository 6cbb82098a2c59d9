"""Input shapes: ``--input-shape NAME=1x3x224x224``, symbolic batch, size limits.

Exported models usually declare a symbolic batch (``dynamic_axes={"input": {0: "batch"}}``).
:func:`resolve_input_shapes` pins it to 1 and says so in a note (``bamboo inspect`` prints
the notes); any other dynamic dimension needs ``--input-shape``. A zero-size dimension and a
shape too large for the accelerator's DMA addressing are refused with their own messages,
before anything is allocated.
"""

from dataclasses import dataclass

from bamboo.arch.isa import FORMATS, Opcode

from .errors import CompilerError, DynamicShapeError

__all__ = [
    "parse_input_shapes",
    "resolve_input_shapes",
    "ResolvedShapes",
    "MAX_TENSOR_BYTES",
    "check_tensor_size",
    "FLAG",
]

FLAG = "--input-shape"
# Every DMA transfer addresses DDR by a byte offset from the window base: a tensor (and the
# whole set of activations) must fit in what that field can address.
_DRAM_ADDR_BITS = next(f.width for f in FORMATS[Opcode.LOAD] if f.name == "dram_addr")
MAX_TENSOR_BYTES = 1 << _DRAM_ADDR_BITS


class InputShapeError(CompilerError):
    """A ``--input-shape`` specification that cannot be parsed or does not fit the model."""


def parse_input_shapes(specs):
    """Parse ``["NAME=1x3x224x224", ...]`` into ``{"NAME": (1, 3, 224, 224), ...}``.

    Raises
    ------
    CompilerError
        A malformed specification, a dimension that is not a positive integer, or a name
        given twice; the message quotes the specification.
    """
    shapes = {}
    for spec in specs or ():
        name, sep, dims = str(spec).rpartition("=")
        if not sep or not name or not dims:
            raise InputShapeError(f"{FLAG} {spec!r}: expected NAME=DxDx..., e.g. input=1x3x224x224")
        parts = dims.lower().replace(",", "x").split("x")
        if not all(p.strip().isdigit() for p in parts):
            raise InputShapeError(
                f"{FLAG} {spec!r}: dimensions must be integers separated "
                f"by 'x', e.g. {name}=1x3x224x224"
            )
        shape = tuple(int(p) for p in parts)
        if min(shape) < 1:
            raise InputShapeError(f"{FLAG} {spec!r}: every dimension must be at least 1")
        if name in shapes:
            raise InputShapeError(f"{FLAG} names {name!r} twice")
        shapes[name] = shape
    return shapes


@dataclass(frozen=True)
class ResolvedShapes:
    """Static input shapes and the notes that say how dynamic ones were pinned."""

    shapes: dict
    notes: tuple = ()


def _dims(vi):
    """``[(value or None, symbol)]`` for the declared dimensions of graph input ``vi``."""
    out = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append((d.dim_value, ""))
        else:
            out.append((None, d.dim_param or "?"))
    return out


def resolve_input_shapes(model, overrides=None):
    """Static shapes of the model's inputs, pinning dynamic dimensions.

    ``overrides`` maps input names to full shapes (from :func:`parse_input_shapes`). Without
    one, a dynamic first dimension of a rank >= 2 input (the batch) becomes 1 with a note;
    any other dynamic dimension raises :class:`DynamicShapeError` naming ``--input-shape``.
    """
    overrides = dict(overrides or {})
    names = [vi.name for vi in model.graph.input]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InputShapeError(
            f"{FLAG} names {', '.join(map(repr, unknown))}, which is not an "
            f"input of the model (inputs: {', '.join(map(repr, names))})"
        )
    shapes, notes = {}, []
    for vi in model.graph.input:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            if vi.name not in overrides:
                raise DynamicShapeError(
                    f"input {vi.name!r} has no declared shape; give it with "
                    f"{FLAG} {vi.name}=1x3x224x224 (its real shape)"
                )
            shapes[vi.name] = overrides[vi.name]
            continue
        dims = _dims(vi)
        for i, (v, _) in enumerate(dims):
            if v is not None and v < 0:
                raise DynamicShapeError(
                    f"input {vi.name!r} declares dimension {i} as {v}: a negative size is not "
                    f"a valid ONNX shape; re-export the model"
                )
            if v == 0:
                raise DynamicShapeError(
                    f"input {vi.name!r} declares dimension {i} as 0 (an empty tensor): "
                    f"Bamboo needs every dimension at least 1; re-export the model with "
                    f"a real input shape"
                )
        if vi.name in overrides:
            shape = overrides[vi.name]
            if len(shape) != len(dims):
                raise InputShapeError(
                    f"{FLAG} {vi.name}={'x'.join(map(str, shape))} has "
                    f"{len(shape)} dimensions; the model declares "
                    f"{len(dims)}"
                )
            for i, ((v, _), s) in enumerate(zip(dims, shape)):
                if v is not None and v != s:
                    raise InputShapeError(
                        f"{FLAG} {vi.name}={'x'.join(map(str, shape))}: dimension {i} is "
                        f"{v} in the model, not {s}"
                    )
            pinned = [(i, sym, s) for i, ((v, sym), s) in enumerate(zip(dims, shape)) if v is None]
            if pinned:
                notes.append(
                    f"input {vi.name!r}: "
                    + ", ".join(f"dynamic {sym!r} = {s}" for _, sym, s in pinned)
                    + f" (from {FLAG})"
                )
            shapes[vi.name] = tuple(shape)
            continue
        shape = []
        for i, (v, sym) in enumerate(dims):
            if v is not None:
                shape.append(v)
            elif i == 0 and len(dims) >= 2:
                shape.append(1)
                notes.append(
                    f"input {vi.name!r}: dynamic batch {sym!r} compiled as 1 "
                    f"(pin it with {FLAG} {vi.name}=...)"
                )
            else:
                declared = "x".join(str(d) if d is not None else sym for d, sym in dims)
                raise DynamicShapeError(
                    f"input {vi.name!r} has a dynamic dimension {sym!r} (dimension {i} of "
                    f"{declared}); pin it with {FLAG} {vi.name}=DxDx... (all "
                    f"{len(dims)} dimensions)"
                )
        shapes[vi.name] = tuple(shape)
    for name, shape in shapes.items():
        check_tensor_size(f"input {name!r}", shape)
    return ResolvedShapes(shapes, tuple(notes))


def check_tensor_size(what, shape, elem_bytes=1):
    """Refuse a tensor larger than the DMA can address (:data:`MAX_TENSOR_BYTES`)."""
    n = elem_bytes
    for s in shape:
        n *= int(s)
    if n > MAX_TENSOR_BYTES:
        raise CompilerError(
            f"{what} of shape {'x'.join(map(str, shape))} is {n:,} bytes: more than the "
            f"{MAX_TENSOR_BYTES:,} bytes the accelerator's {_DRAM_ADDR_BITS}-bit DMA offsets "
            f"(ISA field dram_addr) can address; use a smaller input"
        )
    return n
