"""Hand-assembled VEC layers for the accelerator tests, and their references.

A :class:`VecLayer` is one quantized add, max pool, average pool or global average pool
(:data:`VEC_KINDS`) with random shapes, windows, strides, padding, zero points, scales,
clamp and activation, and its program: LOADs of PARAM (and LUT), per channel block the
INP LOADs (padding inserted by the DMA), one VEC, one STORE, then FINISH, synchronized by
tokens. The window layout is ``top_programs``'s (inputs at ``INP_OFF``, the add's second
operand at :data:`INP_B_OFF`, outputs at ``OUT_OFF``).

References (independent of the RTL and of the instruction simulator): the
``bamboo.runtime`` kernels ``elementwise.add`` (onnxruntime's x86 formula),
``pool.max_pool``, ``pool.avg_pool`` (``count_include_pad``: padding holds the input
zero point, the divisor is the window area) and ``pool.global_avg_pool``, then the
activation stage (``top_programs.activate``).
"""

from dataclasses import dataclass, field

import numpy as np
from bamboo.arch import isa
from bamboo.arch.isa import Activation, Buffer, Opcode, VecOp
from bamboo.arch.layout import param_lane
from bamboo.runtime import elementwise, pool
from bamboo.runtime.requant import Requant, pool_scale
from top_programs import (
    CONV_KINDS,
    INP_OFF,
    LUT_OFF,
    OUT_OFF,
    PARAM_OFF,
    activate,
    make_layer,
    to_blocked,
)

__all__ = ["ALL_KINDS", "VEC_KINDS", "INP_B_OFF", "VecLayer", "make_vec_layer", "random_layer"]

VEC_KINDS = ("add", "maxpool", "avgpool", "gap")
#: Every kind of random layer: the conv family (top_programs) and the VEC layers.
ALL_KINDS = CONV_KINDS + VEC_KINDS
#: Window offset of the add's second operand (inside top_programs' INP area).
INP_B_OFF = 0x4000
_VOP = {
    "add": VecOp.ADD,
    "maxpool": VecOp.MAX_POOL,
    "avgpool": VecOp.AVG_POOL,
    "gap": VecOp.AVG_POOL,
}
_f32 = np.float32


@dataclass
class VecLayer:
    kind: str
    signed: bool
    x: np.ndarray  # (H, W, c) codes
    kernel: tuple
    stride: tuple
    pads: tuple  # (top, left, bottom, right)
    quant: dict  # scales and zero points
    clamp: tuple  # (qmin, qmax) codes
    act: int
    lut: np.ndarray | None
    lut_slot: int
    want: np.ndarray  # (Ho, Wo, c) reference codes as bytes
    words: list = field(default_factory=list)
    image: dict = field(default_factory=dict)  # window offset -> bytes
    out_shape: tuple = ()

    def reference(self):
        return self.want

    def describe(self):
        q = ", ".join(
            f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.quant.items()
        )
        return (
            f"{self.kind} {'int8' if self.signed else 'uint8'} x{self.x.shape} "
            f"k{self.kernel} s{self.stride} pads{self.pads} ->{self.out_shape} {q} "
            f"clamp{list(self.clamp)} act{self.act} slot{self.lut_slot}"
        )


def random_layer(rng, cfg, kind):
    """A random layer of any kind of :data:`ALL_KINDS`: a ``Layer`` or a :class:`VecLayer`."""
    return make_layer(rng, cfg, kind) if kind in CONV_KINDS else make_vec_layer(rng, cfg, kind)


def _window(rng, kind, B, cfg):
    """``(h, w, c, kernel, stride, pads, out_h, out_w)`` within the buffers of ``cfg``."""
    c = int(rng.integers(1, 3 * B + 1))
    nb = -(-c // B)
    while True:
        h, w = (int(v) for v in rng.integers(1, 11, 2))
        if kind == "add":
            kernel, stride, pads = (1, 1), (1, 1), (0, 0, 0, 0)
            if h * w == 1:
                continue  # the runtime swaps the operands of a single value (see add)
        elif kind == "gap":
            h, w = (int(v) for v in rng.integers(1, 16, 2))
            kernel, stride, pads = (h, w), (1, 1), (0, 0, 0, 0)
        else:
            kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
            stride = tuple(int(v) for v in rng.integers(1, 4, 2))
            pads = tuple(int(rng.integers(0, kernel[i % 2])) for i in range(4))
        hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
        oh, ow = (hp - kernel[0]) // stride[0] + 1, (wp - kernel[1]) // stride[1] + 1
        operands = 2 if kind == "add" else 1
        if (
            oh >= 1
            and ow >= 1
            and nb * oh * ow <= cfg.output_buffer_depth
            and nb * operands * hp * wp <= cfg.input_buffer_depth
        ):
            return h, w, c, kernel, stride, pads, oh, ow


def make_vec_layer(rng, cfg, kind):
    """A random VEC layer of ``kind`` (one of :data:`VEC_KINDS`) and its program for ``cfg``."""
    if kind not in VEC_KINDS:
        raise ValueError(f"kind must be one of {VEC_KINDS}, not {kind!r}")
    B, C = cfg.rows, cfg.cols
    signed = bool(rng.integers(2))
    dt = np.int8 if signed else np.uint8
    lo, hi = (-128, 127) if signed else (0, 255)
    h, w, c, kernel, stride, pads, oh, ow = _window(rng, kind, B, cfg)
    x = rng.integers(lo, hi + 1, (h, w, c)).astype(dt)
    zx = int(rng.integers(lo, hi + 1))
    sx = float(_f32(rng.uniform(0.005, 0.1)))
    act = int(
        rng.choice(
            [
                Activation.NONE,
                Activation.NONE,
                Activation.LEAKY_SHIFT,
                Activation.LEAKY_ROUNDED,
                Activation.LUT,
            ]
        )
    )
    quant, params, b = {"x_zp": zx, "x_scale": sx}, None, None
    if kind == "maxpool":
        zy = zx  # a quantized MaxPool keeps its input's scale and zero point
        y = pool.max_pool(x[None], kernel, stride=stride, pads=pads)[0]
    else:
        zy = int(rng.integers(lo // 2, hi // 2 + 1))
        sy = float(_f32(sx * 2.0 ** rng.uniform(-2.5, 2.5)))
        quant.update(y_zp=zy, y_scale=sy)
    if kind == "add":
        b = rng.integers(lo, hi + 1, (h, w, c)).astype(dt)
        zb, sb = int(rng.integers(lo, hi + 1)), float(_f32(rng.uniform(0.005, 0.1)))
        quant.update(b_zp=zb, b_scale=sb)
        y = elementwise.add(x, sx, zx, b, sb, zb, sy, zy, dtype=dt)
        # The PARAM word of VEC ADD (arch/isa.py): rA | rB << 32, then K, as float32 bits.
        ra, rb = _f32(_f32(sx) / _f32(sy)), _f32(_f32(sb) / _f32(sy))
        k = _f32(_f32(zy) - elementwise.fma_f32(ra, _f32(zx), _f32(rb * _f32(zb))))
        params = np.zeros(2 * C, "<u4")
        params[:3] = np.array([ra, rb, k], _f32).view("<u4")
    elif kind in ("avgpool", "gap"):
        rq = Requant.from_scale(pool_scale(sx, sy, kernel[0] * kernel[1]), zy, dt)
        if kind == "gap":
            y = pool.global_avg_pool(x[None], zx, rq)[0]
        else:
            y = pool.avg_pool(
                x[None], zx, sx, sy, zy, kernel, stride=stride, pads=pads, count_include_pad=True
            )[0]
        params = np.array([param_lane(0, rq.m, rq.e)] * C, "<u8")
    clamp = (lo, hi)
    if act == Activation.NONE and rng.random() < 0.4:
        clamp = (max(lo, zy), int(rng.integers(max(lo, zy), hi + 1)))  # ReLU / ReLU6-like
    y = np.clip(np.asarray(y, np.int64), *clamp)
    lut = rng.integers(0, 256, 256).astype(np.uint8) if act == Activation.LUT else None
    layer = VecLayer(
        kind,
        signed,
        x,
        kernel,
        stride,
        pads,
        quant,
        clamp,
        act,
        lut,
        int(rng.integers(cfg.lut_slots)),
        activate(y, act, zy, lut),
        out_shape=(oh, ow, c),
    )
    _assemble(layer, cfg, b, params, zy)
    return layer


def _assemble(ly, cfg, b, params, out_zp):
    B = cfg.rows
    h, w, c = ly.x.shape
    oh, ow, _ = ly.out_shape
    hp, wp = h + ly.pads[0] + ly.pads[2], w + ly.pads[1] + ly.pads[3]
    nb, P = -(-c // B), oh * ow
    operands = 1 if b is None else 2
    ly.image[INP_OFF] = to_blocked(ly.x, B).tobytes()
    if b is not None:
        ly.image[INP_B_OFF] = to_blocked(b, B).tobytes()
    prog = []
    if ly.act == Activation.LUT:
        ly.image[LUT_OFF] = ly.lut.tobytes()
        prog.append(
            dict(
                op=Opcode.LOAD,
                buffer=Buffer.LUT,
                sram_addr=ly.lut_slot,
                dram_addr=LUT_OFF,
                y_size=1,
                x_size=1,
                x_stride=1,
            )
        )
    if params is not None:
        ly.image[PARAM_OFF] = params.tobytes()
        prog.append(
            dict(
                op=Opcode.LOAD,
                buffer=Buffer.PARAM,
                sram_addr=0,
                dram_addr=PARAM_OFF,
                y_size=1,
                x_size=1,
                x_stride=1,
            )
        )
    signed = int(ly.signed)
    zx = ly.quant["x_zp"]
    # Max pool pads with the lowest code (never the maximum); average pool with the input
    # zero point (adds nothing to the sum, as count_include_pad wants).
    pad_value = (-128 if signed else 0) if ly.kind == "maxpool" else zx
    pad = dict(
        pad_top=ly.pads[0],
        pad_left=ly.pads[1],
        pad_bottom=ly.pads[2],
        pad_right=ly.pads[3],
        pad_value=pad_value & 0xFF,
    )
    for blk in range(nb):
        base = blk * operands * hp * wp
        srcs = [(INP_OFF, base)] + ([(INP_B_OFF, base + hp * wp)] if b is not None else [])
        for k, (dram, sram) in enumerate(srcs):
            prog.append(
                dict(
                    op=Opcode.LOAD,
                    buffer=Buffer.INP,
                    sram_addr=sram,
                    dram_addr=dram + blk * h * w * B,
                    y_size=h,
                    x_size=w,
                    x_stride=w,
                    push_next=int(k == len(srcs) - 1),
                    **pad,
                )
            )
        prog.append(
            dict(
                op=Opcode.VEC,
                vop=_VOP[ly.kind],
                kernel_h=ly.kernel[0],
                kernel_w=ly.kernel[1],
                stride_h=ly.stride[0],
                stride_w=ly.stride[1],
                out_h=oh,
                out_w=ow,
                in_w=wp,
                src_a=base,
                src_b=base + hp * wp if b is not None else 0,
                out_addr=blk * P,
                param_addr=0,
                act=ly.act,
                lut_slot=ly.lut_slot if ly.act == Activation.LUT else 0,
                a_zp=zx & 0xFF,
                b_zp=ly.quant.get("b_zp", 0) & 0xFF,
                out_zp=out_zp & 0xFF,
                qmin=ly.clamp[0] & 0xFF,
                qmax=ly.clamp[1] & 0xFF,
                signed=signed,
                pop_prev=1,
                push_next=1,
            )
        )
        prog.append(
            dict(
                op=Opcode.STORE,
                sram_addr=blk * P,
                dram_addr=OUT_OFF + blk * P * B,
                y_size=oh,
                x_size=ow,
                x_stride=ow,
                lane=0,
                pop_prev=1,
            )
        )
    prog.append(dict(op=Opcode.FINISH, irq=1))
    ly.words = [isa.encode(p.pop("op"), **p) for p in prog]
