"""Input shapes given on the command line: ``--input-shape NAME=1x3x224x224`` (repeatable)."""

from .errors import CompilerError

__all__ = ["InputShapeError", "parse_input_shapes"]


class InputShapeError(CompilerError):
    """An ``--input-shape`` text that does not read as ``NAME=D1xD2x...``."""


def parse_input_shapes(specs):
    """``["input=1x3x224x224", ...]`` as ``{"input": (1, 3, 224, 224), ...}``.

    Parameters
    ----------
    specs : iterable of str
        Each ``NAME=D1xD2x...`` with positive integer dimensions; a name at most once.

    Returns
    -------
    dict of str to tuple of int

    Raises
    ------
    InputShapeError
        On a missing name or ``=``, a dimension that is not a positive integer, or a name
        given twice.
    """
    shapes = {}
    for spec in specs or ():
        name, sep, dims = str(spec).partition("=")
        name, dims = name.strip(), dims.strip()
        if not sep or not name or not dims:
            raise InputShapeError(f"--input-shape {spec!r}: expected NAME=D1xD2x..., "
                                  f"for example input=1x3x224x224")
        parts = dims.lower().split("x")
        if not all(p.strip().isdigit() for p in parts):
            raise InputShapeError(f"--input-shape {spec!r}: dimensions must be integers "
                                  f"separated by 'x', as in 1x3x224x224")
        shape = tuple(int(p) for p in parts)
        if 0 in shape:
            raise InputShapeError(f"--input-shape {spec!r}: every dimension must be positive")
        if name in shapes:
            raise InputShapeError(f"--input-shape names {name!r} twice")
        shapes[name] = shape
    return shapes
