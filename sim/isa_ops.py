"""Semantics of CONV, VEC and post-processing on numpy buffers, for the instruction simulator.

Each function takes the decoded instruction (``f``, a dict of fields), the machine
(:class:`bamboo.sim.isa.Machine`) and returns MACs done. Ref: docs/compute.md (CONV),
arch/isa.py docstrings (VEC, PARAM), runtime/requant.py and runtime/elementwise.py (the
numeric contract: the same functions are called here).
"""

import numpy as np
from bamboo.arch.isa import Activation, ConvMode, VecOp
from bamboo.arch.layout import unpack_param_lane
from bamboo.arch.registers import ErrorCode
from bamboo.runtime.elementwise import LEAKY_MULT, LEAKY_SHIFT, fma_f32
from bamboo.runtime.layout import from_blocked, to_blocked  # noqa: F401 (re-exported)
from bamboo.runtime.requant import Requant, requantize, rne_shift, round_significant

__all__ = ["Trap", "code", "conv", "from_blocked", "to_blocked", "vec"]


class Trap(Exception):
    """Raised by an op: ``(ErrorCode, message)``; the machine turns it into IsaSimError."""


def code(v, signed):
    """An 8-bit field value as the code it stands for (int8 when ``signed``)."""
    return v - 256 if signed and v >= 128 else v


def _need(cond, msg):
    if not cond:
        raise Trap(ErrorCode.MALFORMED_INSTRUCTION, msg)


def _codes(words, signed):
    return words.view(np.int8).astype(np.int64) if signed else words.astype(np.int64)


def _lanes(m, addr):
    """``(bias, mant, exp)`` int64 arrays of PARAM word ``addr``."""
    lanes = [unpack_param_lane(v) for v in m.param[addr].tolist()]
    return tuple(np.array(v, np.int64) for v in zip(*lanes))


def _activation(m, f, y, signed):
    """The activation stage after the requantizer: codes ``y`` (int64) -> stored bytes."""
    act = f["act"]
    zp = code(f["out_zp"], signed)
    if act in (Activation.LEAKY_SHIFT, Activation.LEAKY_ROUNDED):
        v = y - zp
        half = (1 << (LEAKY_SHIFT - 1)) if act == Activation.LEAKY_ROUNDED else 0
        y = np.where(v < 0, ((v * LEAKY_MULT + half) >> LEAKY_SHIFT) + zp, y)
    elif act == Activation.LUT:
        _need(f["lut_slot"] < m.lut.shape[0], f"lut_slot {f['lut_slot']} beyond the LUT slots")
        y = m.lut[f["lut_slot"]][(y & 0xFF).astype(np.int64)].astype(np.int64)
    else:
        _need(act == Activation.NONE, f"undefined activation {act}")
    return (y & 0xFF).astype(np.uint8)


def _requant(m, f, acc, lanes, signed):
    """acc (P, L) int64 + PARAM bias, requantized with PARAM m/e per lane, then activation."""
    _need(f["param_addr"] < m.param.shape[0], f"param_addr {f['param_addr']} beyond PARAM")
    bias, mant, e = (v[:lanes] for v in _lanes(m, f["param_addr"]))
    acc = acc + bias
    acc = ((acc + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)  # 32-bit wrap, as the hardware
    rq = Requant(
        mant, e, code(f["out_zp"], signed), code(f["qmin"], signed), code(f["qmax"], signed)
    )
    return _activation(m, f, requantize(acc, rq, axis=-1).astype(np.int64), signed)


def _check_inp(m, idx):
    _need(
        idx.size == 0 or (idx.min() >= 0 and idx.max() < m.inp.shape[0]),
        f"INP words up to {int(idx.max()) if idx.size else 0} beyond depth {m.inp.shape[0]}",
    )


def _wrap_x(m, x):
    """A packed array (dsp_packing) multiplies the low 8 bits of ``x - in_zp``, signed."""
    return ((x + 128) & 255) - 128 if m.config.dsp_packing else x


def _depthwise(m, f, oy, ox, zp, signed):
    """``(part (P, C) int64, macs)`` of a depthwise CONV (arch/isa.py, CONV DEPTHWISE).

    Channel ``c < N`` (``config.depthwise_channels``) reads lane ``c % B`` of INP block
    ``c // B`` (``inp_block_stride`` apart); kernel row ``ky`` is row group ``ky % G`` of
    WGT word ``wgt_addr + ky // G`` (``G = config.depthwise_row_groups(kernel_w)``)."""
    cfg = m.config
    B, C = cfg.rows, cfg.cols
    kh, kw, dh = f["kernel_h"], f["kernel_w"], f["dilation_h"]
    _need(kw <= B and f["dilation_w"] == 1, "depthwise needs kernel_w <= rows and dilation_w 1")
    groups = cfg.depthwise_row_groups(kw)
    _need(f["wgt_addr"] + cfg.depthwise_passes(kh, kw) <= m.wgt.shape[0], "WGT words beyond depth")
    n, step = cfg.depthwise_channels, cfg.depthwise_column_step
    nblk = -(-n // B)
    blk, ky, kx = np.arange(nblk), np.arange(kh), np.arange(kw)
    idx = (
        f["inp_addr"]
        + blk[:, None, None, None, None] * f["inp_block_stride"]
        + (oy[None, None, None] + ky[None, :, None, None, None] * dh) * f["in_w"]
        + ox[None, None, None]
        + kx[None, None, :, None, None]
    )  # (nblk, kh, kw, oh, ow)
    _check_inp(m, idx)
    x = np.moveaxis(_codes(m.inp[idx], signed), 0, -2)  # (kh, kw, oh, ow, nblk, B)
    x = _wrap_x(m, x.reshape(x.shape[:4] + (nblk * B,))[..., :n] - zp)
    rows = (ky % groups)[:, None, None] * (B // groups) + kx[None, None, :]
    w = m.wgt[
        (f["wgt_addr"] + ky // groups)[:, None, None], (np.arange(n) * step)[None, :, None], rows
    ].astype(np.int64)  # (kh, n, kw)
    P = x.shape[2] * x.shape[3]
    part = np.zeros((P, C), np.int64)
    part[:, :n] = np.einsum("yxhwc,ycx->hwc", x, w).reshape(P, n)
    return part, P * kh * kw * n


def conv(m, f):
    """One CONV instruction (docs/compute.md: dense and depthwise walkers)."""
    B, C = m.config.rows, m.config.cols
    kh, kw, sh, sw = f["kernel_h"], f["kernel_w"], f["stride_h"], f["stride_w"]
    dh, dw, oh, ow = f["dilation_h"], f["dilation_w"], f["out_h"], f["out_w"]
    _need(min(kh, kw, sh, sw, dh, dw, oh, ow, f["in_blocks"]) >= 1, "CONV with a zero size")
    _need(f["mode"] in (ConvMode.DENSE, ConvMode.DEPTHWISE), f"undefined CONV mode {f['mode']}")
    P = oh * ow
    _need(P <= m.acc.shape[0], f"{P} output pixels exceed ACC depth {m.acc.shape[0]}")
    signed = bool(f["signed"])
    zp = code(f["in_zp"], signed)
    oy = np.arange(oh)[:, None] * sh
    ox = np.arange(ow)[None, :] * sw
    depthwise = f["mode"] == ConvMode.DEPTHWISE
    if depthwise:
        part, macs = _depthwise(m, f, oy, ox, zp, signed)
    else:
        nb = f["in_blocks"]
        T = nb * kh * kw
        _need(f["wgt_addr"] + T <= m.wgt.shape[0], "WGT words beyond depth")
        blk, ky, kx = np.arange(nb), np.arange(kh), np.arange(kw)
        idx = (
            f["inp_addr"]
            + blk[:, None, None, None, None] * f["inp_block_stride"]
            + (oy[None, None, None] + ky[None, :, None, None, None] * dh) * f["in_w"]
            + ox[None, None, None]
            + kx[None, None, :, None, None] * dw
        )
        _check_inp(m, idx)
        # float64 matmul (BLAS) is exact here: |x - zp| < 2**9, |w| <= 2**7 and at most
        # 255 * 15 * 15 * 32 products, so every partial sum stays far below 2**53.
        x = _wrap_x(m, _codes(m.inp[idx.reshape(T, P).T], signed) - zp)  # (P, T, B)
        w = m.wgt[f["wgt_addr"] : f["wgt_addr"] + T]  # (T, C, B)
        part = (
            x.reshape(P, T * B).astype(np.float64)
            @ w.transpose(0, 2, 1).reshape(T * B, C).astype(np.float64)
        ).astype(np.int64)
        macs = P * T * B * C
    if f["acc_init"]:
        m.acc[:P] = part
    else:
        m.acc[:P] += part
    m.acc[:P] = ((m.acc[:P] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    if f["acc_emit"]:
        _need(f["out_addr"] + P <= m.out.shape[0], "OUT words beyond depth")
        y = _requant(m, f, m.acc[:P], C, signed)
        if depthwise or f["narrow"]:  # columns past the first N are written 0
            y[:, m.config.depthwise_channels :] = 0
        m.out[f["out_addr"] : f["out_addr"] + P] = y
        m.acc_bank = (m.acc_bank + 1) % len(m.acc_banks)
    return macs


def _f32_lane(m, addr, lane, half):
    w = int(m.param[addr, lane])
    return np.array([(w >> (32 * half)) & 0xFFFFFFFF], np.uint32).view(np.float32)[0]


def vec(m, f):
    """One VEC instruction (arch/isa.py, VEC docstring). ``out_h = 0``: no pixels."""
    B = m.config.rows
    oh, ow = f["out_h"], f["out_w"]
    if oh == 0 or ow == 0:
        return 0
    kh, kw, sh, sw = f["kernel_h"] or 1, f["kernel_w"] or 1, f["stride_h"] or 1, f["stride_w"] or 1
    signed = bool(f["signed"])
    P, vop = oh * ow, f["vop"]
    _need(f["out_addr"] + P <= m.out.shape[0], "OUT words beyond depth")
    oy = np.arange(oh)[:, None] * f["in_w"] * sh
    ox = np.arange(ow)[None, :] * sw
    qmin, qmax = code(f["qmin"], signed), code(f["qmax"], signed)

    def window(base):
        ky, kx = np.arange(kh), np.arange(kw)
        idx = (
            base
            + oy[None, None]
            + ox[None, None]
            + ky[:, None, None, None] * f["in_w"]
            + kx[None, :, None, None]
        )
        _check_inp(m, idx)
        return _codes(m.inp[idx], signed).reshape(kh * kw, P, B)

    def pixels(base):
        idx = base + (np.arange(oh)[:, None] * f["in_w"] + np.arange(ow)[None, :])
        _check_inp(m, idx)
        return _codes(m.inp[idx], signed).reshape(P, B)

    if vop == VecOp.ADD:
        _need(f["param_addr"] < m.param.shape[0], "param_addr beyond PARAM")
        ra, rb = _f32_lane(m, f["param_addr"], 0, 0), _f32_lane(m, f["param_addr"], 0, 1)
        k = _f32_lane(m, f["param_addr"], 1, 0)
        a, b = pixels(f["src_a"]), pixels(f["src_b"])
        v = fma_f32(a.astype(np.float32), ra, fma_f32(b.astype(np.float32), rb, k))
        y = _activation(m, f, np.clip(np.rint(v), qmin, qmax).astype(np.int64), signed)
    elif vop == VecOp.MAX_POOL:
        y = _activation(m, f, np.clip(window(f["src_a"]).max(0), qmin, qmax), signed)
    elif vop == VecOp.AVG_POOL:
        acc = (window(f["src_a"]) - code(f["a_zp"], signed)).sum(0)
        y = _requant(m, f, acc, B, signed)
    elif vop in (VecOp.MUL_CHANNEL, VecOp.MUL):
        _need(f["param_addr"] < m.param.shape[0], "param_addr beyond PARAM")
        _, mant, e = _lanes(m, f["param_addr"])
        mant, e = int(mant[0]), int(e[0])
        _need(-54 <= e <= 0, f"MUL exponent {e} out of range")
        if vop == VecOp.MUL:
            s = pixels(f["src_b"]) - code(f["b_zp"], signed)
        else:
            _check_inp(m, np.array([f["src_b"]]))
            s = (_codes(m.inp[f["src_b"]], signed) - code(f["b_zp"], signed))[None, :]
        p = (pixels(f["src_a"]) - code(f["a_zp"], signed)) * s
        q = round_significant(round_significant(p * mant) + (code(f["out_zp"], signed) << -e))
        y = _activation(m, f, np.clip(rne_shift(q, -e), qmin, qmax), signed)
    elif vop == VecOp.COPY:
        y = _activation(m, f, np.clip(pixels(f["src_a"]), qmin, qmax), signed)
    else:
        raise Trap(ErrorCode.MALFORMED_INSTRUCTION, f"undefined VEC op {vop}")
    m.out[f["out_addr"] : f["out_addr"] + P] = 0
    m.out[f["out_addr"] : f["out_addr"] + P, :B] = y
    return P * kh * kw * B if vop in (VecOp.MAX_POOL, VecOp.AVG_POOL) else P * B
