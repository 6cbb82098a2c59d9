"""Per-layer tiling to the on-chip buffer depths, and the steps that move and compute tiles.

Buffers are split in two slots each (INP, WGT, OUT halves; PARAM two words per slot)
so the loads of one tile overlap the compute of the previous one (emit.py sets the
tokens). A slot cache remembers what each slot holds: a tile of input blocks or a
run of weight words already on chip is not loaded again.

Dense CONV: output tiles of ``th x tw`` pixels (``th*tw`` within ACC and half of
OUT), input tiles with their halo (and zero-point padding inserted by LOAD) within
half of INP, for all input channel blocks when they fit (else in chunks, chained
with ``acc_init``/``acc_emit``); weights of ``kc`` input blocks per CONV within half
of WGT. Two loop orders are generated, spatial tiles outer (weights reloaded per
tile) and output-channel blocks outer (inputs reloaded per block), and the one
moving fewer DRAM bytes is kept.

Depthwise CONV: one instruction per group of ``depthwise_channels / rows`` channel
blocks, their input tiles ``inp_block_stride`` apart in one INP slot (a group short of
blocks still has its missing blocks' words read, inside the slot), so the tile must fit
that many times in half of INP; kernels wider than ``rows`` run as column chunks. Its
tiles are the cheapest of a few column counts by the estimate that a tile costs the
larger of its CONV and its input LOADs (the loads run a tile ahead): large stride-2 maps
are bound by the load unit writing one INP word a cycle, so fewer halo words win there.
When the LOADs bound the layer, the WGT words of several groups come in one LOAD
(:func:`wgt_batches`), since every LOAD also pays the read latency.

PARAM words: one LOAD brings a slot's two words (two output blocks or depthwise groups).

Global pool past the VEC window: depthwise CONVs with all-ones kernels, chained in ACC
over bands of the map's rows (:func:`pool_bands`). A band's pixels lie contiguous in INP,
so each CONV sums ``kh * kw`` consecutive pixels as a ``kh x kw`` window of a map viewed
``kw`` pixels wide (:func:`pool_windows`; ``in_w = kw``, one output pixel).
"""

import functools

from bamboo.arch import isa
from bamboo.arch import timing as T
from bamboo.arch.layout import PARAM_SLOT_WORDS, PARAM_SLOTS

from .emit import Op

__all__ = [
    "CONV_OVERHEAD",
    "LOAD_OVERHEAD",
    "SlotCache",
    "Slots",
    "fits_isa",
    "load_op",
    "pool_bands",
    "pool_kernel",
    "pool_shapes",
    "pool_windows",
    "spatial_tiles",
    "store_ops",
    "wgt_batches",
]

#: Cycles a LOAD costs besides its chunks, as the tiler reckons: ~200 ns of read latency
#: (ultra96 at 250 MHz, arch/timing.py BOARDS) and the load unit's fixed overheads; and a
#: CONV besides arch.timing.conv_cycles (post-processing, sim/cycles.py Calibration).
#: They only weigh schedule choices, never affect what a program computes.
LOAD_OVERHEAD = 64
CONV_OVERHEAD = 26

# Field limits (arch/isa.py): output tile sides, input tile sides (CONV.in_w; LOAD
# x_size and y_size), a LOAD's row pitch.
_OUT_MAX = min(
    isa.field(op, n).max for op in (isa.Opcode.CONV, isa.Opcode.VEC) for n in ("out_h", "out_w")
)
_IN_W_MAX = min(
    isa.field(isa.Opcode.CONV, "in_w").max,
    isa.field(isa.Opcode.LOAD, "x_size").max,
    isa.field(isa.Opcode.LOAD, "y_size").max,
)
_X_SIZE_MAX = isa.field(isa.Opcode.LOAD, "x_size").max
_Y_SIZE_MAX = isa.field(isa.Opcode.LOAD, "y_size").max
_X_STRIDE_MAX = isa.field(isa.Opcode.LOAD, "x_stride").max
_BLOCK_STRIDE_MAX = isa.field(isa.Opcode.CONV, "inp_block_stride").max


class SlotCache:
    """``n`` slots of one buffer, least recently used replaced; keys say what a slot holds."""

    def __init__(self, name, n, size, base=0):
        self.name, self.size = name, size
        self.bases = [base + k * size for k in range(n)]
        self.keys = [None] * n
        self.used = [-1] * n
        self.clock = 0

    def get(self, key):
        """``(slot index, hit)`` for ``key``; a miss takes the least recently used slot."""
        self.clock += 1
        if key is not None and key in self.keys:
            k = self.keys.index(key)
            self.used[k] = self.clock
            return k, True
        k = min(range(len(self.keys)), key=lambda i: self.used[i])
        self.keys[k], self.used[k] = key, self.clock
        return k, False

    def slot(self, k):
        return (self.name, k)


class Slots:
    """The slot caches of one program segment."""

    def __init__(self, config):
        c = config
        self.inp = SlotCache("inp", 2, c.input_buffer_depth // 2)
        self.wgt = SlotCache("wgt", 2, c.weight_buffer_depth // 2)
        self.param = SlotCache("param", PARAM_SLOTS, PARAM_SLOT_WORDS)
        self.out = SlotCache("out", 2, c.output_buffer_depth // 2)
        self.lut = SlotCache("lut", c.lut_slots, 1)


def fits_isa(th, tw, in_rows, in_cols):
    return th <= _OUT_MAX and tw <= _OUT_MAX and in_cols <= _IN_W_MAX and in_rows <= _IN_W_MAX


def spatial_tiles(ho, wo, fits, cost=None, widths=8):
    """Tiles ``(oy0, th, ox0, tw)`` covering ``ho x wo``: widest rows first, then most rows.

    ``fits(th, tw)`` says whether a tile fits the buffers; returns None if 1x1 does not.
    ``cost(tiles)``: the cheapest of the tilings into the fewest columns that fit and the
    next ``widths - 1`` column counts (each with the most rows that fit) instead.
    """
    if not fits(1, 1):
        return None
    nw = 1
    while not fits(1, -(-wo // nw)):
        nw += 1
    best = None
    for n in range(nw, min(wo, nw + widths - 1) + 1) if cost else (nw,):
        tw = -(-wo // n)
        if n > nw and -(-wo // (n - 1)) == tw:
            continue  # the same tiles
        lo, hi = 1, ho
        while lo < hi:  # largest th that fits (fits is monotone in th)
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid, tw) else (lo, mid - 1)
        nh = -(-ho // lo)
        th = -(-ho // nh)
        tiles = [
            (oy, min(th, ho - oy), ox, min(tw, wo - ox))
            for oy in range(0, ho, th)
            for ox in range(0, wo, tw)
        ]
        c = cost(tiles) if cost else 0
        if best is None or c < best[0]:
            best = (c, tiles)
    return best[1]


@functools.lru_cache(maxsize=None)
def pool_kernel(config):
    """``(kh, kw)``: the all-ones depthwise window a global pool sums per CONV, the one
    with the fewest cycles a pixel (``arch.timing.conv_cycles`` plus ``CONV_OVERHEAD``;
    the array latency between passes makes small windows slow). A search over every
    window the fields allow, so cached per configuration (a frozen dataclass)."""
    kh_max = isa.field(isa.Opcode.CONV, "kernel_h").max
    kw_max = min(config.rows, isa.field(isa.Opcode.CONV, "kernel_w").max)
    cost = {
        (kh, kw): (T.conv_cycles(config, kw, config.depthwise_passes(kh, kw)) + CONV_OVERHEAD)
        / (kh * kw)
        for kh in range(1, kh_max + 1)
        for kw in range(1, kw_max + 1)
    }
    return min(cost, key=lambda k: (cost[k], -k[0] * k[1]))


def pool_windows(config, n):
    """``[(first pixel, kh, kw)]``: the CONV windows summing ``n`` consecutive pixels:
    :func:`pool_kernel` windows, then the rest as one window of whole ``kw`` rows and one
    of a part row."""
    kh, kw = pool_kernel(config)
    out, p = [], 0
    while n - p >= kh * kw:
        out.append((p, kh, kw))
        p += kh * kw
    if n - p >= kw:
        out.append((p, (n - p) // kw, kw))
        p += (n - p) // kw * kw
    if n > p:
        out.append((p, 1, n - p))
    return out


def pool_shapes(config, h, w):
    """The window shapes ``[(kh, kw)]`` the bands of an ``h x w`` pool take (sorted): the
    all-ones kernels whose WGT words it loads (each ``depthwise_passes(kh, kw)`` words)."""
    bands = pool_bands(config, h, w) or []
    return sorted({(kh, kw) for _, r in bands for _, kh, kw in pool_windows(config, r * w)})


def pool_bands(config, h, w):
    """``[(first row, rows)]``: bands of an ``h x w`` map whose pixels, for each of a
    depthwise CONV's channel blocks, fit an INP slot together; None if one row does not.

    A band holds at most ``isa.QUEUE_DEPTH`` :func:`pool_kernel` windows (one row at
    least): the next band's LOAD follows this band's CONVs in the program, so it starts
    only once all but a queue of them have, and overlaps no more than those."""
    blocks = config.depthwise_channels // config.rows
    kh, kw = pool_kernel(config)
    most = min(
        (config.input_buffer_depth // 2) // (w * blocks),
        _BLOCK_STRIDE_MAX // w,
        _Y_SIZE_MAX,
    )
    if most < 1 or w > _X_SIZE_MAX:
        return None
    most = min(most, max(1, isa.QUEUE_DEPTH * kh * kw // w))
    n = -(-h // most)
    rows = -(-h // n)
    return [(y, min(rows, h - y)) for y in range(0, h, rows)]


def wgt_batches(n, cap):
    """``[(k, (first, size))]`` for ``k < n``: the batch of ``n`` weight runs (depthwise
    channel groups) that one LOAD brings with run ``k``. Sizes double from 1 up to ``cap``:
    the first batch, loaded before the layer's first compute, stays short, and the
    later ones, loaded while the previous tiles compute, save a LOAD per run."""
    out, first, size = [], 0, 1
    while first < n:
        size = min(size, cap, n - first)
        out += [(k, (first, size)) for k in range(first, first + size)]
        first += size
        size *= 2
    return out


def load_op(
    buffer,
    slot,
    sram_addr,
    dram_addr,
    y_size,
    x_size,
    x_stride,
    elem_bytes,
    pads=(0, 0, 0, 0),
    pad_value=0,
):
    """A LOAD op. ``pads`` = (top, left, bottom, right) around the ``y_size x x_size`` region."""
    pt, pl, pb, pr = pads
    fields = {
        "buffer": buffer,
        "sram_addr": sram_addr,
        "dram_addr": dram_addr,
        "y_size": y_size,
        "x_size": x_size,
        "x_stride": x_stride,
        "pad_top": pt,
        "pad_left": pl,
        "pad_bottom": pb,
        "pad_right": pr,
        "pad_value": pad_value & 0xFF,
    }
    return Op(
        isa.Opcode.LOAD,
        fields,
        writes=(slot,),
        nbytes=y_size * x_size * elem_bytes,
        dram=(dram_addr, y_size, x_size * elem_bytes, x_stride * elem_bytes),
    )


def store_ops(out_slot, sram_addr, tensor_base, blocks, h, w, oy0, th, ox0, tw, rows):
    """STOREs of a ``th x tw`` tile from OUT: ``blocks`` = ``[(lane, channel block)]``."""
    ops = []
    for lane, blk in blocks:
        dram = tensor_base + ((blk * h + oy0) * w + ox0) * rows
        ops.append(
            Op(
                isa.Opcode.STORE,
                {
                    "sram_addr": sram_addr,
                    "dram_addr": dram,
                    "y_size": th,
                    "x_size": tw,
                    "x_stride": w,
                    "lane": lane,
                },
                reads=(out_slot,),
                nbytes=th * tw * rows,
                dram=(dram, th, tw * rows, w * rows),
            )
        )
    return ops


def input_tile_loads(
    slots_inp, slot, base, tensor_base, blocks, h, w, iy0, in_rows, ix0, in_cols, rows, pad_value
):
    """LOADs of an input tile (rows ``iy0..``, cols ``ix0..``, may start outside the image)
    for channel ``blocks``, block ``k`` at INP word ``base + k * in_rows * in_cols``.

    ``tensor_base`` None: ``blocks`` are ``(tensor base, block)`` pairs (blocks gathered
    from several tensors of the same height and width)."""
    srcs = list(blocks) if tensor_base is None else [(tensor_base, b) for b in blocks]
    y_lo, y_hi = max(iy0, 0), min(iy0 + in_rows, h)
    x_lo, x_hi = max(ix0, 0), min(ix0 + in_cols, w)
    assert y_hi > y_lo and x_hi > x_lo, "a tile entirely in the padding"
    pads = (y_lo - iy0, x_lo - ix0, iy0 + in_rows - y_hi, ix0 + in_cols - x_hi)
    whole = not any(pads) and in_cols == w and in_rows * w <= _X_SIZE_MAX and h * w <= _X_STRIDE_MAX
    ops, k = [], 0
    while k < len(srcs):
        tb, blk = srcs[k]
        n = 1
        while whole and k + n < len(srcs) and n < _Y_SIZE_MAX and srcs[k + n] == (tb, blk + n):
            n += 1
        if n > 1:
            # Whole rows of consecutive blocks: one 2-D transfer, a block per DRAM "row".
            ops.append(
                load_op(
                    isa.Buffer.INP,
                    slots_inp.slot(slot),
                    base + k * in_rows * in_cols,
                    tb + (blk * h + y_lo) * w * rows,
                    n,
                    in_rows * w,
                    h * w,
                    rows,
                    (0, 0, 0, 0),
                    pad_value,
                )
            )
        else:
            dram = tb + ((blk * h + y_lo) * w + x_lo) * rows
            ops.append(
                load_op(
                    isa.Buffer.INP,
                    slots_inp.slot(slot),
                    base + k * in_rows * in_cols,
                    dram,
                    y_hi - y_lo,
                    x_hi - x_lo,
                    w,
                    rows,
                    pads,
                    pad_value,
                )
            )
        k += n
    return ops
