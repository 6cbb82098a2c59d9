"""Lowering of fabric nodes to steps of LOAD / CONV / VEC / STORE (tiling.py, emit.py).

One function per op. Every emitted field is checked against the buffer depths by
:func:`check_bounds` (tests call it on every instruction of every program).
"""

import copy

from bamboo.arch import isa
from bamboo.arch import timing as T
from bamboo.arch.layout import act_blocks, elem_bytes

from .check import canon
from .emit import Op, Step, assign_tokens, finish_step
from .tiling import (
    CONV_OVERHEAD,
    LOAD_OVERHEAD,
    Slots,
    fits_isa,
    input_tile_loads,
    load_op,
    pool_bands,
    pool_windows,
    spatial_tiles,
    store_ops,
    wgt_batches,
)

__all__ = ["Lowerer"]

# Field limits (arch/isa.py): input channel blocks one CONV accumulates; INP words between
# them (a tile's words per block).
_IN_BLOCKS_MAX = isa.field(isa.Opcode.CONV, "in_blocks").max
_BLOCK_STRIDE_MAX = isa.field(isa.Opcode.CONV, "inp_block_stride").max


def _codes(v):
    return int(v) & 0xFF


class Lowerer:
    """Lowers the fabric segments of ``graph`` with tensor addresses from ``plan``."""

    def __init__(self, graph, config, plan, winfo, weights_base=0):
        self.g, self.c, self.plan, self.w = graph, config, plan, winfo
        self.wbase = weights_base
        self.slots = Slots(config)

    # helpers ---------------------------------------------------------------------------
    def _t(self, name):
        return self.g.tensors[name], canon(self.g.tensors[name]), self.plan.offset(name)

    def _cached(self, step, cache, buffer, key, dram, words=1):
        """``(base, slot)`` of ``key`` in ``cache`` (a slot cache of ``buffer``); on a miss,
        one LOAD of ``words`` consecutive words from ``dram``, an offset into the weights
        region (WGT, PARAM and LUT words: what no STORE writes)."""
        k, hit = cache.get(key)
        base = cache.bases[k]
        if not hit:
            step.loads.append(
                load_op(
                    buffer,
                    cache.slot(k),
                    base,
                    self.wbase + dram,
                    1,
                    words,
                    words,
                    elem_bytes(self.c, buffer),
                )
            )
        return base, cache.slot(k)

    def _param(self, step, key, dram, words=1):
        """PARAM slot base of ``key``, loading ``words`` consecutive words from ``dram``
        on a miss (at most a slot: several output blocks' words in one LOAD)."""
        assert words <= self.slots.param.size
        return self._cached(step, self.slots.param, isa.Buffer.PARAM, key, dram, words)

    def _load_lut(self, step, dram):
        """``(LUT slot, slot tag)`` of the table at ``dram`` (a LUT slot's base is its index)."""
        return self._cached(step, self.slots.lut, isa.Buffer.LUT, ("lut", dram), dram)

    def _post(self, node, step, reads, lut=False):
        """act / lut_slot / qmin / qmax / signed / out_zp fields of ``node``'s post-processing.

        ``lut``: a LUT offset overriding the node's own (False: the node's)."""
        tout = self.g.tensors[node.outputs[0]]
        rq = node.attrs.get("rq") if node.op in ("conv", "fc", "gap") else None
        # The requantizer's zero point: a fused LUT may map to another quantization.
        zp, qmin, qmax = (
            (rq.zp, rq.qmin, rq.qmax)
            if rq is not None
            else (tout.q.zp, *self.w[node.name]["qrange"])
        )
        f = {
            "out_zp": _codes(zp),
            "qmin": _codes(qmin),
            "qmax": _codes(qmax),
            "signed": int(tout.q.dtype == "int8"),
        }
        lut = self.w[node.name].get("lut") if lut is False else lut
        if lut is not None:
            slot, sl = self._load_lut(step, lut)
            f.update(act=isa.Activation.LUT, lut_slot=slot)
            reads.append(sl)
        return f

    # segments --------------------------------------------------------------------------
    def segment(self, nodes, progress=None):
        """Steps of one fabric segment (a list of nodes), tokens assigned, ending in FINISH.

        ``progress(k, node name)`` is called before node ``k`` (1-based) is lowered."""
        self.slots = Slots(self.c)
        steps = []
        for k, node in enumerate(nodes):
            if progress:
                progress(k + 1, node.name)
            if node.op == "view":
                continue
            steps += getattr(self, "_" + node.op)(node)
        steps.append(finish_step())
        return assign_tokens(steps)

    # dense and depthwise convolution ----------------------------------------------------
    def _dw_blocks(self):
        """Channel blocks of ``rows`` one depthwise CONV computes (``depthwise_channels``)."""
        return self.c.depthwise_channels // self.c.rows

    def _fc(self, node):
        return self._conv(node)

    def _conv(self, node):
        a, c = node.attrs, self.c
        B = c.rows
        tin, (h, w, cin), tbase = self._t(node.inputs[0])
        srcs = self.w[node.name].get("srcs")
        if srcs is not None:  # a channel move: the inputs' blocks stacked
            cin = len(srcs) * c.rows
            srcs = [(self.plan.offset(t), b) for t, b in srcs]
        _, (ho, wo, cout), obase = self._t(node.outputs[0])
        kh, kw = (a["w"].shape[1:3]) if node.op == "conv" else (1, 1)
        (sh, sw), (dh, dw) = a.get("stride", (1, 1)), a.get("dilation", (1, 1))
        pt, pl = a.get("pads", (0, 0, 0, 0))[:2]
        dw_mode = self.w[node.name]["depthwise"]
        geo = {
            "h": h,
            "w": w,
            "kh": kh,
            "kw": kw,
            "sh": sh,
            "sw": sw,
            "dh": dh,
            "dw": dw,
            "pt": pt,
            "pl": pl,
            "tbase": tbase,
            "obase": obase,
            "ho": ho,
            "wo": wo,
            "tin": tin,
            "cin": cin,
            "cout": cout,
            "srcs": srcs,
            "node": node.name,
        }
        ib = act_blocks(cin, B)
        taps = kh * kw
        kc = 1 if dw_mode else min(ib, _IN_BLOCKS_MAX, (c.weight_buffer_depth // 2) // taps)
        pmax = min(c.acc_buffer_depth, c.output_buffer_depth // 2)

        def ext(th, tw):
            return (th - 1) * sh + (kh - 1) * dh + 1, (tw - 1) * sw + (kw - 1) * dw + 1

        def fits(kres):
            def f(th, tw):
                r, q = ext(th, tw)
                return (
                    th * tw <= pmax
                    and fits_isa(th, tw, r, q)
                    and r * q * kres <= c.input_buffer_depth // 2
                    and r * q <= _BLOCK_STRIDE_MAX
                )

            return f

        resident = not dw_mode
        # A depthwise CONV reads the input tiles of all its channel blocks (a missing
        # block's words too: they meet zero weights but must lie inside the slot).
        tiles = spatial_tiles(
            ho,
            wo,
            fits(self._dw_blocks() if dw_mode else ib),
            self._dw_cost(geo, ext) if dw_mode else None,
        )
        if tiles is None and not dw_mode:
            resident, tiles = False, spatial_tiles(ho, wo, fits(kc))
        assert tiles is not None, f"{node.name}: no tile fits (the check should have said so)"
        best = None
        for order in ("spatial", "channel"):
            saved = copy.deepcopy(self.slots)
            steps = self._conv_steps(node, geo, tiles, order, ext, kc, resident, dw_mode)
            nbytes = sum(op.nbytes for s in steps for op in s.loads)
            if best is None or nbytes < best[0]:
                best = (nbytes, steps, self.slots)
            self.slots = saved
        self.slots = best[2]
        return best[1]

    def _dw_cycles(self, g, ext, th, tw):
        """``(load, compute)``: the tiler's estimate of the cycles of one depthwise CONV of a
        ``th x tw`` tile (all its chunks) and of its input tiles' LOADs."""
        c, cols = self.c, self.w[g["node"]]["dw_chunks"]
        r, q = ext(th, tw)
        load = self._dw_blocks() * (T.load_chunks(c, c.rows, r * q) + LOAD_OVERHEAD)
        conv = CONV_OVERHEAD + sum(
            T.conv_cycles(c, th * (g["sw"] * (tw - 1) + cx[1]), cx[3], th * tw, depthwise=True)
            for cx in cols
        )
        return load, conv

    def _dw_cost(self, g, ext):
        """The tiling cost of a depthwise layer: its tiles' loads and compute overlap (the
        loads run a tile ahead), so each tile costs the larger of the two, plus a
        sixteenth of the smaller: the overlap is not perfect (the first tile's load, the
        stores sharing the bus), and of two tilings bound alike the one with less work
        wins. Without it, once the emit got cheaper (session 18) the load-bound layers
        took tilings with longer compute: the same FPS today, but a block-fusion
        projection (which removes the loads, docs/engine2-levers.md) fell from 159.5 to
        128.6 FPS on MobileNetV2."""

        def cost(tiles):
            parts = [self._dw_cycles(g, ext, th, tw) for _, th, _, tw in tiles]
            return sum(max(p) for p in parts) + sum(min(p) for p in parts) / 16

        return cost

    def _conv_steps(self, node, g, tiles, order, ext, kc, resident, dw_mode):
        c, nm, info = self.c, node.name, self.w[node.name]
        B, C = c.rows, c.cols
        ib = act_blocks(g["cin"], B)
        nout = act_blocks(g["cout"], B)
        nbg = self._dw_blocks()
        # Depthwise: "output block" ob is a group of nbg channel blocks (one CONV).
        ob_n = -(-nout // nbg) if dw_mode else act_blocks(g["cout"], C)
        chunks = [(k, list(range(k * kc, min(ib, (k + 1) * kc)))) for k in range(-(-ib // kc))]
        # Depthwise kernels wider than the array's rows run as column chunks into one ACC.
        cols = info.get("dw_chunks", [])
        dw_words = sum(ch[3] for ch in cols)
        # Every LOAD pays the read latency and the load unit's overheads (~60 cycles at
        # 250 MHz on ultra96), more than a 3x3 depthwise group's two WGT words and its
        # PARAM word take: one LOAD brings the PARAM words of a slot's worth of output
        # blocks, and a depthwise layer's WGT words come in batches of channel groups.
        pw = self.slots.param.size
        wbatch = {}
        if dw_mode:
            # Batches (as large as a WGT slot) when the loads of a tile (nearly) bound the
            # layer: a LOAD fewer per group. Else a LOAD per group, whose overhead hides
            # in the spare load time of every tile, where a batch's words, all loaded
            # with one tile (the loads run a tile ahead at most), would stall the compute.
            inp, conv = self._dw_cycles(g, ext, tiles[0][1], tiles[0][3])
            param = T.load_chunks(c, elem_bytes(c, isa.Buffer.PARAM), 1) + LOAD_OVERHEAD // pw
            cap = self.slots.wgt.size // dw_words if conv < inp + param + LOAD_OVERHEAD else 1
            wbatch = dict(wgt_batches(ob_n, max(1, cap)))
        taps = g["kw"] * g["kh"]
        items = (
            [(t, ob) for t in tiles for ob in range(ob_n)]
            if order == "spatial"
            else [(t, ob) for ob in range(ob_n) for t in tiles]
        )
        zp = _codes(g["tin"].q.zp)
        steps = []
        for (oy0, th, ox0, tw), ob in items:
            rows_in, cols_in = ext(th, tw)
            tile_words = rows_in * cols_in
            ok, _ = self.slots.out.get(None)
            out_base, out_slot = self.slots.out.bases[ok], self.slots.out.slot(ok)
            parts = (
                [(k, b, (0, g["kw"])) for k, b in chunks]
                if not dw_mode
                else [
                    (k, list(range(ob * nbg, min(nout, (ob + 1) * nbg))), cx[:2])
                    for k, cx in enumerate(cols)
                ]
            )
            for k, blocks, (kx0, kwc) in parts:
                step = Step(nm)
                if resident:
                    key, blist, first = (nm, "inp", oy0, ox0), list(range(ib)), k * kc
                else:
                    key, blist, first = (nm, "inp", oy0, ox0, tuple(blocks)), blocks, 0
                si, hit = self.slots.inp.get(key)
                ibase = self.slots.inp.bases[si]
                if not hit:
                    tb, bl = (
                        (g["tbase"], blist)
                        if g["srcs"] is None
                        else (None, [g["srcs"][b] for b in blist])
                    )
                    step.loads += input_tile_loads(
                        self.slots.inp,
                        si,
                        ibase,
                        tb,
                        bl,
                        g["h"],
                        g["w"],
                        oy0 * g["sh"] - g["pt"],
                        rows_in,
                        ox0 * g["sw"] - g["pl"],
                        cols_in,
                        B,
                        zp,
                    )
                if dw_mode:  # the WGT words of the groups of ob's batch, all their chunks
                    b0, nb = wbatch[ob]
                    wkey, first_word = (nm, "wgt", b0), b0 * dw_words
                    nwords, woff = nb * dw_words, (ob - b0) * dw_words + cols[k][2]
                else:
                    wkey, first_word = (nm, "wgt", ob, k), ob * ib * taps + blocks[0] * taps
                    nwords, woff = len(blocks) * taps, 0
                wbase, wslot = self._cached(
                    step,
                    self.slots.wgt,
                    isa.Buffer.WGT,
                    wkey,
                    info["wgt"] + first_word * B * C,
                    nwords,
                )
                reads = [self.slots.inp.slot(si), wslot]
                emit = k == len(parts) - 1
                if k == 0:
                    p0 = ob // pw * pw
                    pbase, pslot = self._param(
                        step,
                        (nm, "param", p0),
                        info["param"] + p0 * elem_bytes(c, isa.Buffer.PARAM),
                        min(pw, ob_n - p0),
                    )
                    pbase += ob - p0
                reads.append(pslot)
                fields = {
                    "mode": isa.ConvMode.DEPTHWISE if dw_mode else isa.ConvMode.DENSE,
                    "kernel_h": g["kh"],
                    "kernel_w": kwc,
                    "stride_h": g["sh"],
                    "stride_w": g["sw"],
                    "dilation_h": g["dh"],
                    "dilation_w": g["dw"],
                    "out_h": th,
                    "out_w": tw,
                    "in_w": cols_in,
                    "in_blocks": 1 if dw_mode else len(blocks),
                    "inp_addr": ibase + first * tile_words + kx0,
                    "inp_block_stride": tile_words,
                    "wgt_addr": wbase + woff,
                    "param_addr": pbase,
                    "out_addr": out_base,
                    "acc_init": int(k == 0),
                    "acc_emit": int(emit),
                    "in_zp": _codes(info["in_zp"]),
                    # an output block of at most N channels: the emit skips the rest
                    "narrow": int(
                        not dw_mode
                        and g["cout"] - ob * C <= c.depthwise_channels
                        and c.depthwise_emit_turns < c.postproc_turns
                    ),
                }
                fields.update(self._post(node, step, reads))
                # the array's MACs (as the ISA simulator and the cycle model count them)
                macs = (
                    th
                    * tw
                    * (
                        g["kh"] * kwc * c.depthwise_channels
                        if dw_mode
                        else taps * len(blocks) * B * C
                    )
                )
                step.computes.append(
                    Op(
                        isa.Opcode.CONV,
                        fields,
                        reads=tuple(reads),
                        writes=(out_slot,) if emit else (),
                        macs=macs,
                    )
                )
                if emit:
                    lanes = (
                        list(enumerate(blocks))
                        if dw_mode
                        else [
                            (j, ob * (C // B) + j)
                            for j in range(C // B)
                            if ob * (C // B) + j < nout
                        ]
                    )
                    step.stores = store_ops(
                        out_slot, out_base, g["obase"], lanes, g["ho"], g["wo"], oy0, th, ox0, tw, B
                    )
                steps.append(step)
        return steps

    # vector unit --------------------------------------------------------------------------
    def _vec(
        self,
        node,
        vop,
        srcs,
        kernel=(1, 1),
        stride=(1, 1),
        pads=(0, 0),
        pad_value=0,
        extra=None,
        param=None,
        vector=None,
        blocks=None,
        lut=False,
    ):
        """Tiles of a VEC op over the first source's map; ``vector``: a per-channel operand.

        ``blocks``: ``[(source block, output block)]`` (default: the same block)."""
        c, nm = self.c, node.name
        B = c.rows
        _, (ho, wo, cout), obase = self._t(node.outputs[0])
        src = [self._t(s) for s in srcs]
        h, w = src[0][1][:2]
        (kh, kw), (sh, sw) = kernel, stride

        def ext(th, tw):
            return (th - 1) * sh + kh, (tw - 1) * sw + kw

        def fits(th, tw):
            r, q = ext(th, tw)
            return (
                th * tw <= c.output_buffer_depth // 2
                and fits_isa(th, tw, r, q)
                and r * q * len(srcs) + (1 if vector else 0) <= c.input_buffer_depth // 2
            )

        tiles = spatial_tiles(ho, wo, fits)
        steps = []
        for oy0, th, ox0, tw in tiles:
            r, q = ext(th, tw)
            for blk, oblk in blocks or [(b, b) for b in range(act_blocks(cout, B))]:
                step = Step(nm)
                si, _ = self.slots.inp.get((nm, oy0, ox0, blk, oblk))
                base = self.slots.inp.bases[si]
                for k, (_, _, sbase) in enumerate(src):
                    step.loads += input_tile_loads(
                        self.slots.inp,
                        si,
                        base + k * r * q,
                        sbase,
                        [blk],
                        h,
                        w,
                        oy0 * sh - pads[0],
                        r,
                        ox0 * sw - pads[1],
                        q,
                        B,
                        pad_value,
                    )
                srcb = base + r * q if len(srcs) > 1 else 0
                if vector:
                    vbase = self._t(vector)[2]
                    srcb = base + r * q * len(srcs)
                    step.loads.append(
                        load_op(
                            isa.Buffer.INP,
                            self.slots.inp.slot(si),
                            srcb,
                            vbase + blk * B,
                            1,
                            1,
                            1,
                            B,
                        )
                    )
                reads = [self.slots.inp.slot(si)]
                fields = dict(
                    vop=vop,
                    kernel_h=kh,
                    kernel_w=kw,
                    stride_h=sh,
                    stride_w=sw,
                    out_h=th,
                    out_w=tw,
                    in_w=q,
                    src_a=base,
                    src_b=srcb,
                    **(extra or {}),
                )
                if param is not None:
                    pbase, pslot = self._param(step, (nm, "param"), param)
                    fields["param_addr"] = pbase
                    reads.append(pslot)
                fields.update(self._post(node, step, reads, lut))
                ok, _ = self.slots.out.get(None)
                out_base, out_slot = self.slots.out.bases[ok], self.slots.out.slot(ok)
                fields["out_addr"] = out_base
                step.computes.append(
                    Op(isa.Opcode.VEC, fields, reads=tuple(reads), writes=(out_slot,))
                )
                step.stores = store_ops(
                    out_slot, out_base, obase, [(0, oblk)], ho, wo, oy0, th, ox0, tw, B
                )
                steps.append(step)
        return steps

    def _gap(self, node):
        tin, (h, w, _), _ = self._t(node.inputs[0])
        if "windows" in self.w[node.name]:
            return self._gap_pool(node)
        return self._vec(
            node,
            isa.VecOp.AVG_POOL,
            [node.inputs[0]],
            kernel=(h, w),
            extra={"a_zp": _codes(tin.q.zp)},
            param=self.w[node.name]["param"],
        )

    def _maxpool(self, node):
        a = node.attrs
        tin = self.g.tensors[node.inputs[0]]
        return self._vec(
            node,
            isa.VecOp.MAX_POOL,
            [node.inputs[0]],
            kernel=a["kernel"],
            stride=a["stride"],
            pads=a["pads"][:2],
            pad_value=a.get("pad_value", tin.q.qmin),
        )

    def _add(self, node):
        ins = list(node.inputs)
        if self.w[node.name]["swap"]:
            ins.reverse()
        ta, tb = (self.g.tensors[i] for i in ins)
        return self._vec(
            node,
            isa.VecOp.ADD,
            ins,
            param=self.w[node.name]["param"],
            extra={"a_zp": _codes(ta.q.zp), "b_zp": _codes(tb.q.zp)},
        )

    def _mul(self, node):
        d = self.w[node.name]
        tx, ts = self.g.tensors[d["x"]], self.g.tensors[d["s"]]
        zps = {"a_zp": _codes(tx.q.zp), "b_zp": _codes(ts.q.zp)}
        if d["elementwise"]:
            return self._vec(node, isa.VecOp.MUL, [d["x"], d["s"]], param=d["param"], extra=zps)
        return self._vec(
            node,
            isa.VecOp.MUL_CHANNEL,
            [d["x"]],
            vector=d["s"],
            param=d["param"],
            extra={"a_zp": _codes(tx.q.zp), "b_zp": _codes(ts.q.zp)},
        )

    def _resize(self, node):
        """Nearest resize by integer factors ``fh x fw`` as data movement, per input tile:

        * LOAD the tile's pixels as one-pixel rows with ``fw - 1`` words of ``qmin`` before
          each (``pad_left``), so INP holds every pixel at the end of its own ``fw`` words,
          and one row of ``qmin`` after the tile (``pad_bottom``);
        * VEC MAX_POOL with a ``1 x fw`` window, stride 1: each window holds exactly one
          pixel and ``qmin`` padding, so OUT gets every pixel ``fw`` times in a row;
        * ``fh`` STOREs of the tile's rows, each ``fh`` output rows apart.
        """
        c, nm = self.c, node.name
        B = c.rows
        fh, fw = node.attrs["scale"]
        tin, (h, w, ch), tbase = self._t(node.inputs[0])
        _, (ho, wo, _), obase = self._t(node.outputs[0])
        qmin = tin.q.qmin

        def fits(th, tw):
            return (
                th * tw * fw <= c.output_buffer_depth // 2
                and fits_isa(th, tw * fw, th, tw * fw)
                and th * tw * fw + fw <= c.input_buffer_depth // 2
            )

        steps = []
        for oy0, th, ox0, tw in spatial_tiles(h, w, fits):
            for blk in range(act_blocks(ch, B)):
                step = Step(nm)
                si, _ = self.slots.inp.get((nm, oy0, ox0, blk))
                base, islot = self.slots.inp.bases[si], self.slots.inp.slot(si)
                rows = [(0, th)] if tw == w else [(iy, 1) for iy in range(th)]
                for k, (iy, n) in enumerate(rows):  # whole rows: one LOAD of th * w pixels
                    last = k == len(rows) - 1
                    step.loads.append(
                        load_op(
                            isa.Buffer.INP,
                            islot,
                            base + iy * tw * fw,
                            tbase + ((blk * h + oy0 + iy) * w + ox0) * B,
                            n * tw,
                            1,
                            1,
                            B,
                            (0, fw - 1, int(last), 0),
                            qmin,
                        )
                    )
                ok, _ = self.slots.out.get(None)
                out_base, out_slot = self.slots.out.bases[ok], self.slots.out.slot(ok)
                fields = dict(
                    vop=isa.VecOp.MAX_POOL,
                    kernel_h=1,
                    kernel_w=fw,
                    stride_h=1,
                    stride_w=1,
                    out_h=th,
                    out_w=tw * fw,
                    in_w=tw * fw,
                    src_a=base,
                    src_b=0,
                    out_addr=out_base,
                )
                fields.update(self._post(node, step, []))
                step.computes.append(Op(isa.Opcode.VEC, fields, reads=(islot,), writes=(out_slot,)))
                for dy in range(fh):
                    dram = obase + ((blk * ho + oy0 * fh + dy) * wo + ox0 * fw) * B
                    step.stores.append(
                        Op(
                            isa.Opcode.STORE,
                            {
                                "sram_addr": out_base,
                                "dram_addr": dram,
                                "y_size": th,
                                "x_size": tw * fw,
                                "x_stride": fh * wo,
                                "lane": 0,
                            },
                            reads=(out_slot,),
                            nbytes=th * tw * fw * B,
                            dram=(dram, th, tw * fw * B, fh * wo * B),
                        )
                    )
                steps.append(step)
        return steps

    def _lut(self, node):
        return self._vec(node, isa.VecOp.COPY, [node.inputs[0]])

    def _shuffle(self, node):
        return self._conv(node)  # always a gather

    def _concat(self, node):
        """Channel concat: each input's blocks copied (through its LUT) to its channel offset."""
        if "srcs" in self.w[node.name]:
            return self._conv(node)
        steps, off = [], 0
        for src, lut in zip(node.inputs, self.w[node.name]["luts"]):
            c = canon(self.g.tensors[src])[2]
            blocks = [(b, off // self.c.rows + b) for b in range(act_blocks(c, self.c.rows))]
            steps += self._vec(node, isa.VecOp.COPY, [src], blocks=blocks, lut=lut)
            off += c
        return steps

    def _slice(self, node):
        """Channel slice from a block boundary: the kept blocks copied."""
        if "srcs" in self.w[node.name]:
            return self._conv(node)
        first = node.attrs["start"] // self.c.rows
        n = act_blocks(canon(self.g.tensors[node.outputs[0]])[2], self.c.rows)
        return self._vec(
            node, isa.VecOp.COPY, [node.inputs[0]], blocks=[(first + b, b) for b in range(n)]
        )

    def _gap_pool(self, node):
        """Global pool past the VEC window: per group of depthwise channel blocks, CONVs
        with all-ones kernels over bands of its rows (tiling.py), chained in one ACC word."""
        c, nm, info = self.c, node.name, self.w[node.name]
        B = c.rows
        _, (h, w, ch), tbase = self._t(node.inputs[0])
        obase = self._t(node.outputs[0])[2]
        nout, nbg = act_blocks(ch, B), self._dw_blocks()
        bands = pool_bands(c, h, w)
        windows = [pool_windows(c, rows * w) for _, rows in bands]  # the same for every group
        steps = []
        for g0 in range(0, nout, nbg):
            blocks = list(range(g0, min(nout, g0 + nbg)))
            ok, _ = self.slots.out.get(None)
            out_base, out_slot = self.slots.out.bases[ok], self.slots.out.slot(ok)
            for b, ((y0, rows), wins) in enumerate(zip(bands, windows)):
                step = Step(nm)
                si, hit = self.slots.inp.get((nm, "inp", g0, y0))
                ibase = self.slots.inp.bases[si]
                if not hit:
                    step.loads += input_tile_loads(
                        self.slots.inp, si, ibase, tbase, blocks, h, w, y0, rows, 0, w, B, 0
                    )
                ones = (nm, "ones"), info["wgt"], info["wgt_words"]
                wbase, wslot = self._cached(step, self.slots.wgt, isa.Buffer.WGT, *ones)
                pbase, pslot = self._param(step, (nm, "param"), info["param"])
                for k, (p0, kh, kw) in enumerate(wins):
                    reads = [self.slots.inp.slot(si), wslot, pslot]
                    first = b == 0 and k == 0
                    emit = b == len(bands) - 1 and k == len(wins) - 1
                    fields = {
                        "mode": isa.ConvMode.DEPTHWISE,
                        "kernel_h": kh,
                        "kernel_w": kw,
                        "stride_h": 1,
                        "stride_w": 1,
                        "dilation_h": 1,
                        "dilation_w": 1,
                        "out_h": 1,
                        "out_w": 1,
                        "in_w": kw,
                        "in_blocks": 1,
                        "inp_addr": ibase + p0,
                        "inp_block_stride": rows * w,
                        "wgt_addr": wbase + info["windows"][kh, kw],
                        "param_addr": pbase,
                        "out_addr": out_base,
                        "acc_init": int(first),
                        "acc_emit": int(emit),
                        "in_zp": _codes(info["in_zp"]),
                    }
                    fields.update(self._post(node, step, reads))
                    step.computes.append(
                        Op(
                            isa.Opcode.CONV,
                            fields,
                            reads=tuple(reads),
                            writes=(out_slot,) if emit else (),
                            macs=kh * kw * c.depthwise_channels,
                        )
                    )
                if b == len(bands) - 1:
                    step.stores = store_ops(
                        out_slot, out_base, obase, list(enumerate(blocks)), 1, 1, 0, 1, 0, 1, B
                    )
                steps.append(step)
        return steps
