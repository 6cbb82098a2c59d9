"""QuantizeLinear and DequantizeLinear, bit-exact with onnxruntime.

* ``quantize``: ``q = sat(RNE(f32(x / s)) + zp)``. A float32 *division*, not a
  multiply by ``1/s``: the reciprocal form rounds twice and is off by one on
  about 5 % of inputs that sit near a rounding tie.
* ``dequantize``: ``x = f32(f32(q - zp) * s)``, as DequantizeLinear's float32 kernel.

Ref: docs/numerics.md ("QuantizeLinear"), measured against onnxruntime 1.32;
ONNX QuantizeLinear-21 / DequantizeLinear-21. These run on the host at the edge
of the graph (the camera frame in, the logits out); the fabric sees codes only.
"""

import numpy as np

from .errors import QuantizationError
from .requant import qrange

__all__ = ["quantize", "dequantize"]


def _params(scale, zp, ndim, axis):
    """Scale and zero point as float32/int64, reshaped to broadcast along ``axis`` if 1-D."""
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.asarray(zp, dtype=np.int64)
    if scale.ndim > 1 or zp.ndim > 1:
        raise QuantizationError(f"scale and zero point must be scalars or 1-D, not {scale.shape}")
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise QuantizationError(f"scale must be positive and finite, not {scale!r}")
    if scale.ndim == 1 or zp.ndim == 1:
        shape = [1] * ndim
        shape[axis] = -1
        scale = scale.reshape(shape) if scale.ndim == 1 else scale
        zp = zp.reshape(shape) if zp.ndim == 1 else zp
    return scale, zp


def quantize(x, scale, zp, dtype=np.uint8, axis=1):
    """Quantize float values to 8-bit codes: ``sat(RNE(f32(x / scale)) + zp)``.

    Parameters
    ----------
    x : array_like
        Values, converted to float32 first (as the ONNX input is float32).
    scale : float or 1-D array
        Positive float32 scale; 1-D means per-axis along ``axis``.
    zp : int or 1-D array
        Zero point(s), within the range of ``dtype``.
    dtype : np.uint8 or np.int8
        Code type.
    axis : int
        Axis of per-axis parameters (ONNX default 1, the NCHW channel; pass -1 for NHWC).

    Returns
    -------
    np.ndarray of ``dtype``
    """
    qmin, qmax = qrange(dtype)
    x = np.asarray(x, dtype=np.float32)
    scale, zp = _params(scale, zp, x.ndim, axis)
    if np.any(zp < qmin) or np.any(zp > qmax):
        raise QuantizationError(
            f"zero point {zp.ravel().tolist()} is outside the {np.dtype(dtype)} range"
        )
    # np.divide on two float32 arrays is one correctly rounded float32 division,
    # and np.rint rounds half to even: together RNE(f32(x / s)).
    with np.errstate(over="ignore", invalid="ignore"):
        # np.asarray: on 0-d input numpy returns a scalar, which cannot be an ``out=``.
        q = np.asarray(np.divide(x, scale, dtype=np.float32))
    np.rint(q, out=q)
    # The zero point is added in float32, exactly below 2**24; a quotient beyond that
    # saturates either way. Clip in float before the integer cast: huge quotients would
    # overflow it.
    q += zp.astype(np.float32)
    np.maximum(q, np.float32(qmin), out=q)
    np.minimum(q, np.float32(qmax), out=q)
    with np.errstate(invalid="ignore"):  # NaN: no warning on stderr
        return q.astype(dtype)


def dequantize(codes, scale, zp, axis=1):
    """Dequantize 8-bit (or int32) codes: ``f32(f32(q - zp) * scale)``.

    ``q - zp`` is exact in float32 for 8-bit codes and for int32 codes up to
    ``2**24``, so the single rounding is the multiply, as in onnxruntime.
    ``scale``/``zp`` are scalars or 1-D per-axis along ``axis``.

    Returns
    -------
    np.ndarray of float32
    """
    codes = np.asarray(codes)
    scale, zp = _params(scale, zp, codes.ndim, axis)
    diff = (codes.astype(np.int64) - zp).astype(np.float32)
    return np.multiply(diff, scale, dtype=np.float32)
