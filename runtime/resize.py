"""Resize of 8-bit feature maps (NHWC), as onnxruntime's CPU ``Resize`` computes it.

Ref: onnxruntime ``core/providers/cpu/tensor/upsample.cc`` / ``upsamplebase.h`` (1.32).
Every coordinate is computed in float32 exactly as there; the tests compare against
onnxruntime itself (``tests/runtime/test_resize.py``).

* **nearest**: output pixel ``(y, x)`` copies input ``(rows[y], cols[x])``. The index
  maps come from :func:`nearest_map` (each ``coordinate_transformation_mode`` and
  ``nearest_mode``). A map that is ``arange(n * f) // f`` is a pixel repeat by ``f``
  (:func:`repeat_factor`): the fabric does those as data movement.
* **linear** (bilinear over H and W): :func:`linear_map` gives per output row/column the
  two source indices and the float32 weights ``(d1, d2)``; :func:`resize_linear` forms
  ``d2y*d2x*X11 + d2y*d1x*X21 + d1y*d2x*X12 + d1y*d1x*X22`` in float32 in that order,
  one rounding per operation, as the C++ expression does. On codes (onnxruntime runs
  ``uint8``/``int8`` Resize directly when the DequantizeLinear before it and the
  QuantizeLinear after it share their parameters, or in QOperator graphs) the float
  result is converted by truncation toward zero (``static_cast<T>``); when the
  parameters differ onnxruntime resizes the dequantized floats and quantizes them
  (``requant``): ``sat(RNE(v / s_out) + zp_out)``.
"""

import numpy as np

__all__ = [
    "COORDINATE_MODES",
    "NEAREST_MODES",
    "source_coords",
    "nearest_map",
    "linear_map",
    "repeat_factor",
    "resize_nearest",
    "resize_linear",
]

_F32 = np.float32

#: ``coordinate_transformation_mode`` values these kernels reproduce.
COORDINATE_MODES = (
    "half_pixel",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
)
#: ``nearest_mode`` values (``simple``: Upsample and Resize-10, before the attribute existed).
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")


def source_coords(out_len, in_len, scale, mode):
    """Float32 source coordinates of the ``out_len`` output positions of one axis.

    ``scale`` is the float32 scale onnxruntime uses (given, or ``out / in`` from sizes).
    A scale of exactly 1 maps each position to itself (onnxruntime skips the transform).
    """
    x = np.arange(out_len, dtype=_F32)
    s, lr, lo = _F32(scale), _F32(out_len), _F32(in_len)
    if s == 1:
        return x
    half = _F32(0.5)
    if mode == "asymmetric":
        return (x / s).astype(_F32)
    if mode == "half_pixel":
        return ((x + half) / s - half).astype(_F32)
    if mode == "pytorch_half_pixel":
        return ((x + half) / s - half).astype(_F32) if out_len > 1 else np.zeros(1, _F32)
    if mode == "tf_half_pixel_for_nn":
        return ((x + half) / s).astype(_F32)
    if mode == "align_corners":
        if out_len == 1:
            return np.zeros(1, _F32)
        return ((x * (lo - _F32(1))) / (lr - _F32(1))).astype(_F32)
    raise ValueError(
        f"coordinate_transformation_mode must be one of {COORDINATE_MODES}, not {mode!r}"
    )


def _round_half_away(v):
    return np.where(v >= 0, np.floor(v + _F32(0.5)), -np.floor(-v + _F32(0.5)))


def nearest_map(out_len, in_len, scale, mode, nearest_mode):
    """Source index of every output position of one axis (``int64``, clamped to the input)."""
    if nearest_mode not in NEAREST_MODES:
        raise ValueError(f"nearest_mode must be one of {NEAREST_MODES}, not {nearest_mode!r}")
    if _F32(scale) == 1:
        return np.minimum(np.arange(out_len), in_len - 1)
    v = source_coords(out_len, in_len, scale, mode).astype(np.float64)  # exact widening
    if nearest_mode == "floor":
        i = np.floor(v)
    elif nearest_mode == "ceil":
        i = np.ceil(v)
    elif nearest_mode == "round_prefer_ceil":
        i = _round_half_away(v)  # std::round
    elif nearest_mode == "simple":
        i = np.ceil(v) if _F32(scale) < 1 else np.trunc(v)
    else:  # round_prefer_floor: a tie (int(v) + 0.5, int truncating) goes down
        tie = v == np.trunc(v) + 0.5
        i = np.where(tie, np.floor(v), _round_half_away(v))
    return np.clip(i, 0, in_len - 1).astype(np.int64)


def linear_map(out_len, in_len, scale, mode):
    """``(i1, i2, d1, d2)`` of one axis: source indices and float32 weights (``d2`` weighs
    ``i1``), as onnxruntime's ``SetupUpsampleBilinear``."""
    v = source_coords(out_len, in_len, scale, mode)
    v = np.maximum(_F32(0), np.minimum(v, _F32(in_len - 1))).astype(_F32)
    i1 = np.minimum(v.astype(np.int64), in_len - 1)
    i2 = np.minimum(i1 + 1, in_len - 1)
    d1 = np.abs(v - i1.astype(_F32)).astype(_F32)
    d2 = np.abs(v - i2.astype(_F32)).astype(_F32)
    same = i1 == i2
    d1[same] = _F32(0.5)
    d2[same] = _F32(0.5)
    return i1, i2, d1, d2


def repeat_factor(index_map, in_len):
    """``f`` when ``index_map`` repeats each of ``in_len`` positions ``f`` times, else None."""
    index_map = np.asarray(index_map)
    n = len(index_map)
    if n % in_len:
        return None
    f = n // in_len
    return f if np.array_equal(index_map, np.arange(n) // f) else None


def resize_nearest(x, rows, cols):
    """Nearest resize of an NHWC map: ``y[:, i, j] = x[:, rows[i], cols[j]]``."""
    return np.ascontiguousarray(x[:, np.asarray(rows)][:, :, np.asarray(cols)])


#: Output elements :func:`resize_linear` computes at a time: a block of output rows whose
#: float32 temporaries stay in the processor's cache (on the A53, 1 MB of L2 shared by
#: four cores); a whole 512x512 map of logits at once streams every pass through DDR.
BLOCK_ELEMENTS = 1 << 16


def resize_linear(x, ymap, xmap, requant=None):
    """Bilinear resize of an NHWC map of codes.

    Parameters
    ----------
    x : ndarray
        ``(N, H, W, C)`` uint8 or int8 codes.
    ymap, xmap : tuple
        :func:`linear_map` of the height and width axes.
    requant : tuple, optional
        ``(s_in, zp_in, s_out, zp_out)``: resize the dequantized values and quantize the
        result (onnxruntime's float Resize between DequantizeLinear and QuantizeLinear with
        different parameters). None: resize the codes themselves (truncating).

    Notes
    -----
    The output is made a block of rows at a time (:data:`BLOCK_ELEMENTS`), each element
    by the same float32 operations in the same order, so the blocking changes no bit.
    """
    y1, y2, dy1, dy2 = (np.asarray(a) for a in ymap)
    x1, x2, dx1, dx2 = (np.asarray(a) for a in xmap)
    if requant is None:
        v = x.astype(_F32)
    else:
        s_in, zp_in = _F32(requant[0]), int(requant[1])
        v = ((x.astype(np.int32) - zp_in).astype(_F32) * s_in).astype(_F32)
    n, _, _, c = x.shape
    out = np.empty((n, len(y1), len(x1), c), x.dtype)
    # Columns first: the four corner columns of every output column, once for all rows.
    c1, c2 = np.take(v, x1, axis=2), np.take(v, x2, axis=2)  # (N, H_in, W_out, C)
    wx1, wx2 = dx1.astype(_F32)[:, None], dx2.astype(_F32)[:, None]
    step = max(1, BLOCK_ELEMENTS // max(1, n * len(x1) * c))
    for r0 in range(0, len(y1), step):
        r = slice(r0, r0 + step)
        out[:, r] = _linear_rows(c1, c2, y1[r], y2[r], dy1[r], dy2[r], wx1, wx2, requant, x.dtype)
    return out


def _linear_rows(c1, c2, y1, y2, dy1, dy2, wx1, wx2, requant, dtype):
    """Output rows ``y`` of :func:`resize_linear` from the column-gathered maps."""

    def w(a, b):  # (rows, W_out, 1) float32 products a[y] * b[x]
        return a.astype(_F32)[:, None, None] * b[None]

    # One float32 rounding per operation, in the C++ expression's order:
    # d2y*d2x*X11 + d2y*d1x*X21 + d1y*d2x*X12 + d1y*d1x*X22.
    acc = c1[:, y1]
    acc *= w(dy2, wx2)
    tmp = np.empty_like(acc)
    for src, ys, wy, wx in ((c2, y1, dy2, wx1), (c1, y2, dy1, wx2), (c2, y2, dy1, wx1)):
        np.take(src, ys, axis=1, out=tmp)
        tmp *= w(wy, wx)
        acc += tmp
    info = np.iinfo(dtype)
    if requant is None:
        return np.trunc(acc, out=acc).astype(dtype)
    s_out, zp_out = _F32(requant[2]), int(requant[3])
    acc /= s_out
    np.rint(acc, out=acc)
    acc += _F32(zp_out)  # integers below 2**24: exact
    return np.clip(acc, info.min, info.max, out=acc).astype(dtype)
