"""``bamboo explore``: the design-space search over the generator's configuration knobs.

Every combination of the knobs' values (:data:`KNOBS`, over the board's preset; ``--knob
NAME=V1,V2`` replaces a knob's values) that is a valid :class:`AcceleratorConfig` for
the board gets its resources predicted by :mod:`bamboo.boards.resource_model` (linear
models calibrated against Yosys runs; the output says their leave-one-out error). The
points within the board's budget are compiled for each model (the zoo at a reduced
input size by default: half the nominal, rounded to the model's stride) and run through
the cycle model behind the board's memory (:mod:`bamboo.sim.cycles`), with the
processor side of :func:`bamboo.report.host_time`, as ``make bench`` and ``bamboo
advise`` do: FPS is ``1 / max(fabric, processor)``. Results are cached per model and
configuration under ``build/explore/``.

The Pareto front is over FPS per model (higher is better) against predicted DSP48E2,
LUT and BRAM36 (lower is better). FPS is at the design clock: the static Fmax estimate
(:mod:`bamboo.boards.timing`) exists only for synthesized builds, and where a point
has one (a preset, or a calibration build) the FPS at ``min(design clock, Fmax)`` is
shown beside it. Which boards a point fits is the predicted resources against every
UltraScale+ board's budget (``boards/platforms.py``; the model is not calibrated for
the Zynq-7000's DSP48E1).

New hardware units join the search as rows of :data:`KNOBS` (a field of the
configuration and its values), nothing else.
"""

import csv
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass

from bamboo.arch.errors import BambooError

__all__ = [
    "DEFAULT_MODELS",
    "KNOBS",
    "ExploreError",
    "Knob",
    "add_explore_parser",
    "cmd_explore",
    "explore",
    "pareto",
    "render",
    "write_csv",
    "write_png",
]

#: The models of issue #15's targets.
DEFAULT_MODELS = ("mobilenet_v2", "efficientnet_b4", "tiny_yolov3")
#: Part of the cache key: bump when what is cached changes.
_REV = "explore-1"
#: The code a cached result rests on (with :data:`_REV`, see :func:`code_revision`).
_CODE = ("bamboo.arch", "bamboo.compiler", "bamboo.runtime", "bamboo.sim", "bamboo.models")


@functools.lru_cache(maxsize=None)
def code_revision():
    """A digest of the source a cached result rests on: the compiler, the cycle model,
    the processor-side kernels, the models' builders (``_CODE``). A change to any of them
    makes every earlier result stale, so it is part of the cache key (computed once)."""
    import importlib
    from pathlib import Path

    h = hashlib.sha256()
    for name in _CODE:
        root = Path(importlib.import_module(name).__file__).parent
        for f in sorted(root.rglob("*.py")):
            h.update(f"{name}/{f.relative_to(root).as_posix()}".encode() + b"\0")
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


class ExploreError(BambooError):
    """A knob, model or option ``bamboo explore`` cannot work with."""


def _bool(text):
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _lanes(text):
    return None if text.strip().lower() in ("none", "rows") else int(text)


def _pp_lanes(text):
    return None if text.strip().lower() in ("none", "cols") else int(text)


@dataclass(frozen=True)
class Knob:
    """One searched field of :class:`AcceleratorConfig`: its default values and parser."""

    field: str
    values: tuple
    short: str
    parse: object = int


#: The knobs the generator has today, in the order the tables show them. The default
#: values (~90 configurations within the ultra96 budget) hold the ultra96 preset: 8
#: post-processing lanes (or one a column), ACC of 512 words in one bank or two (two
#: banks of 512 take the BRAM of one of 1024). Arrays are packed: every board the
#: resource model covers has DSP48E2s, and an unpacked array has half the MACs on the
#: same DSPs (``--knob dsp_packing=0,1`` adds them). ``--knob`` widens any knob.
KNOBS = (
    Knob("rows", (8, 16), "rows"),
    Knob("cols", (16, 32, 64), "cols"),
    Knob("dsp_packing", (True,), "pack", _bool),
    Knob("vector_lanes", (2, 4), "vl", _lanes),
    Knob("postproc_lanes", (None, 8), "pp", _pp_lanes),
    Knob("input_buffer_depth", (4096, 8192), "inp"),
    Knob("weight_buffer_depth", (512, 1024), "wgt"),
    Knob("acc_buffer_depth", (512,), "acc"),
    Knob("acc_banks", (1, 2), "accb"),
    Knob("output_buffer_depth", (2048,), "out"),
    Knob("lut_slots", (4,), "luts"),
    Knob("depthwise_blocks", (1, 2), "dwb"),
    Knob("depthwise_groups", (2,), "dwg"),
    Knob("axi_data_width", (128,), "axi"),
)
_BY_FIELD = {k.field: k for k in KNOBS}


def parse_knobs(specs):
    """``{field: values}`` from ``["rows=8,16", ...]`` (one-line errors on bad input)."""
    out = {}
    for spec in specs or ():
        name, eq, text = spec.partition("=")
        name = name.strip()
        if not eq or name not in _BY_FIELD:
            raise ExploreError(
                f"--knob must be NAME=V1,V2,... with NAME one of "
                f"{', '.join(_BY_FIELD)}; not {spec!r}"
            )
        try:
            values = tuple(_BY_FIELD[name].parse(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise ExploreError(f"--knob {name}: cannot read {text!r}") from None
        if not values:
            raise ExploreError(f"--knob {name}: no values")
        out[name] = values
    return out


def grid(base, values=None):
    """``(valid configs, [(values, error)])`` of every combination of the knobs over ``base``."""
    values = {k.field: k.values for k in KNOBS} | dict(values or {})
    names = list(values)
    valid, invalid, seen = [], [], set()
    for combo in itertools.product(*(values[n] for n in names)):
        try:
            cfg = dataclasses.replace(base, name="custom", **dict(zip(names, combo)))
        except BambooError as exc:
            invalid.append((dict(zip(names, combo)), str(exc)))
            continue
        if cfg.config_id == base.config_id:
            cfg = base
        if cfg.config_id not in seen:
            seen.add(cfg.config_id)
            valid.append(cfg)
    return valid, invalid


def pareto(points, maximize, minimize):
    """Indices of the points no other point dominates (at least as good in every objective,
    better in one). ``points``: dicts; ``maximize``/``minimize``: their keys."""

    def vec(p):
        return [p[k] for k in maximize] + [-p[k] for k in minimize]

    vs = [vec(p) for p in points]
    front = []
    for i, a in enumerate(vs):
        if not any(
            all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a))
            for j, b in enumerate(vs)
            if j != i
        ):
            front.append(i)
    return front


def model_specs(models, size):
    """``[(label, zoo name, resolution)]`` of ``--models`` at ``--size``."""
    from bamboo.models import zoo

    out = []
    for name in models:
        name, _, res = name.strip().partition("@")
        if name not in zoo.ZOO:
            raise ExploreError(f"unknown model {name!r}; the zoo has {', '.join(zoo.ZOO)}")
        entry = zoo.ZOO[name]
        if res:
            try:
                r = int(res)
            except ValueError:
                raise ExploreError(f"--models {name}@{res}: the size must be a number") from None
        elif size == "full":
            r = entry.resolution
        else:
            step = max(entry.multiple, 8)
            r = max(step, round(entry.resolution / 2 / step) * step)
        out.append((f"{name}@{r}", name, r))
    return out


def _cache_dir():
    from bamboo.boards.vivado import build_root

    return build_root() / "explore"


class _Models:
    """Compiled graphs per model, and cycle-model figures per (model, config), cached."""

    def __init__(self, specs, board, cache=True):
        self.specs, self.board, self.cache = specs, board, cache
        self.graphs, self.cpu, self.hits = {}, {}, 0

    def _graph(self, label, name, res):
        if label not in self.graphs:
            from bamboo.compiler.cli_inspect import compile_model
            from bamboo.models import zoo

            path = zoo.build_quantized(name, res, 1.0)
            self.graphs[label] = (path, compile_model(str(path)))
        return self.graphs[label]

    def fps(self, label, name, res, config):
        """``{"fabric_s", "cpu_s", "cycles"}`` of one model on one configuration."""
        from bamboo.models import zoo

        path = zoo.build_quantized(name, res, 1.0)
        key = hashlib.sha256(
            json.dumps(
                [_REV, code_revision(), path.name, self.board, config.to_dict()], sort_keys=True
            ).encode()
        ).hexdigest()[:24]
        file = _cache_dir() / f"{key}.json"
        if self.cache and file.exists():
            self.hits += 1
            return json.loads(file.read_text())
        from bamboo.arch.timing import BOARDS, HOSTS
        from bamboo.compiler.backend import artifact_writer, lower_graph
        from bamboo.sim import cycles

        from .advise import _cpu_work
        from .report import host_time

        _, graph = self._graph(label, name, res)
        compiled = lower_graph(graph, config)
        rep = cycles.model_compiled(compiled, BOARDS[self.board], config.clock_mhz)
        work = (label, _cpu_work(compiled), config.rows)
        if work not in self.cpu:
            blob = artifact_writer.build(compiled)
            self.cpu[work] = host_time(blob, HOSTS[self.board], repeats=3)["seconds"]
        out = {"fabric_s": rep.seconds, "cpu_s": self.cpu[work], "cycles": rep.total}
        if self.cache:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(out))
        return out


def _built(config, calibration):
    """The Yosys build of exactly ``config`` among the calibration points, or None."""
    return next((p for p in calibration if p["config"].config_id == config.config_id), None)


def _boards_fit(pred):
    """Names of the UltraScale+ boards whose budget the predicted resources fit."""
    from bamboo.boards.platforms import BOARDS

    return [
        b.name
        for b in BOARDS.values()
        if b.yosys_family == "xcup" and all(pred[k] <= lim for k, lim in b.budget.items())
    ]


def _resources(cfg, model, cal):
    """Predicted resources of ``cfg`` and, if Yosys built it, its counts and Fmax.

    Every point is compared on the model's predictions (one yardstick); a configuration
    Yosys has built also carries its counts, which decide the boards it fits."""
    from bamboo.boards.resource_model import RESOURCES

    built = _built(cfg, cal)
    pred = model.predict(cfg)
    yosys = None if built is None else {r: built[r] for r in RESOURCES}
    return {
        **pred,
        "yosys": yosys,
        "fits": _boards_fit(yosys or pred),
        "fmax_mhz": built and built.get("fmax_mhz"),
        "fmax_source": built and built["source"],
    }


def _candidates(b, base, configs, invalid, model, cal):
    """``(points within board b's budget, count over it)``; the preset always a point.

    Configurations the board refuses join ``invalid``."""
    from bamboo.boards.platforms import BoardError, check_config

    points, over = [], 0
    for cfg in configs:
        try:
            check_config(b, cfg)
        except BoardError as exc:
            invalid.append((cfg.to_dict(), str(exc)))
            continue
        res = _resources(cfg, model, cal)
        if b.name not in res["fits"]:
            over += 1
            continue
        points.append({"config": cfg, **res})
    # The board's own preset is always a point, in budget or not, so it can be placed.
    if not any(p["config"].config_id == base.config_id for p in points):
        points.append({"config": base, **_resources(base, model, cal)})
    for p in points:
        p["preset"] = p["config"].config_id == base.config_id
    return points, over


def _speed(points, specs, runner, progress):
    """FPS of every model on every point (and at its estimated Fmax where one exists)."""
    from .report import progress as bar

    start, done, total = time.perf_counter(), 0, len(points) * len(specs)
    for p in points:
        cfg, fmax = p["config"], p["fmax_mhz"]
        p["fps"], p["fabric_fps"], p["fps_at_fmax"] = {}, {}, {}
        for label, name, res in specs:
            r = runner.fps(label, name, res, cfg)
            p["fps"][label] = 1.0 / max(r["fabric_s"], r["cpu_s"])
            p["fabric_fps"][label] = 1.0 / r["fabric_s"]
            if fmax is not None and fmax < cfg.clock_mhz:
                fab = r["fabric_s"] * cfg.clock_mhz / fmax
                p["fps_at_fmax"][label] = 1.0 / max(fab, r["cpu_s"])
            done += 1
            if progress:
                bar("explore", done, total, start, time.perf_counter())
        p["fps_geomean"] = math.exp(sum(math.log(v) for v in p["fps"].values()) / len(specs))


def explore(
    board="ultra96", models=DEFAULT_MODELS, size="reduced", knobs=None, cache=True, progress=True
):
    """Run the search; returns a dict of every point and the front (see :func:`render`)."""
    from bamboo.arch.timing import BOARDS as MEMORIES
    from bamboo.boards.calibrate import points as calibration
    from bamboo.boards.platforms import BOARDS
    from bamboo.boards.resource_model import RESOURCES, default_model, leave_one_out

    if board not in BOARDS:
        raise ExploreError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    b = BOARDS[board]
    if b.yosys_family != "xcup" or board not in MEMORIES:
        raise ExploreError(
            f"{board}: the resource model is calibrated for UltraScale+ "
            "boards only (ultra96, ultra96v1, zcu104, kv260)"
        )
    if size not in ("reduced", "full"):
        raise ExploreError(f"--size must be reduced or full, not {size!r}")
    specs = model_specs(models, size)
    base = b.config()
    configs, invalid = grid(base, knobs)
    if not configs:
        raise ExploreError(f"no valid configuration among the knobs' values: {invalid[0][1]}")
    cal = calibration()
    points, over = _candidates(b, base, configs, invalid, default_model(), cal)
    start = time.perf_counter()
    runner = _Models(specs, board, cache)
    _speed(points, specs, runner, progress)
    labels = [s[0] for s in specs]
    flat = [{**{f"fps:{k}": v for k, v in p["fps"].items()}, **p} for p in points]
    front = pareto(flat, [f"fps:{k}" for k in labels], ["dsp", "lut", "bram36"])
    for i in front:
        points[i]["front"] = True
    _, err = leave_one_out(cal)
    fmaxes = [p["fmax_mhz"] for p in cal if p.get("fmax_mhz")]
    return {
        "board": board,
        "budget": b.budget,
        "size": size,
        "models": labels,
        "knobs": {k.field: (knobs or {}).get(k.field, k.values) for k in KNOBS},
        "combinations": math.prod(
            len(v) for v in ({k.field: k.values for k in KNOBS} | dict(knobs or {})).values()
        ),
        "valid": len(configs),
        "invalid": invalid,
        "over_budget": over,
        "points": points,
        "front": front,
        "seconds": round(time.perf_counter() - start, 1),
        "cache_hits": runner.hits,
        "calibration_points": len(cal),
        "loo_error": err,
        "resources": RESOURCES,
        "clock_mhz": base.clock_mhz,
        "fmax_range": (min(fmaxes), max(fmaxes)) if fmaxes else None,
    }


def _knob_cells(cfg):
    shown = {
        "dsp_packing": "y" if cfg.dsp_packing else "n",
        "postproc_lanes": str(cfg.postproc_lanes or cfg.cols),
    }
    return [shown.get(k.field, str(getattr(cfg, k.field))) for k in KNOBS]


def render(result, top=10):
    """The search as text: what was swept, the model's error, the front's best ``top``."""
    b = result["budget"]
    lines = [
        f"bamboo explore on {result['board']}: budget DSP48E2 <= {b['dsp']:g}, "
        f"LUT <= {b['lut']:.0f}, BRAM36 <= {b['bram36']:g}; models "
        f"{', '.join(result['models'])} ({result['size']} size)",
        "knobs: "
        + "; ".join(f"{k} {','.join(str(v) for v in vs)}" for k, vs in result["knobs"].items()),
        f"{result['combinations']} combinations: {len(result['invalid'])} refused by the "
        "configuration's or the board's rules"
        + (f" (e.g. {result['invalid'][0][1]})" if result["invalid"] else "")
        + ", "
        f"{result['valid']} valid configurations, {result['over_budget']} over the "
        f"predicted budget, {len(result['points'])} compiled and cycle-modelled in "
        f"{result['seconds']:.0f} s ({result['cache_hits']} cached results)",
        f"resources predicted by a model fitted on {result['calibration_points']} Yosys "
        "builds; leave-one-out mean (max) error: "
        + ", ".join(
            f"{r.upper()} {m:.1f} % ({x:.1f} %)" for r, (m, x) in result["loo_error"].items()
        ),
        f"FPS: cycle model at the design clock ({result['clock_mhz']:g} MHz), processor "
        "side overlapped; in parentheses at min(design clock, estimated Fmax) where "
        "Yosys has built that exact configuration (the others have no Fmax estimate)",
    ]
    if result["fmax_range"]:
        lo, hi = result["fmax_range"]
        lines.append(
            f"estimated Fmax of the {result['calibration_points']} Yosys builds: "
            f"{lo:.0f}-{hi:.0f} MHz (boards/timing.py, static, not Vivado): at that "
            f"clock every FPS scales by about {lo / result['clock_mhz']:.2f} where "
            "the fabric bounds it"
        )
    pts = result["points"]
    front = sorted((pts[i] for i in result["front"]), key=lambda p: -p["fps_geomean"])
    lines.append(
        f"Pareto front (FPS per model vs DSP, LUT, BRAM36): {len(front)} of "
        f"{len(pts)} points; the {min(top, len(front)) if top else len(front)} "
        "with the highest geometric-mean FPS:"
    )
    lines += _table(front[:top] if top else front, result["models"])
    preset = next((p for p in pts if p["preset"]), None)
    if preset is not None:
        lines.append("")
        lines.append(_place(preset, pts, result))
        if preset["yosys"]:
            y = preset["yosys"]
            lines.append(
                f"(the preset as Yosys built it: DSP {y['dsp']}, LUT {y['lut']}, FF "
                f"{y['ff']}, BRAM36 {y['bram36']:g}; predicted: DSP {preset['dsp']}, "
                f"LUT {preset['lut']}, FF {preset['ff']}, BRAM36 {preset['bram36']:g})"
            )
    return "\n".join(lines)


def _table(points, models):
    heads = (
        [k.short for k in KNOBS]
        + ["DSP", "LUT", "BRAM"]
        + [m.split("@")[0][:14] for m in models]
        + ["fits"]
    )
    widths = [max(4, len(h)) for h in heads]
    rows = []
    for p in points:
        cells = _knob_cells(p["config"]) + [str(p["dsp"]), str(p["lut"]), f"{p['bram36']:g}"]
        if p["yosys"]:
            cells[-3:] = [c + "*" for c in cells[-3:]]
        for m in models:
            at = p["fps_at_fmax"].get(m)
            cells.append(f"{p['fps'][m]:.1f}" + (f" ({at:.1f})" if at else ""))
        cells.append(",".join(p["fits"]) + (" [preset]" if p["preset"] else ""))
        rows.append(cells)
        widths = [max(w, len(c)) for w, c in zip(widths, cells)]
    fmt = lambda cs: "  " + " ".join(c.rjust(w) for c, w in zip(cs, widths))  # noqa: E731
    return (
        [fmt(heads)]
        + [fmt(r) for r in rows]
        + [
            "  (* Yosys has built this configuration: its counts are in the CSV and below; FPS "
            "in parentheses: at its estimated Fmax)"
        ]
        * any(p["yosys"] for p in points)
    )


def _place(preset, pts, result):
    """Where the board's preset stands: on the front, or which points dominate it."""
    name = preset["config"].name
    if preset.get("front"):
        better = [
            p
            for p in pts
            if p is not preset
            and p.get("front")
            and p["fps_geomean"] > preset["fps_geomean"]
            and result["board"] in p["fits"]
        ]
        text = f"preset {name!r} is on the Pareto front"
        if better:
            best = max(better, key=lambda p: p["fps_geomean"])
            text += (
                f"; {len(better)} front points within budget have a higher geometric-mean "
                f"FPS, the best {best['fps_geomean'] / preset['fps_geomean']:.2f}x at DSP "
                f"{best['dsp']}, LUT {best['lut']}, BRAM36 {best['bram36']:g} "
                f"({_describe(best['config'])})"
            )
        return text
    dom = [
        p
        for p in pts
        if all(p["fps"][m] >= preset["fps"][m] for m in result["models"])
        and all(p[k] <= preset[k] for k in ("dsp", "lut", "bram36"))
        and p is not preset
    ]
    best = max(dom, key=lambda p: p["fps_geomean"])
    return (
        f"preset {name!r} is NOT on the front: {len(dom)} points dominate it, e.g. "
        f"{_describe(best['config'])}: FPS "
        + ", ".join(f"{best['fps'][m]:.1f} vs {preset['fps'][m]:.1f}" for m in result["models"])
        + f" at DSP {best['dsp']} vs {preset['dsp']}, LUT {best['lut']} vs {preset['lut']}, "
        f"BRAM36 {best['bram36']:g} vs {preset['bram36']:g}"
    )


def _describe(cfg):
    return " ".join(f"{k.short}={v}" for k, v in zip(KNOBS, _knob_cells(cfg)))


def write_csv(result, path):
    """Every point: knobs, predicted resources, FPS per model, front and board fits."""
    models = result["models"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [k.field for k in KNOBS]
            + list(result["resources"])
            + [f"fps {m}" for m in models]
            + [f"fabric fps {m}" for m in models]
            + ["fps geomean", "front", "fits", "preset", "fmax_mhz"]
            + [f"yosys {r}" for r in result["resources"]]
        )
        for p in result["points"]:
            w.writerow(
                [getattr(p["config"], k.field) for k in KNOBS]
                + [p[r] for r in result["resources"]]
                + [round(p["fps"][m], 2) for m in models]
                + [round(p["fabric_fps"][m], 2) for m in models]
                + [
                    round(p["fps_geomean"], 2),
                    int(bool(p.get("front"))),
                    " ".join(p["fits"]),
                    int(p["preset"]),
                    p["fmax_mhz"] or "",
                ]
                + [(p["yosys"] or {}).get(r, "") for r in result["resources"]]
            )
    return path


def write_png(result, path):
    """Geometric-mean FPS against DSP, LUT and BRAM36; the front and the preset marked."""
    from .report import _pyplot

    plt = _pyplot()
    pts = result["points"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=100)
    try:
        b = result["budget"]
        for ax, (key, label) in zip(
            axes, (("dsp", "DSP48E2"), ("lut", "LUT"), ("bram36", "BRAM36"))
        ):
            rest = [p for p in pts if not p.get("front")]
            front = [p for p in pts if p.get("front")]
            ax.scatter(
                [p[key] for p in rest],
                [p["fps_geomean"] for p in rest],
                s=10,
                color="tab:gray",
                label="dominated",
            )
            ax.scatter(
                [p[key] for p in front],
                [p["fps_geomean"] for p in front],
                s=16,
                color="tab:blue",
                label="Pareto front",
            )
            for p in pts:
                if p["preset"]:
                    ax.scatter(
                        [p[key]],
                        [p["fps_geomean"]],
                        s=60,
                        marker="*",
                        color="tab:red",
                        label="preset",
                    )
            ax.axvline(
                b[key],
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"{result['board']} budget",
            )
            ax.set_xlabel(f"predicted {label}")
            ax.set_ylabel("geometric-mean FPS (cycle model)")
            ax.grid(True, linewidth=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(
            f"bamboo explore on {result['board']}: {', '.join(result['models'])} "
            f"({result['size']} size)",
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def add_explore_parser(subparsers):
    """Add the ``explore`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "explore",
        help="design-space search: configurations through the compiler and the "
        "cycle model, resources predicted from Yosys, the Pareto front",
    )
    p.add_argument(
        "--board",
        default="ultra96",
        help="board whose preset, budget and memory the search uses (default %(default)s)",
    )
    p.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="comma-separated zoo models, each optionally NAME@SIZE (default %(default)s)",
    )
    p.add_argument(
        "--size",
        default="reduced",
        help="reduced (half the nominal input size, the default) or full",
    )
    p.add_argument(
        "--knob",
        action="append",
        metavar="NAME=V1,V2",
        help="values of one knob (repeatable); knobs: " + ", ".join(k.field for k in KNOBS),
    )
    p.add_argument("--top", type=int, default=10, help="front points shown (0: all)")
    p.add_argument("--csv", metavar="FILE", help="write every point as CSV")
    p.add_argument("--png", metavar="FILE", help="write FPS against DSP/LUT/BRAM36")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-cache", action="store_true", help="recompute cached results")
    p.add_argument(
        "--gen2",
        action="store_true",
        help="project the engine-generation-2 levers (unbuilt hardware, issue 15) on the "
        "board's preset: each lever alone and every combination within the budget",
    )
    p.set_defaults(func=cmd_explore)
    return p


def _jsonable(result):
    out = dict(result)
    out["points"] = [{**p, "config": p["config"].to_dict()} for p in result["points"]]
    return out


def _jsonable_gen2(result):
    out = dict(result)
    for key in ("singles", "combinations"):
        out[key] = [
            {**p, "config": p["config"].to_dict(), "levers": dataclasses.asdict(p["levers"])}
            for p in result[key]
        ]
    return out


def cmd_explore(args, out=None):
    """Run ``bamboo explore`` (errors are :class:`ExploreError`, one line from the CLI)."""
    out = out or sys.stdout
    if args.top < 0:
        raise ExploreError(f"--top must be 0 or more, not {args.top}")
    models = [m for m in args.models.split(",") if m.strip()]
    if not models:
        raise ExploreError("--models names no model")
    if args.gen2:
        if args.knob or args.csv or args.png:
            raise ExploreError("--gen2 takes no --knob, --csv or --png (it sweeps the levers)")
        from .explore_gen2 import explore_gen2, render_gen2

        result = explore_gen2(args.board, models, args.size, cache=not args.no_cache)
        as_json, as_text = _jsonable_gen2, render_gen2
    else:
        result = explore(
            args.board, models, args.size, parse_knobs(args.knob), cache=not args.no_cache
        )
        if args.csv:
            write_csv(result, args.csv)
        if args.png:
            write_png(result, args.png)
        as_json, as_text = _jsonable, render
    print(
        json.dumps(as_json(result), indent=1, default=str)
        if args.json
        else as_text(result, args.top),
        file=out,
    )
    return 0
