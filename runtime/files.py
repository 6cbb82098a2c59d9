"""Writing output files safely: a temporary file beside the target, then a rename.

A failed or interrupted write never leaves a truncated file at the target (a device
such as ``/dev/null`` is written in place, never replaced), and every
way the target cannot be written (missing folder, a folder, read-only, a full disk,
``/proc``) is one :class:`~bamboo.runtime.errors.RuntimeBambooError` line.
"""

import os
import tempfile
from pathlib import Path

from .errors import RuntimeBambooError

__all__ = ["write_atomic"]


def write_atomic(path, data, *, protect=()):
    """Write ``data`` (bytes) to ``path`` atomically; refuse to replace any of ``protect``."""
    path = Path(path)
    for other in protect:
        try:
            if path.resolve() == Path(other).resolve():
                raise RuntimeBambooError(
                    f"refusing to overwrite the input {other} with the output: pass another -o path"
                )
        except OSError:
            pass
    if path.is_dir():
        raise RuntimeBambooError(f"cannot write {path}: it is a directory")
    folder = path.parent
    if not folder.is_dir():
        raise RuntimeBambooError(f"cannot write {path}: folder {folder} does not exist")
    if path.exists() and not path.is_file():
        # A device or a pipe (/dev/null, /dev/full, /dev/stdout): write it in place,
        # never rename over it.
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise RuntimeBambooError(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise RuntimeBambooError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
