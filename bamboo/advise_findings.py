"""The findings of ``bamboo advise``: what costs time, and the measured effect of changing it.

Each finding names the layers, their measured cost in the base network (cycle model,
processor-side cost model), and the change; the effect comes from rewriting the network
(:mod:`bamboo.advise_rewrite`, or the compiler's own placement options) and running the
same chain on it (:func:`bamboo.advise.measure`): FPS, fabric and processor ms before and
after. The one exception says so: the DDR finding's effect is the cycle model of the same
layers behind an ideal memory (what keeping their tensors on chip could reach at best).
"""

import math
import pathlib

__all__ = ["findings", "pretty_fn"]

_FN_NAMES = {
    "HardSigmoid+Mul": "h-swish",
    "Sigmoid+Mul": "SiLU",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "h-sigmoid",
    "Tanh": "tanh",
    "LeakyRelu": "LeakyReLU",
}
#: A DMA-bound layer is DDR-bound when the board's memory makes it this much slower.
DDR_SLOWDOWN = 1.1
#: ``bamboo advise`` tries the input size scaled by this (rounded to the network's stride).
RESOLUTION_SCALE = 0.75


def pretty_fn(fn):
    """A table's ONNX op names as the activation people call it (``HardSigmoid+Mul``:
    h-swish)."""
    return _FN_NAMES.get(fn, fn)


def _effect(base, after, note=None):
    gain = after.fps / base.fps - 1
    text = (
        f"{base.fps:.1f} -> {after.fps:.1f} FPS ({gain:+.1%}); fabric "
        f"{1e3 * base.fabric_s:.2f} -> {1e3 * after.fabric_s:.2f} ms, processor "
        f"{1e3 * base.cpu_s:.2f} -> {1e3 * after.cpu_s:.2f} ms"
    )
    if after.macs != base.macs:
        text += f"; MACs {base.macs / 1e6:.1f} -> {after.macs / 1e6:.1f} M"
    if note:
        text += f" ({note})"
    return {
        "effect": text,
        "before": base.summary(),
        "after": after.summary(),
        "fps_gain": round(gain, 4),
    }


def _fabric_ms(base, names):
    names = set(names)
    return (
        1e3 * sum(r.cycles for r in base.report.layers if r.node in names) / (base.clock_mhz * 1e6)
    )


def _cpu_ms(base, names):
    named = base.cpu["cpu_named_s"]
    return 1e3 * base.host.slowdown * sum(named.get(n, 0.0) for n in names)


def _counts(items):
    out = {}
    for v in items:
        out[v] = out.get(v, 0) + 1
    return ", ".join(f"{k} x{c}" for k, c in sorted(out.items(), key=lambda kv: -kv[1]))


def _placement(qpath, base, config, board, clock, est):
    """Squeeze-excite and FC layers on the CPU: measured with the compiler's options."""
    from bamboo.compiler.partition import find_squeeze_excite

    g = base.graph
    se = {n for chain in find_squeeze_excite(g).values() for n in chain}
    cpu = [n for n in g.nodes if n.target == "cpu" and n.op != "view"]
    se_cpu = [n.name for n in cpu if n.name in se]
    fc_cpu = [n.name for n in cpu if n.op == "fc" and n.name not in se]
    rest = [n for n in cpu if n.name not in se and n.op != "fc"]
    trips = (
        f"{base.cpu['fabric_steps']} fabric steps per frame, "
        f"{base.cpu['exchange_bytes'] / 1e3:.1f} KB across PS/PL in all"
    )
    out = []

    def moved(kind, names, title, option, what):
        f = {
            "kind": kind,
            "layers": names,
            "title": title,
            "cost": f"{_cpu_ms(base, names):.2f} ms/frame of processor work, {trips}",
            "change": f"{what} on the fabric as 1x1 convs (compiler option {option})",
        }
        f.update(_effect(base, est(qpath, {option: True})))
        out.append(f)

    if se_cpu:
        blocks = len(find_squeeze_excite(g))
        moved(
            "squeeze-excite on the CPU",
            se_cpu,
            f"{blocks} squeeze-excite block{'s' * (blocks != 1)} run their {len(se_cpu)} "
            "bottleneck layers on the ARM cores: a PS/PL round trip in every block",
            "se_on_fabric",
            "squeeze-excite FCs",
        )
    if fc_cpu:
        moved(
            "FC on the CPU",
            fc_cpu,
            f"{len(fc_cpu)} fully connected layer{'s' * (len(fc_cpu) != 1)} on the ARM cores",
            "fc_on_fabric",
            "fully connected layers",
        )
    if rest:
        names = [n.name for n in rest]
        out.append(
            {
                "kind": "other CPU ops",
                "layers": names,
                "title": f"other ops on the ARM cores: {_counts(n.op for n in rest)}",
                "cost": f"{_cpu_ms(base, names):.2f} ms/frame of processor work",
                "change": None,
                "effect": "no fabric unit runs these; keep them at the end of the "
                "network (after the last fabric layer) so they add no round trip",
            }
        )
    return out


def _squeeze_excite(base, measure):
    """What the squeeze-excite blocks cost in all: pool and Mul over the map on the
    fabric, the bottleneck on the CPU, the round trips; measured by removing them."""
    from bamboo.compiler.partition import find_squeeze_excite

    from .advise_rewrite import remove_squeeze_excite, repartition

    g = base.graph
    se = find_squeeze_excite(g)
    if not se:
        return []
    prod = g.producers()
    names = set(se) | {n for chain in se.values() for n in chain}
    by_name = {n.name: n for n in g.nodes}
    for n in list(names):  # the GAP feeding each bottleneck
        for i in by_name[n].inputs:
            p = prod.get(i)
            if p is not None and p.op == "gap":
                names.add(p.name)
    after = measure(repartition(remove_squeeze_excite(g), {}))
    fabric = _fabric_ms(base, names)
    f = {
        "kind": "squeeze-excite blocks",
        "layers": sorted(names),
        "title": f"{len(se)} squeeze-excite blocks: a global pool and a channel Mul over "
        "the whole map on the fabric (the Mul on the vector unit), a bottleneck between them",
        "cost": f"{fabric:.2f} ms/frame on the fabric ({fabric / (1e3 * base.fabric_s):.0%} "
        f"of its time) and {_cpu_ms(base, names):.2f} ms/frame on the processor",
        "change": "no squeeze-excite (the channel Mul passes the map through)",
    }
    f.update(_effect(base, after, "what the blocks cost; accuracy is for you to weigh"))
    return [f]


def _activations(base, measure):
    from .advise_rewrite import repartition, table_activations, table_activations_to_relu

    acts = table_activations(base.graph)
    if not acts:
        return []
    standalone = [n.name for n in base.graph.nodes if n.name in acts and n.op == "lut"]
    fused = len(acts) - len(standalone)
    after = measure(repartition(table_activations_to_relu(base.graph, acts), {}))
    f = {
        "kind": "table activations",
        "layers": sorted(acts),
        "title": f"{len(acts)} activations need a 256-entry table instead of the "
        f"requantizer's clamp: {_counts(pretty_fn(v) for v in acts.values())}",
        "cost": f"{fused} fused into their conv's output table, {len(standalone)} as a "
        f"separate LUT pass over the map ({_fabric_ms(base, standalone):.3f} ms on the "
        "vector unit)",
        "change": "ReLU instead (the requantizer's clamp; squeeze-excite gates kept)",
    }
    f.update(_effect(base, after))
    return [f]


def _kernels(base, measure):
    from .advise_rewrite import depthwise_to_3x3, repartition
    from .report import op_kind

    g = base.graph
    big = [
        n
        for n in g.nodes
        if n.op == "conv" and op_kind(g, n) == "depthwise" and max(n.attrs["kernel"]) > 3
    ]
    if not big:
        return []
    names = [n.name for n in big]
    after = measure(repartition(depthwise_to_3x3(g, names), {}))
    f = {
        "kind": "depthwise kernel size",
        "layers": names,
        "title": f"{len(big)} depthwise convs with large kernels: "
        f"{_counts('x'.join(map(str, n.attrs['kernel'])) for n in big)}",
        "cost": f"{_fabric_ms(base, names):.2f} ms/frame on the depthwise path",
        "change": "3x3 kernels (same padding rule and output size)",
    }
    f.update(_effect(base, after))
    return [f]


def _channels(base, config, measure):
    from .advise_rewrite import pad_channels, paddable_layers, repartition

    multiple = math.lcm(config.rows, config.cols)
    layers = paddable_layers(base.graph, multiple)
    if not layers:
        return []
    rows = {r.node: r for r in base.report.layers}
    mine = [rows[n] for n in layers if n in rows]
    issued = sum(r.macs for r in mine)
    from bamboo.compiler.inspect import macs as node_macs

    by_name = {n.name: n for n in base.graph.nodes}
    useful = sum(node_macs(base.graph, by_name[n]) for n in layers)
    idle = 1 - useful / issued if issued else 0.0
    after = measure(repartition(pad_channels(base.graph, layers, multiple), {}))
    f = {
        "kind": "channel counts",
        "layers": sorted(layers),
        "title": f"{len(layers)} layers have channel counts that are not a multiple of "
        f"the array's {multiple}: {_counts(layers.values())}",
        "cost": f"{_fabric_ms(base, layers):.2f} ms/frame in those layers, {idle:.0%} of "
        "the MACs they issue are on padding channels",
        "change": f"round their output channels up to a multiple of {multiple} (the "
        "layers reading them widened along)",
    }
    f.update(_effect(base, after, "the padded channels are capacity a retrained network can use"))
    return [f]


def _resolution(qpath, base, config, board, clock, work):
    from bamboo.arch.errors import BambooError

    from .advise import estimate
    from .advise_rewrite import at_resolution

    g = base.graph
    shape = g.tensors[g.inputs[0].tensor].shape
    h, w = shape[1], shape[2]
    # The coarsest step of the network's likely total stride that still changes the size.
    sizes = [
        tuple(max(m, round(RESOLUTION_SCALE * v / m) * m) for v in (h, w))
        for m in (32, 16, 8)
        if h % m == 0 and w % m == 0
    ]
    sizes = [s for s in sizes if s != (h, w)]
    if not sizes:
        return []
    nh, nw = sizes[0]
    path = at_resolution(qpath, nh, nw, pathlib.Path(work) / f"resolution-{nh}x{nw}.onnx")
    try:
        after = estimate(path, config, board, clock)
    except BambooError as exc:
        return [
            {
                "kind": "resolution",
                "layers": [],
                "title": f"input {h}x{w}",
                "cost": "every feature map scales with the input area",
                "change": f"input {nh}x{nw}",
                "effect": f"not measured: the model does not compile at another size ({exc})",
            }
        ]
    f = {
        "kind": "resolution",
        "layers": [],
        "title": f"input resolution {h}x{w}",
        "cost": f"all of the frame: {1e3 * base.fabric_s:.2f} ms on the fabric scales "
        "with the input area",
        "change": f"input {nh}x{nw}",
    }
    f.update(_effect(base, after))
    return [f]


def _first_layer(base, config):
    """The layer reading the image: few input channels leave most array rows idle."""
    g = base.graph
    image = {i.tensor for i in g.inputs}
    stem = next((n for n in g.nodes if n.op == "conv" and n.inputs[0] in image), None)
    rows = {r.node: r for r in base.report.layers}
    if stem is None or stem.name not in rows:
        return []
    cin = g.tensors[stem.inputs[0]].shape[-1]
    lowered = next(n for n in base.compiled.graph.nodes if n.name == stem.name)
    if cin >= config.rows or "columns_of" in lowered.attrs:
        return []  # rows filled, or the kernel columns as channels (compiler/backend/stem.py)
    r = rows[stem.name]
    from bamboo.compiler.inspect import macs as node_macs

    util = node_macs(g, stem) / (config.macs_per_cycle * r.cycles) if r.cycles else 0.0
    kh, kw = stem.attrs["kernel"]
    return [
        {
            "kind": "first layer",
            "layers": [stem.name],
            "title": f"the first layer ({kh}x{kw}, stride {stem.attrs['stride'][0]}) reads "
            f"{cin} input channels: {config.rows - cin} of the array's {config.rows} rows "
            "idle",
            "cost": f"{_fabric_ms(base, [stem.name]):.2f} ms/frame "
            f"({r.cycles / max(base.report.total, 1):.1%} of the fabric time) at "
            f"{util:.1%} MAC utilization",
            "change": None,
            "effect": "not rewritten (it changes the input format): a space-to-depth input "
            f"({cin * 4} channels at half the size) would fill the rows",
        }
    ]


def _ddr(base):
    ideal = {r.node: r for r in base.ideal.layers}
    slow = [
        r
        for r in base.report.layers
        if r.bound.startswith("dma")
        and r.node in ideal
        and r.cycles > DDR_SLOWDOWN * ideal[r.node].cycles
    ]
    if not slow:
        return []
    saved = sum(r.cycles - ideal[r.node].cycles for r in slow)
    saved_s = saved / (base.clock_mhz * 1e6)
    fabric = base.fabric_s - saved_s
    fps = 1.0 / max(fabric, base.cpu_s)
    gain = fps / base.fps - 1
    return [
        {
            "kind": "DDR-bound layers",
            "layers": [r.node for r in slow],
            "title": f"{len(slow)} layers wait on the DDR "
            f"({sum(r.bytes for r in slow) / 1e6:.2f} MB/frame of their loads and stores)",
            "cost": f"{1e3 * saved_s:.2f} ms/frame more than with an ideal memory",
            "change": "fuse them with their neighbours so the tensors stay on chip",
            "effect": f"at best {base.fps:.1f} -> {fps:.1f} FPS ({gain:+.1%}); fabric "
            f"{1e3 * base.fabric_s:.2f} -> {1e3 * fabric:.2f} ms (these layers' cycle "
            "model behind an ideal memory; no rewrite)",
            "fps_gain": round(gain, 4),
        }
    ]


def findings(qpath, base, config, board, clock, work, progress=None):
    """The findings of the quantized model ``qpath`` whose estimate is ``base``, best
    gain first."""
    from .advise import estimate, measure

    def est(path, options):
        return estimate(path, config, board, clock, options, like=base)

    def meas(graph):
        return measure(graph, config, board, clock, like=base)

    out = []
    steps = (
        lambda: _placement(qpath, base, config, board, clock, est),
        lambda: _squeeze_excite(base, meas),
        lambda: _activations(base, meas),
        lambda: _kernels(base, meas),
        lambda: _channels(base, config, meas),
        lambda: _resolution(qpath, base, config, board, clock, work),
        lambda: _first_layer(base, config),
        lambda: _ddr(base),
    )
    for k, step in enumerate(steps):
        out += step()
        if progress:
            progress(k + 1, len(steps))
    return sorted(out, key=lambda f: -f.get("fps_gain", -1.0))
