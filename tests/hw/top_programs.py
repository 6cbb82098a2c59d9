"""Hand-assembled Bamboo programs for the accelerator tests, and their references.

A :class:`Layer` is one quantized convolution (:data:`CONV_KINDS`: 3x3 dense, dense
with any kernel from 1x1 to 5x5, strides 1 to 3 and dilation 1 or 2 per axis, pointwise,
depthwise, fully connected as a 1x1 conv over one pixel) with random shapes, padding,
zero points, scales, activation (none, ReLU clamp, LeakyReLU shift floored or rounded,
LUT in a random slot) and its program: LOADs of INP blocks, WGT, PARAM (and LUT), one
CONV per output block, one STORE per output block, FINISH, synchronized by tokens. With
``reuse`` the output blocks share the WGT/PARAM/OUT words, so the program needs
the compute -> load and store -> compute tokens as well. VEC layers (add, pools) are in
``top_vec_programs.py``.

References (independent of the RTL): ``bamboo.runtime`` kernels (conv2d_acc,
fully_connected_acc, requantize, the activation formulas) and the instruction
simulator ``bamboo.sim.isa``.
"""

from dataclasses import dataclass, field

import numpy as np
from bamboo.arch import isa
from bamboo.arch.isa import Activation, Buffer, ConvMode, Opcode
from bamboo.arch.layout import param_lane
from bamboo.runtime.conv import conv2d_acc, fully_connected_acc
from bamboo.runtime.requant import Requant, requantize

__all__ = [
    "INSN_BASE",
    "WINDOW_BASE",
    "WINDOW_SIZE",
    "MEM_SIZE",
    "OUT_OFF",
    "KINDS",
    "CONV_KINDS",
    "Layer",
    "activate",
    "make_layer",
    "reference_codes",
    "to_blocked",
    "from_blocked",
    "window_image",
    "output_codes",
    "COMPILED_GRAPHS",
    "VEC_GRAPHS",
    "compiled_case",
]

MEM_SIZE = 1 << 19
INSN_BASE = 0x1000
WINDOW_BASE = 0x10000
WINDOW_SIZE = 0x30000
INP_OFF, WGT_OFF, PARAM_OFF, LUT_OFF, OUT_OFF = 0x0, 0x8000, 0xC000, 0xD000, 0x10000
#: What :func:`make_layer` draws from when no kind is given (the fault tests rely on
#: every one of them reading more than one INP word per CONV).
KINDS = ("conv3x3", "pointwise", "depthwise")
CONV_KINDS = ("conv3x3", "conv", "pointwise", "depthwise", "fc")


def to_blocked(x, rows):
    """(H, W, C) codes -> channel-blocked bytes [C/B][H][W][B] (arch/layout.py)."""
    h, w, c = x.shape
    nb = -(-c // rows)
    full = np.zeros((h, w, nb * rows), np.uint8)
    full[..., :c] = x.view(np.uint8)
    return np.ascontiguousarray(full.reshape(h, w, nb, rows).transpose(2, 0, 1, 3)).reshape(-1)


def from_blocked(buf, h, w, c, rows):
    nb = -(-c // rows)
    x = np.asarray(buf[: nb * h * w * rows]).reshape(nb, h, w, rows).transpose(1, 2, 0, 3)
    return np.ascontiguousarray(x.reshape(h, w, nb * rows)[..., :c])


@dataclass
class Layer:
    kind: str
    signed: bool
    x: np.ndarray  # (H, W, cin) codes
    w: np.ndarray  # OHWI int8
    bias: np.ndarray
    rq: Requant
    in_zp: int
    stride: tuple
    dilation: tuple
    pads: tuple  # (top, left, bottom, right)
    act: int
    lut: np.ndarray | None
    reuse: bool
    words: list = field(default_factory=list)
    image: dict = field(default_factory=dict)  # window offset -> bytes
    out_shape: tuple = ()
    lut_slot: int = 1

    def reference(self):
        return reference_codes(self)

    def describe(self):
        oh, ow, co = self.out_shape
        return (
            f"{self.kind} {'int8' if self.signed else 'uint8'} x{self.x.shape} "
            f"k{self.w.shape[1:3]} ->{(oh, ow, co)} s{self.stride} d{self.dilation} "
            f"pads{self.pads} in_zp {self.in_zp} out_zp {self.rq.zp} "
            f"clamp[{self.rq.qmin}, {self.rq.qmax}] act{self.act} slot{self.lut_slot} "
            f"reuse{int(self.reuse)}"
        )


def _code(v):
    return int(v) & 0xFF


def activate(y, act, zp, lut):
    """The activation stage (arch/isa.py ``post``) on requantized codes ``y`` -> bytes."""
    y = np.asarray(y, np.int64)
    if act in (Activation.LEAKY_SHIFT, Activation.LEAKY_ROUNDED):
        v = y - zp
        half = 64 if act == Activation.LEAKY_ROUNDED else 0
        y = np.where(v < 0, zp + ((v * 13 + half) >> 7), y)
    elif act == Activation.LUT:
        y = lut[(y & 0xFF)].astype(np.int64)
    return (y & 0xFF).astype(np.uint8)


def reference_codes(layer):
    """The layer through the runtime kernels: (Ho, Wo, cout) codes as uint8 bytes."""
    if layer.kind == "fc":
        cout, cin = layer.w.shape[0], layer.x.shape[2]
        acc = fully_connected_acc(
            layer.x.reshape(1, cin), layer.in_zp, layer.w.reshape(cout, cin), layer.bias
        ).reshape(1, 1, cout)
    else:
        groups = layer.x.shape[2] if layer.kind == "depthwise" else 1
        acc = conv2d_acc(
            layer.x[None],
            layer.in_zp,
            layer.w,
            layer.bias,
            stride=layer.stride,
            dilation=layer.dilation,
            pads=layer.pads,
            groups=groups,
        )[0]
    acc = ((acc + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    y = requantize(acc, layer.rq, axis=-1)
    return activate(y, layer.act, layer.rq.zp, layer.lut)


def _geometry(rng, kind, B):
    """``(kernel, stride, dilation, pads)`` of a random layer of ``kind``."""
    if kind == "fc":
        return (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)
    if kind == "conv":
        k = tuple(int(v) for v in rng.integers(1, 6, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dil = tuple(int(v) for v in np.where(rng.random(2) < 0.3, 2, 1))
    elif kind == "depthwise":
        k = int(rng.integers(1, 6)), int(rng.integers(1, min(B, 5) + 1))
        stride = tuple(int(v) for v in rng.integers(1, 3, 2))
        dil = (2 if rng.random() < 0.25 else 1, 1)
    else:
        k = (3, 3) if kind == "conv3x3" else (1, 1)
        stride = (int(rng.integers(1, 3)),) * 2
        dil = (2, 2) if kind == "conv3x3" and rng.random() < 0.2 else (1, 1)
    if kind == "conv":
        pads = tuple(int(rng.integers(0, min(k[i % 2], 3))) for i in range(4))
    else:
        pads = tuple(int(v) for v in rng.integers(0, 2, 4)) if k[0] > 1 else (0, 0, 0, 0)
    return k, stride, dil, pads


def make_layer(rng, cfg, kind=None, reuse=None):
    """A random layer of ``kind`` (one of :data:`CONV_KINDS`, default drawn from
    :data:`KINDS`) and its program for ``cfg``; ``rng`` is a numpy Generator."""
    B, C = cfg.rows, cfg.cols
    kind = kind or KINDS[rng.integers(len(KINDS))]
    if kind not in CONV_KINDS:
        raise ValueError(f"kind must be one of {CONV_KINDS}, not {kind!r}")
    signed = bool(rng.integers(2))
    dt = np.int8 if signed else np.uint8
    lo, hi = (-128, 127) if signed else (0, 255)
    if kind == "depthwise":
        cin = cout = int(rng.integers(1, 2 * min(B, C) + 1))
    elif kind == "fc":
        cin, cout = int(rng.integers(1, 12 * B + 1)), int(rng.integers(1, 4 * C + 1))
    else:
        cin = int(rng.integers(1, 2 * B + 1))
        cout = int(rng.integers(1, 2 * C + 1))
    (kh, kw), stride, dil, pads = _geometry(rng, kind, B)
    while True:
        h, w = (1, 1) if kind == "fc" else (int(v) for v in rng.integers(2, 10, 2))
        hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
        oh = (hp - dil[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (wp - dil[1] * (kw - 1) - 1) // stride[1] + 1
        if oh >= 1 and ow >= 1 and oh * ow <= min(cfg.acc_buffer_depth, 64):
            break
    x = rng.integers(lo, hi + 1, (h, w, cin)).astype(dt)
    wshape = (cout, kh, kw, 1 if kind == "depthwise" else cin)
    wgt = rng.integers(-127, 128, wshape).astype(np.int8)
    in_zp = int(rng.integers(lo, hi + 1))
    bias = rng.integers(-3000, 3000, cout).astype(np.int64)
    k = kh * kw * (1 if kind == "depthwise" else cin)
    scale = (
        rng.uniform(0.3, 3.0, cout) * 2.0 ** rng.uniform(-2, 2) / (128 * np.sqrt(k) * 40)
    ).astype(np.float32)
    out_zp = int(rng.integers(lo // 2, hi // 2 + 1))
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
    # ReLU (zero point up) or a ReLU6-like band.
    clamp = (
        (out_zp, int(rng.choice([hi, rng.integers(out_zp, hi + 1)])))
        if act == Activation.NONE and rng.random() < 0.3
        else None
    )
    rq = Requant.from_scale(scale, out_zp, dt, clamp=clamp)
    lut = rng.integers(0, 256, 256).astype(np.uint8) if act == Activation.LUT else None
    reuse = bool(rng.integers(2)) if reuse is None else reuse
    layer = Layer(
        kind,
        signed,
        x,
        wgt,
        bias,
        rq,
        in_zp,
        stride,
        dil,
        pads,
        act,
        lut,
        reuse,
        out_shape=(oh, ow, cout),
        lut_slot=int(rng.integers(cfg.lut_slots)),
    )
    _assemble(layer, cfg, h, w, hp, wp, oh, ow, cin, cout, kh, kw)
    return layer


def _assemble(ly, cfg, h, w, hp, wp, oh, ow, cin, cout, kh, kw):
    B, C = cfg.rows, cfg.cols
    dw = ly.kind == "depthwise"
    nb = -(-cin // B)
    per = cfg.depthwise_channels if dw else C  # output channels per CONV
    nob = -(-cout // per)
    # Depthwise: per // B channel blocks a CONV; kernel rows on row groups (arch/isa.py).
    groups = cfg.depthwise_row_groups(kw)
    rg, step = B // groups, cfg.depthwise_column_step
    P = oh * ow
    blk_words = hp * wp
    ly.image[INP_OFF] = to_blocked(ly.x, B).tobytes()
    rng_slot = ly.lut_slot if ly.act == Activation.LUT else 0
    if ly.act == Activation.LUT:
        ly.image[LUT_OFF] = ly.lut.tobytes()
    common = dict(
        signed=int(ly.signed),
        in_zp=_code(ly.in_zp),
        out_zp=_code(ly.rq.zp),
        qmin=_code(ly.rq.qmin),
        qmax=_code(ly.rq.qmax),
        act=ly.act,
        lut_slot=rng_slot,
        stride_h=ly.stride[0],
        stride_w=ly.stride[1],
        dilation_h=ly.dilation[0],
        dilation_w=ly.dilation[1],
        kernel_h=kh,
        kernel_w=kw,
        out_h=oh,
        out_w=ow,
        in_w=wp,
        acc_init=1,
        acc_emit=1,
    )
    wgt_blob, param_blob = bytearray(), bytearray()
    taps = cfg.depthwise_passes(kh, kw) if dw else nb * kh * kw
    for ob in range(nob):
        words = np.zeros((taps, C, B), np.int8)
        lanes = []
        for c in range(C):
            o = ob * per + c
            real = c < per and o < cout
            lanes.append(
                param_lane(ly.bias[o], ly.rq.m[o], ly.rq.e[o])
                if real
                else param_lane(0, 1 << 23, -30)
            )
            if not real:
                continue
            if dw:
                for ky in range(kh):
                    q, g = divmod(ky, groups)
                    words[q, c * step, g * rg : g * rg + kw] = ly.w[o, ky, :, 0]
            else:
                for blk in range(nb):
                    r = min(B, cin - blk * B)
                    words[blk * kh * kw : (blk + 1) * kh * kw, c, :r] = ly.w[
                        o, :, :, blk * B : blk * B + r
                    ].reshape(kh * kw, r)
        wgt_blob += words.tobytes()
        param_blob += np.array(lanes, "<u8").tobytes()
    ly.image[WGT_OFF] = bytes(wgt_blob)
    ly.image[PARAM_OFF] = bytes(param_blob)

    def load(buf, sram, dram, y, x, stride, **kw_):
        return dict(
            op=Opcode.LOAD,
            buffer=buf,
            sram_addr=sram,
            dram_addr=dram,
            y_size=y,
            x_size=x,
            x_stride=stride,
            **kw_,
        )

    pad = dict(
        pad_top=ly.pads[0],
        pad_left=ly.pads[1],
        pad_bottom=ly.pads[2],
        pad_right=ly.pads[3],
        pad_value=_code(ly.in_zp),
    )
    prog = []
    if ly.act == Activation.LUT:
        prog.append(load(Buffer.LUT, rng_slot, LUT_OFF, 1, 1, 1))
    for blk in range(nb):
        prog.append(load(Buffer.INP, blk * blk_words, INP_OFF + blk * h * w * B, h, w, w, **pad))
    wgt_bytes, param_bytes = B * C, C * 8
    for ob in range(nob):
        wa = 0 if ly.reuse else ob * taps
        pa = 0 if ly.reuse else ob
        oa = 0 if ly.reuse else ob * P
        first = dict(pop_next=1) if ly.reuse and ob else {}
        prog.append(load(Buffer.WGT, wa, WGT_OFF + ob * taps * wgt_bytes, 1, taps, taps, **first))
        prog.append(load(Buffer.PARAM, pa, PARAM_OFF + ob * param_bytes, 1, 1, 1, push_next=1))
        conv = dict(
            op=Opcode.CONV,
            mode=ConvMode.DEPTHWISE if dw else ConvMode.DENSE,
            in_blocks=1 if dw else nb,
            inp_addr=ob * (per // B) * blk_words if dw else 0,
            inp_block_stride=blk_words,
            wgt_addr=wa,
            param_addr=pa,
            out_addr=oa,
            pop_prev=1,
            push_next=1,
            **common,
        )
        if ly.reuse and ob + 1 < nob:
            conv["push_prev"] = 1
        if ly.reuse and ob:
            conv["pop_next"] = 1
        prog.append(conv)
        lanes = per // B
        for lane in range(lanes):
            st = dict(
                op=Opcode.STORE,
                sram_addr=oa,
                dram_addr=OUT_OFF + (ob * lanes + lane) * P * B,
                y_size=oh,
                x_size=ow,
                x_stride=ow,
                lane=lane,
                pop_prev=int(lane == 0),
            )
            if ly.reuse and ob + 1 < nob and lane == lanes - 1:
                st["push_prev"] = 1
            prog.append(st)
    prog.append(dict(op=Opcode.FINISH, irq=1))
    ly.words = [isa.encode(p.pop("op"), **p) for p in prog]


def window_image(layer, fill):
    """The DMA window's bytes before the run: ``fill`` with the layer's data written in."""
    win = fill.copy()
    for off, blob in layer.image.items():
        win[off : off + len(blob)] = np.frombuffer(blob, np.uint8)
    return win


def output_codes(layer, window, rows):
    """The layer's output (Ho, Wo, cout) read back from a window image."""
    oh, ow, co = layer.out_shape
    return from_blocked(window[OUT_OFF:], oh, ow, co, rows)


# Graphs compiled by the back end (compiler/backend) -------------------------------------

#: Single-layer graphs of tests/isa_graphs.py: (builder, arguments). Convolutions (3x3,
#: pointwise, depthwise, strided with LUT, dilated) and the VEC ops the back end emits.
COMPILED_GRAPHS = (
    ("conv_graph", dict(h=8, w=8, cin=8, cout=8, k=3)),
    ("conv_graph", dict(h=6, w=7, cin=5, cout=6, k=1, pad=0)),
    ("conv_graph", dict(h=8, w=8, cin=8, cout=8, k=3, group=8)),
    ("conv_graph", dict(h=9, w=9, cin=4, cout=12, k=3, stride=2, lut=True, signed=True)),
    (
        "conv_graph",
        dict(h=7, w=5, cin=9, cout=5, k=3, dilation=2, pad=2, signed=True, clamp=(128, 255)),
    ),
    # Depthwise with a partial last channel group, strided; a 2-wide kernel fits the row
    # groups of a 4-row array.
    ("conv_graph", dict(h=7, w=9, cin=11, cout=11, k=3, stride=2, group=11, signed=True)),
    ("conv_graph", dict(h=6, w=7, cin=6, cout=6, k=2, pad=1, group=6)),
    # Depthwise dilated by 2 in W: the back end's zero-stuffed 3x5 kernel, in column chunks.
    ("conv_graph", dict(h=7, w=9, cin=6, cout=6, k=3, dilation=2, pad=2, group=6)),
    # A global pool past the VEC window: all-ones depthwise CONVs over two bands of rows,
    # chained in ACC across the bands' LOADs.
    ("gap_graph", dict(h=20, w=30, c=6)),
)
VEC_GRAPHS = (
    ("add_graph", dict(h=6, w=5, c=7)),
    ("add_graph", dict(h=3, w=4, c=5, signed=True)),
    ("maxpool_graph", dict(h=9, w=8, c=6)),
    ("gap_graph", dict(h=5, w=6, c=7)),
    ("mul_graph", dict(h=4, w=5, c=6)),
    ("mul_graph", dict(h=4, w=5, c=6, elementwise=True)),
    # nearest upsample as data movement: interleaving LOAD pads, 1 x fw MAX_POOL, fh STOREs
    ("resize_graph", dict(h=4, w=5, c=6, fh=2, fw=2)),
    ("resize_graph", dict(h=3, w=4, c=5, fh=1, fw=3, signed=True)),
)


def compiled_case(cfg, builder, graph_args, seed=0):
    """A graph of ``builder(**graph_args)`` (tests/isa_graphs.py) through the compiler back
    end, as a DDR window and its expectations.

    Returns a dict: ``window`` (bytes of the artifact's footprint: weights, program,
    inputs), ``program`` (offset), ``steps`` (``(insn_start, insn_count)`` of the fabric
    segments), ``expected`` (the window after the instruction simulator ran them) and
    ``outputs`` (``(offset, h, w, c, reference codes (h, w, c) as uint8)`` from the
    compiler's reference executor, i.e. the runtime kernels).
    """
    import isa_graphs
    from bamboo.arch.artifact import read_artifact
    from bamboo.compiler import executor, ir
    from bamboo.compiler.backend import artifact_writer, lower_graph
    from bamboo.compiler.partition import partition
    from bamboo.sim.isa import Machine

    g = partition(
        getattr(isa_graphs, builder)(seed=seed, **graph_args)
        if "seed" in getattr(isa_graphs, builder).__code__.co_varnames
        else getattr(isa_graphs, builder)(**graph_args)
    )
    feeds = isa_graphs.random_feeds(g, seed)
    ref = executor.run(g, feeds, raw=True)
    compiled = lower_graph(g, cfg, column_taps=False)  # the graph's own conv on the fabric
    meta = read_artifact(artifact_writer.build(compiled), config_id=cfg.config_id).metadata
    regions, tensors = meta.memory.regions, meta.tensors
    window = np.zeros(meta.memory.footprint, np.uint8)
    w0, p0 = regions["weights"][0], regions["program"][0]
    window[w0 : w0 + len(compiled.weights)] = np.frombuffer(compiled.weights, np.uint8)
    window[p0 : p0 + len(compiled.program)] = np.frombuffer(compiled.program, np.uint8)
    for spec in compiled.graph.inputs:
        t = compiled.graph.tensors[spec.tensor]
        x = np.asarray(feeds[spec.onnx_name]).astype(t.q.np_dtype)
        x = x.transpose(0, 2, 3, 1)[0] if t.layout == ir.NHWC else x.reshape(1, 1, -1)
        blob = to_blocked(np.ascontiguousarray(x), cfg.rows)
        off = tensors[spec.tensor].offset
        window[off : off + blob.size] = blob
    steps = [(s.insn_start, s.insn_count) for s in meta.steps if s.on_fabric]
    assert len(steps) == len(meta.steps), "a CPU step in a single-layer graph"
    machine = Machine(cfg, window.copy())
    for start, count in steps:
        machine.run(compiled.words, start, count)
    outputs = []
    for spec, y in zip(compiled.graph.outputs, ref, strict=True):
        d = tensors[spec.tensor]
        h, w, c = d.canon
        want = np.ascontiguousarray(np.asarray(y).transpose(0, 2, 3, 1)[0]).view(np.uint8)
        got = from_blocked(machine.dram[d.offset :], h, w, c, cfg.rows)
        assert np.array_equal(got, want), "instruction simulator differs from the executor"
        outputs.append((d.offset, h, w, c, want))
    return {
        "window": window,
        "program": p0,
        "steps": steps,
        "expected": machine.dram,
        "outputs": outputs,
        "args": f"{builder}({graph_args})",
    }
