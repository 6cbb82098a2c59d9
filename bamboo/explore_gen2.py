"""``bamboo explore --gen2``: projections of the engine-generation-2 levers (issue 15).

Every lever is a field of :class:`bamboo.arch.timing.EngineLevers` (unbuilt hardware:
no generator, compiler or artifact reads them). This sweeps each lever alone, then every
combination of the lever axes (:data:`AXES`) whose predicted resources
(:func:`bamboo.boards.resource_model.predict_with_levers`) fit the board's budget, runs
each model's instruction stream through the cycle model with those levers
(:func:`bamboo.sim.cycles.model_compiled`) and prints the projected FPS per model with
the fabric-time breakdown: depthwise share, MAC-less share (layers without a CONV) and
DRAM traffic against the compulsory minimum (``bamboo.bench``'s). The levers that were
built (the 16 x 32 array, post-processing lane groups, two ACC banks) are configuration
fields now: ``bamboo explore`` (:data:`bamboo.explore.KNOBS`) searches them, and the
board's preset they chose is this sweep's ``today``. Everything printed is a projection
of hardware that does not exist; docs/engine2-levers.md says which part of each lever's
model is validated against the RTL and which is extrapolated.
"""

import dataclasses
import hashlib
import itertools
import json
import math
import time

from bamboo.arch.timing import EngineLevers

__all__ = ["AXES", "TARGETS", "explore_gen2", "render_gen2"]

_REV = "gen2-4"

#: The lever axes the sweep combines: ``(name, [(label, EngineLevers fields, config
#: changes)])``, the first value of each axis being today's engine. The depthwise engine
#: with DSP multipliers takes ``lanes x 9`` DSP48E2 (8 lanes: 72), with LUT multipliers
#: ~70 LUT a product.
AXES = (
    (
        "depthwise engine",
        [
            ("", {}, {}),
            ("dw8", {"dw_lanes": 8}, {}),
            ("dw16", {"dw_lanes": 16}, {}),
            ("dw16L", {"dw_lanes": 16, "dw_multiplier": "lut"}, {}),
        ],
    ),
    ("two DMA words", [("", {}, {}), ("dma2", {"dma_words": 2}, {})]),
    ("fused Add", [("", {}, {}), ("fuse-add", {"fuse_add": True}, {})]),
    ("fused SE", [("", {}, {}), ("fuse-se", {"fuse_se": True}, {})]),
    ("block fusion", [("", {}, {}), ("fuse-block", {"fuse_block": True}, {})]),
)

#: Issue 15's targets at 250 MHz, full size: ``{zoo name@size: FPS}``.
TARGETS = {"mobilenet_v2@224": 200.0, "efficientnet_b4@256": 24.0, "tiny_yolov3@416": 30.0}


def _point(parts):
    """``(label, EngineLevers, config changes)`` of a list of axis values."""
    fields, changes, labels = {}, {}, []
    for label, f, c in parts:
        fields |= f
        changes |= c
        if label:
            labels.append(label)
    return "+".join(labels) or "today", EngineLevers(**fields), changes


def _candidates(limit_axes=None):
    """``(singles, combinations)``: each lever alone, every combination."""
    axes = [(n, vs) for n, vs in AXES if limit_axes is None or n in limit_axes]
    singles = [_point([])]
    for _, values in axes:
        singles += [_point([v]) for v in values[1:]]
    combos = [_point(list(c)) for c in itertools.product(*(vs for _, vs in axes))]
    return singles, [c for c in combos if c[0].count("+") >= 1]


class _Projector:
    """Compiled models per configuration and cycle-model figures per lever set, cached."""

    def __init__(self, specs, board, cache, runner):
        self.specs, self.board, self.cache, self.runner = specs, board, cache, runner
        self.compiled, self.hits = {}, 0

    def _lowered(self, label, name, res, config):
        key = (label, config.config_id)
        if key not in self.compiled:
            from bamboo.compiler.backend import lower_graph

            from .bench import _compulsory

            _, graph = self.runner._graph(label, name, res)
            c = lower_graph(graph, config)
            self.compiled[key] = (c, _compulsory(c))
        return self.compiled[key]

    def project(self, label, name, res, config, levers):
        """``{"fabric_s", "cpu_s", "shares", "dram_x", "concurrent_s"}`` of one model."""
        from bamboo.models import zoo

        from .explore import _cache_dir, code_revision

        path = zoo.build_quantized(name, res, 1.0)
        key = hashlib.sha256(
            json.dumps(
                [
                    _REV,
                    code_revision(),
                    path.name,
                    self.board,
                    config.to_dict(),
                    dataclasses.asdict(levers),
                ],
                sort_keys=True,
            ).encode()
        ).hexdigest()[:24]
        file = _cache_dir() / f"gen2-{key}.json"
        if self.cache and file.exists():
            self.hits += 1
            return json.loads(file.read_text())
        from bamboo.arch.timing import BOARDS
        from bamboo.sim import cycles

        from .report import kind_summary, layer_rows

        compiled, compulsory = self._lowered(label, name, res, config)
        rep = cycles.model_compiled(compiled, BOARDS[self.board], config.clock_mhz, levers=levers)
        # The shares as `make bench` counts them (bamboo.report, by each layer's graph
        # node): a global pool the back end runs on the array (all-ones depthwise) is a
        # layer without MACs, not a pointwise one.
        kinds = kind_summary(layer_rows(compiled, rep), config)
        conc = cycles.concurrent_dw_cycles(rep) if levers.dw_lanes else rep.total
        out = {
            "fabric_s": rep.seconds,
            "concurrent_s": conc / (rep.clock_mhz * 1e6),
            "cpu_s": self.runner.fps(label, name, res, config)["cpu_s"],
            "depthwise": kinds.get("depthwise", {}).get("share", 0.0),
            "macless": kinds.get("other", {}).get("share", 0.0),
            "dram_x": rep.bytes / compulsory if compulsory else 0.0,
        }
        if self.cache:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(out))
        return out


def explore_gen2(board="ultra96", models=None, size="full", cache=True, progress=True, axes=None):
    """Project every lever alone and every combination that fits ``board``'s budget
    (``axes``: names of :data:`AXES` to sweep, default all)."""
    from bamboo.boards.platforms import BOARDS
    from bamboo.boards.resource_model import default_model, predict_with_levers

    from .explore import DEFAULT_MODELS, ExploreError, _boards_fit, _Models, model_specs
    from .report import progress as bar

    if board not in BOARDS or BOARDS[board].yosys_family != "xcup":
        raise ExploreError(
            f"--gen2: {board!r} is not an UltraScale+ board the resource model covers "
            "(ultra96, ultra96v1, zcu104, kv260)"
        )
    if size not in ("reduced", "full"):
        raise ExploreError(f"--size must be reduced or full, not {size!r}")
    b = BOARDS[board]
    specs = model_specs(models or DEFAULT_MODELS, size)
    base, model = b.config(), default_model()
    runner = _Models(specs, board, cache)
    proj = _Projector(specs, board, cache, runner)
    singles, combos = _candidates(axes)

    def resources(label, levers, changes):
        cfg = dataclasses.replace(base, name="custom", **changes) if changes else base
        pred = predict_with_levers(cfg, levers, model)
        fits = b.name in _boards_fit(pred)
        return {"label": label, "levers": levers, "config": cfg, **pred, "fits": fits}

    single_pts = [resources(*s) for s in singles]
    combo_pts = [p for p in (resources(*c) for c in combos) if p["fits"]]
    todo = single_pts + combo_pts
    start, done = time.perf_counter(), 0
    for p in todo:
        p["models"] = {}
        for label, name, res in specs:
            p["models"][label] = proj.project(label, name, res, p["config"], p["levers"])
            done += 1
            if progress:
                bar("explore --gen2", done, len(todo) * len(specs), start, time.perf_counter())
        for m in p["models"].values():
            m["fabric_fps"] = 1.0 / m["fabric_s"]
            m["fps"] = 1.0 / max(m["fabric_s"], m["cpu_s"])
            m["concurrent_fps"] = 1.0 / max(m["concurrent_s"], m["cpu_s"])
        p["geomean"] = math.exp(
            sum(math.log(m["fabric_fps"]) for m in p["models"].values()) / len(specs)
        )
    combo_pts.sort(key=lambda p: -p["geomean"])
    return {
        "board": board,
        "budget": b.budget,
        "size": size,
        "models": [s[0] for s in specs],
        "clock_mhz": base.clock_mhz,
        "singles": single_pts,
        "combinations": combo_pts,
        "combinations_tried": len(combos),
        "seconds": round(time.perf_counter() - start, 1),
        "cache_hits": proj.hits,
    }


def _row(p, models, width):
    cells = [
        p["label"].ljust(width),
        f"{p['dsp']:>4}",
        f"{p['lut']:>6}",
        f"{p['bram36']:>6g}",
        " y " if p["fits"] else " n ",
    ]
    for m in models:
        r = p["models"][m]
        conc = f"/{r['concurrent_fps']:.0f}" if p["levers"].dw_lanes else ""
        hit = "!" if m in TARGETS and r["fps"] >= TARGETS[m] else " "
        cells.append(
            f"{r['fps']:7.1f}{hit}{conc:<5} dw {r['depthwise']:4.0%} mac-less "
            f"{r['macless']:4.0%} DRAM {r['dram_x']:4.1f}x"
        )
    return " ".join(cells)


def render_gen2(result, top=10):
    """The projection as text: each lever alone, then the best combinations that fit."""
    b, models = result["budget"], result["models"]
    pts = result["singles"] + result["combinations"]
    width = max(len(p["label"]) for p in pts)
    head = "levers".ljust(width) + "  DSP    LUT   BRAM fit " + " ".join(f"{m:<50}" for m in models)
    targets = ", ".join(f"{m} >= {v:g}" for m, v in TARGETS.items())
    lines = [
        f"bamboo explore --gen2 on {result['board']}: PROJECTIONS OF UNBUILT HARDWARE "
        "(engine-generation-2 levers in the cycle model and the resource model; "
        "docs/engine2-levers.md says what is RTL-validated and what is extrapolated)",
        f"budget DSP48E2 <= {b['dsp']:g}, LUT <= {b['lut']:.0f}, BRAM36 <= {b['bram36']:g}; "
        f"{result['size']} size; FPS at {result['clock_mhz']:g} MHz with the processor side "
        "overlapped; '!' marks a target of issue 15 reached "
        f"({targets}); after '/': the FPS if the depthwise engine also overlapped the array "
        "in each block (an upper bound)",
        "dw: depthwise share of the fabric time; mac-less: layers without a CONV; DRAM: "
        "traffic / compulsory minimum",
        "",
        "each lever alone (today's ultra96 preset otherwise):",
        head,
    ]
    lines += ["  " + _row(p, models, width) for p in result["singles"]]
    combos = result["combinations"]
    shown = combos[:top] if top else combos
    lines += [
        "",
        f"combinations within the budget: {len(combos)} of {result['combinations_tried']} "
        f"(by the resource model); the {len(shown)} with the highest geometric-mean fabric "
        f"FPS ({result['seconds']:.0f} s, {result['cache_hits']} cached):",
        head,
    ]
    lines += ["  " + _row(p, models, width) for p in shown]
    return "\n".join(lines)
