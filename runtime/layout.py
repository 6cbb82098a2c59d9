"""Channel-blocked DRAM layout of activations, in numpy (the rule: ``bamboo.arch.layout``).

A ``(1, H, W, C)`` map lives in DRAM as ``[ceil(C/B)][H][W][B]`` bytes (``B`` =
``config.rows``); a vector ``(1, K)`` as the map ``(1, 1, 1, K)``. The runtime writes
exchange buffers with :func:`to_blocked` and reads them with :func:`from_blocked`;
the simulators use the same two functions.

Both are a transpose of ``B``-byte blocks. When ``C`` is a whole number of blocks, the
blocks move as 2-, 4- or 8-byte words (a few times faster than byte by byte); a
partial last block is written channel by channel.
"""

import numpy as np

__all__ = ["from_blocked", "to_blocked"]


def _words(a):
    """C-contiguous bytes ``a`` viewed as the widest unsigned words its last axis splits into."""
    for word in (np.uint64, np.uint32, np.uint16):
        if a.shape[-1] % np.dtype(word).itemsize == 0:
            return a.view(word)
    return a


def to_blocked(x, rows):
    """``(1, h, w, c)`` or ``(1, c)`` codes -> channel-blocked bytes (uint8, 1-D).

    Channels past ``c`` in the last block are written as zero (don't-care to the fabric).
    """
    x = np.asarray(x)
    x = x.reshape(x.shape[0], 1, 1, -1) if x.ndim == 2 else x
    _, h, w, c = x.shape
    nb, full = -(-c // rows), c // rows
    src = x[0].view(np.uint8)  # one-byte codes: any strides view as bytes
    if full == nb:
        src = np.ascontiguousarray(src)
        out = np.empty((nb, h, w, rows), np.uint8)
        np.copyto(_words(out), _words(src.reshape(h, w, nb, rows)).transpose(2, 0, 1, 3))
        return out.reshape(-1)
    out = np.zeros((nb, h, w, rows), np.uint8)
    if full:
        out[:full] = src[..., : full * rows].reshape(h, w, full, rows).transpose(2, 0, 1, 3)
    rest = c - full * rows  # the partial last block: fewer than ``rows`` channels
    if rest > 4:  # one strided copy (numpy: faster than per-channel planes past ~4)
        out[full, :, :, :rest] = src[..., full * rows :]
    else:
        for j in range(rest):
            out[full, :, :, j] = src[..., full * rows + j]
    return out.reshape(-1)


def from_blocked(buf, h, w, c, rows, dtype):
    """Inverse of :func:`to_blocked`: ``(h, w, c)`` codes of ``dtype`` from bytes ``buf``."""
    nb = -(-c // rows)
    blocks = np.ascontiguousarray(np.asarray(buf[: nb * h * w * rows])).reshape(nb, h, w, rows)
    if c == nb * rows:
        out = np.empty((h, w, nb, rows), np.uint8)
        np.copyto(_words(out), _words(blocks).transpose(1, 2, 0, 3))
        return out.reshape(h, w, c).view(dtype)
    x = blocks.transpose(1, 2, 0, 3)
    return np.ascontiguousarray(x.reshape(h, w, nb * rows)[..., :c]).view(dtype)
