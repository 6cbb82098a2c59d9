"""Parameters in the hardware's layouts: WGT words, PARAM words, LUTs, VEC scales.

WGT (docs/compute.md, "WGT word layout"): one word is ``C x B`` int8, byte ``c*B + r``
is ``w[c][r]``. Dense words run ``[ob][blk][ky][kx]`` so the taps of any run of input
blocks of one output block are contiguous in DRAM. Depthwise words run ``[group][pass]``
(:func:`depthwise_weights`: ``N = depthwise_channels`` channels a group, kernel row ``ky``
in pass ``ky // G``, row group ``ky % G``), zero outside the kernel.
PARAM: ``bamboo.arch.layout`` (lane ``c`` = bias, m, e of output channel ``c``).
"""

import numpy as np
from bamboo.arch.layout import E_MIN, param_lane
from bamboo.runtime.elementwise import fma_f32
from bamboo.runtime.requant import Requant

__all__ = [
    "UNUSED_E",
    "UNUSED_M",
    "add_params",
    "dense_weights",
    "depthwise_weights",
    "fold_in_zp",
    "in_zp_for",
    "param_words",
    "requant_of",
]

_f32 = np.float32
# Lanes past the last channel: a valid requantizer that outputs the zero point.
UNUSED_M, UNUSED_E = 1 << 23, E_MIN


def dense_weights(w, rows, cols):
    """OHWI int8 ``w`` -> uint8 array ``(Ob, Ib, kh, kw, C*B)`` of WGT words."""
    o, kh, kw, i = w.shape
    ob, ib = -(-o // cols), -(-i // rows)
    full = np.zeros((ob * cols, kh, kw, ib * rows), np.int8)
    full[:o, :, :, :i] = w
    words = full.reshape(ob, cols, kh, kw, ib, rows).transpose(0, 4, 2, 3, 1, 5)
    return np.ascontiguousarray(words).reshape(ob, ib, kh, kw, cols * rows).view(np.uint8)


def depthwise_weights(w, rows, cols, step=1, channels=None, groups=1):
    """``(C, kh, kw, 1)`` int8 ``w`` -> uint8 array ``(nb, passes, C*B)`` of WGT words.

    One depthwise CONV computes ``channels`` channels (``AcceleratorConfig.
    depthwise_channels``, default ``rows``): ``nb = ceil(C / channels)`` channel groups.
    Its ``groups`` row groups (``AcceleratorConfig.depthwise_row_groups(kw)``) of
    ``rows / groups`` rows each take kernel rows ``ky = p * groups + g`` of pass ``p``
    (``passes = ceil(kh / groups)``). Channel ``c`` of a group sits in column
    ``c * step`` (``AcceleratorConfig.depthwise_column_step``), kernel column ``kx`` of
    group ``g`` in row ``g * rows / groups + kx``; everything else is 0.
    """
    c, kh, kw, _ = w.shape
    n = channels or rows
    rg = rows // groups
    if kw > rg or n * step > cols:
        raise ValueError(
            f"a {kw}-wide kernel row in {groups} groups of {rows} rows, or "
            f"{n} channels at column step {step} in {cols} columns, does not fit"
        )
    nb, passes = -(-c // n), -(-kh // groups)
    full = np.zeros((nb * n, passes * groups, kw), np.int8)
    full[:c, :kh] = w[..., 0]
    words = np.zeros((nb, passes, cols, groups, rg), np.int8)
    # (nb, n, passes, groups, kw) -> (nb, passes, n, groups, kw)
    words[:, :, : n * step : step, :, :kw] = full.reshape(nb, n, passes, groups, kw).transpose(
        0, 2, 1, 3, 4
    )
    return words.reshape(nb, passes, cols * rows).view(np.uint8)


def param_words(bias, m, e, lanes_per_word, channels_per_word=None):
    """PARAM words ``(n, lanes * 8)`` uint8: channel ``k`` in word ``k // cpw``, lane ``k % cpw``.

    ``channels_per_word`` defaults to the lanes (dense); depthwise fills only
    ``depthwise_channels``.
    """
    cpw = channels_per_word or lanes_per_word
    n = len(bias)
    words = -(-n // cpw)
    lane = np.zeros((words, lanes_per_word), np.uint64)
    lane[:] = param_lane(0, UNUSED_M, UNUSED_E)
    e = np.broadcast_to(np.asarray(e, np.int64), (n,))
    m = np.broadcast_to(np.asarray(m, np.int64), (n,))
    val = np.array(
        [
            param_lane(b, mm, ee)
            for b, mm, ee in zip(np.asarray(bias).tolist(), m.tolist(), e.tolist())
        ],
        np.uint64,
    )
    idx = np.arange(n)
    lane[idx // cpw, idx % cpw] = val
    return lane.astype("<u8").view(np.uint8).reshape(words, lanes_per_word * 8)


def add_params(sa, sb, sc, za, zb, zc, lanes):
    """One PARAM word for VEC ADD: lane 0 = ``rA | rB << 32``, lane 1 = ``K`` (float32 bits).

    The values of runtime/elementwise.py's x86 formula:
    ``rA = f32(sa/sc)``, ``rB = f32(sb/sc)``, ``K = f32(zc - fma(rA, za, f32(rB*zb)))``.
    """
    ra, rb = _f32(_f32(sa) / _f32(sc)), _f32(_f32(sb) / _f32(sc))
    k = _f32(_f32(zc) - fma_f32(ra, _f32(za), _f32(rb * _f32(zb))))
    word = np.zeros(lanes * 2, "<u4")
    word[:3] = np.array([ra, rb, k], _f32).view("<u4")
    return word.view(np.uint8).reshape(1, lanes * 8)


def in_zp_for(config, x_zp, signed):
    """The CONV ``in_zp`` the array subtracts: the packed DSP build takes 8-bit ``x - in_zp``."""
    if config.dsp_packing:
        return 0 if signed else 128
    return int(x_zp)


def fold_in_zp(bias, w, x_zp, in_zp):
    """Bias with ``(in_zp - x_zp) * sum(w)`` folded in (exact: padding holds ``x_zp``)."""
    bias = np.asarray(bias, np.int64)
    if in_zp == x_zp:
        return bias
    return bias + (int(in_zp) - int(x_zp)) * w.reshape(w.shape[0], -1).astype(np.int64).sum(1)


def requant_of(rq, channels):
    """``(m, e)`` arrays of ``channels`` entries from a :class:`Requant` (scalar or per channel)."""
    assert isinstance(rq, Requant)
    return (
        np.broadcast_to(np.asarray(rq.m, np.int64), (channels,)),
        np.broadcast_to(np.asarray(rq.e, np.int64), (channels,)),
    )
