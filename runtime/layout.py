"""Channel-blocked DRAM layout of activations, in numpy (the rule: ``bamboo.arch.layout``).

A ``(1, H, W, C)`` map lives in DRAM as ``[ceil(C/B)][H][W][B]`` bytes (``B`` =
``config.rows``); a vector ``(1, K)`` as the map ``(1, 1, 1, K)``. The runtime writes
exchange buffers with :func:`to_blocked` and reads them with :func:`from_blocked`;
the simulators use the same two functions.
"""

import numpy as np

__all__ = ["from_blocked", "to_blocked"]


def to_blocked(x, rows):
    """``(1, h, w, c)`` or ``(1, c)`` codes -> channel-blocked bytes (uint8, 1-D).

    Channels past ``c`` in the last block are written as zero (don't-care to the fabric).
    """
    x = np.asarray(x)
    x = x.reshape(x.shape[0], 1, 1, -1) if x.ndim == 2 else x
    _, h, w, c = x.shape
    nb = -(-c // rows)
    full = np.zeros((h, w, nb * rows), np.uint8)
    full[..., :c] = x[0].view(np.uint8)
    return np.ascontiguousarray(full.reshape(h, w, nb, rows).transpose(2, 0, 1, 3)).reshape(-1)


def from_blocked(buf, h, w, c, rows, dtype):
    """Inverse of :func:`to_blocked`: ``(h, w, c)`` codes of ``dtype`` from bytes ``buf``."""
    nb = -(-c // rows)
    x = np.asarray(buf[:nb * h * w * rows]).reshape(nb, h, w, rows).transpose(1, 2, 0, 3)
    return np.ascontiguousarray(x.reshape(h, w, nb * rows)[..., :c]).view(dtype)
