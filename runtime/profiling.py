"""Per-layer profile of a session: where each layer runs, its MACs, cycles and time.

:func:`profile` runs a :class:`~bamboo.runtime.session.Session` on one input and joins
three sources, each labelled where it is shown:

* the artifact's schedule (fabric segments and CPU steps, the layers of each segment,
  every node's op);
* the cycle model (``bamboo.sim.cycles``, imported when present) for the fabric
  layers: cycles and MACs per layer, projected at the configuration's clock behind a
  memory model (``bamboo.arch.timing.BOARDS``);
* the session's statistics: each fabric segment's wall time from start to done and,
  when the backend has a clock (``rtl``, ``board``), the engine's ``CYCLES`` counter;
  each CPU node's wall time; the PS/PL transfers (count, bytes, seconds).

A segment's wall time is what the backend took: the instruction simulator's own time on
``isa``, the emulated fabric time on ``isa-paced``, the RTL simulation's on ``rtl``, the
engine's on the board. :func:`throughput` measures frames per second with and without
the pipeline of :meth:`Session.run_batch`. :func:`render` prints the table,
:func:`save_chart` draws it (matplotlib, imported only there).
"""

import importlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from bamboo.arch.timing import BOARDS

from .errors import RuntimeBambooError

__all__ = [
    "LayerRow",
    "Profile",
    "SegmentRow",
    "WALL_MEANING",
    "profile",
    "render",
    "save_chart",
    "throughput",
]

#: What a fabric segment's wall time means on each backend.
WALL_MEANING = {
    "isa": "instruction simulator time, not fabric time",
    "isa-paced": "emulated fabric time (cycle model, sim/pacing.py)",
    "rtl": "RTL simulation time, not fabric time",
    "board": "measured on the board",
}

#: The cycle model (module, function), found when asked for like the simulator backends
#: (session.BACKENDS): the runtime does not depend on bamboo.sim, which depends on it.
CYCLE_MODEL = ("bamboo.sim.cycles", "model_program")


@dataclass
class LayerRow:
    """One layer (fabric) or node (CPU) of the schedule, per frame.

    ``seconds`` is the cycle model's projection for a fabric layer (``source`` ``"model"``)
    and the measured wall time for a CPU node (``"measured"``); ``cycles`` and ``bound``
    come from the cycle model (None and ``""`` without it, or on the CPU).
    """

    step: int
    name: str
    op: str
    where: str
    macs: object
    cycles: object
    seconds: object
    source: str
    bound: str = ""


@dataclass
class SegmentRow:
    """One fabric segment (a run of the engine), per frame."""

    step: int
    layers: int
    model_cycles: object  # cycle model, None without it
    counter_cycles: object  # the engine's CYCLES counter, None when it reads zero
    wall_seconds: float  # start to done, as the backend took it
    in_bytes: int  # PS->PL transfer before the run
    out_bytes: int  # PL->PS transfer after it


@dataclass
class Profile:
    """A per-layer profile (:func:`profile`); ``to_dict()`` for JSON."""

    name: str
    backend: str
    config: str
    clock_mhz: float
    memory: object
    frames: int
    rows: list = field(default_factory=list)
    segments: list = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    throughput: object = None
    emulation: object = None  # isa-paced: {"stretch", "memory", "clock_mhz"}

    def to_dict(self):
        return asdict(self)


def _cpu_macs(node, out_shape):
    """Multiply-accumulates of a CPU conv or fc node (0 for the other ops)."""
    w = node["attrs"].get("w")
    if node["op"] not in ("conv", "fc") or w is None:
        return 0
    return int(np.prod(out_shape)) * int(w.size) // int(w.shape[0])


def _cycle_model(session, memory, clock_mhz):
    if memory not in BOARDS:
        raise RuntimeBambooError(
            f"memory must be one of {', '.join(sorted(BOARDS))}, not {memory!r}"
        )
    try:
        model_program = getattr(importlib.import_module(CYCLE_MODEL[0]), CYCLE_MODEL[1])
    except ImportError:  # a board install without the simulator: counters only
        return None
    return model_program(
        session.config, session.artifact.program, session.meta, BOARDS[memory], clock_mhz
    )


def profile(session, input_feed=None, repeat=1, *, raw=False, memory="ultra96", clock_mhz=None):
    """Run ``input_feed`` ``repeat`` times and profile it per layer.

    Parameters
    ----------
    session : Session
    input_feed : dict or array, optional
        As :meth:`Session.run` takes it. None: profile the frames the session ran since
        its last :meth:`~Session.reset_stats` (a slow backend need not run another).
    repeat : int
        Frames to run; times are means per frame.
    raw : bool
        ``input_feed`` holds codes.
    memory : str
        Memory timing of the cycle model (``bamboo.arch.timing.BOARDS``).
    clock_mhz : float, optional
        Clock of the projection and of the counters' conversion (default the configuration's).

    Returns
    -------
    Profile
    """
    if repeat < 1:
        raise RuntimeBambooError(f"repeat must be at least 1, not {repeat!r}")
    clock = float(session.config.clock_mhz if clock_mhz is None else clock_mhz)
    if input_feed is not None:
        session.reset_stats()
        for _ in range(repeat):
            session.run(None, input_feed, raw=raw)
    st = session.stats()
    if not st["frames"]:
        raise RuntimeBambooError("nothing to profile: the session ran no frame")
    report = _cycle_model(session, memory, clock)
    model = {}
    if report is not None:
        for row in report.layers:
            model.setdefault(row.node, row)
    meta, n = session.meta, st["frames"]
    placement = meta.placement
    layers = sorted((ly.first, ly.node) for ly in meta.layers)
    segments = {s["step"]: s for s in st["segments"]}
    prof = Profile(
        meta.name,
        session.backend,
        session.config.name,
        clock,
        memory if report is not None else None,
        n,
    )
    pacer = getattr(session.device, "pacer", None)
    if pacer is not None:
        prof.emulation = {
            "stretch": pacer.stretch,
            "memory": pacer.memory.name,
            "clock_mhz": pacer.clock_mhz,
        }
    for k, step in enumerate(session.steps):
        if step.on_fabric:
            lo, hi = step.insn_start, step.insn_start + step.insn_count
            names = [name for first, name in layers if lo <= first < hi]
            for name in names:
                m = model.get(name)
                prof.rows.append(
                    LayerRow(
                        k,
                        name,
                        placement[name].op if name in placement else "-",
                        "fabric",
                        m.macs if m else None,
                        m.cycles if m else None,
                        m.cycles / (clock * 1e6) if m else None,
                        "model" if m else "-",
                        m.bound if m else "",
                    )
                )
            seg = segments[k]
            runs = max(seg["runs"], 1)
            model_cycles = (
                sum(model[x].cycles for x in names if x in model) if report is not None else None
            )
            prof.segments.append(
                SegmentRow(
                    k,
                    len(names),
                    model_cycles,
                    seg["cycles"] // runs or None,
                    seg["seconds"] / runs,
                    seg["in_bytes"] // runs,
                    seg["out_bytes"] // runs,
                )
            )
        else:
            for name in step.nodes:
                d = st["cpu_nodes"].get(name, {"runs": 0, "seconds": 0.0})
                node = session.nodes[name]
                out = session.tensors[node["outputs"][0]].shape
                prof.rows.append(
                    LayerRow(
                        k,
                        name,
                        node["op"],
                        "cpu",
                        _cpu_macs(node, out),
                        None,
                        d["seconds"] / max(n, 1),
                        "measured",
                    )
                )
    prof.totals = _totals(prof, st, report, clock, n)
    return prof


def _totals(prof, st, report, clock, n):
    segs = prof.segments
    counters = [s.counter_cycles for s in segs]
    fabric_macs = [r.macs for r in prof.rows if r.where == "fabric"]
    t = {
        "segments": len(segs),
        "fabric_layers": sum(r.where == "fabric" for r in prof.rows),
        "cpu_nodes": sum(r.where == "cpu" for r in prof.rows),
        "fabric_macs": sum(fabric_macs) if None not in fabric_macs else None,
        "cpu_macs": sum(r.macs for r in prof.rows if r.where == "cpu"),
        "model_cycles": report.total if report is not None else None,
        "model_seconds": report.total / (clock * 1e6) if report is not None else None,
        "counter_cycles": sum(counters) if segs and None not in counters else None,
        "fabric_wall_seconds": st["fabric_seconds"] / max(n, 1),
        "cpu_seconds": st["cpu_seconds"] / max(n, 1),
        "frame_seconds": st["frame_seconds"] / max(n, 1),
    }
    t["counter_seconds"] = (
        t["counter_cycles"] / (clock * 1e6) if t["counter_cycles"] is not None else None
    )
    for key in ("ps_to_pl", "pl_to_ps"):
        d = st[key]
        t[key] = {
            "transfers": d["transfers"] / max(n, 1),
            "bytes": d["bytes"] / max(n, 1),
            "seconds": d["seconds"] / max(n, 1),
        }
    fabric = t["counter_seconds"] if t["counter_seconds"] is not None else t["model_seconds"]
    t["fabric_source"] = (
        "counters"
        if t["counter_seconds"] is not None
        else ("model" if fabric is not None else None)
    )
    if fabric is not None:
        xfer = t["ps_to_pl"]["seconds"] + t["pl_to_ps"]["seconds"]
        t["projected_frame_seconds"] = fabric + t["cpu_seconds"] + xfer
        t["projected_split"] = {"fabric": fabric, "cpu": t["cpu_seconds"], "transfers": xfer}
    else:
        t["projected_frame_seconds"] = None
        t["projected_split"] = None
    return t


def throughput(session, input_feed, frames=8, rounds=3, *, raw=False):
    """Frames per second over ``frames`` frames, sequential and pipelined.

    Runs :meth:`Session.run_batch` with ``pipeline=False`` and ``pipeline=True`` in
    turn, ``rounds`` times each after a warm-up (which makes the second DMA window and,
    on a paced device, the memoized results), and keeps each mode's best round: the
    machine's other load only ever slows a round down. Also checks that both modes give
    the same outputs.

    Returns
    -------
    dict
        ``frames``, ``sequential_fps``, ``pipelined_fps``, ``gain`` (pipelined over
        sequential), ``outputs_equal``.
    """
    if frames < 2:
        raise RuntimeBambooError(f"frames must be at least 2 to pipeline, not {frames!r}")
    feeds = [input_feed] * frames
    session.run_batch(feeds[:2], raw=raw, pipeline=True)
    best = {False: float("inf"), True: float("inf")}
    outs = {}
    for _ in range(max(1, rounds)):
        for mode in (False, True):
            start = time.perf_counter()
            outs[mode] = session.run_batch(feeds, raw=raw, pipeline=mode)
            best[mode] = min(best[mode], time.perf_counter() - start)
    equal = all(
        np.array_equal(a, b) for fa, fb in zip(outs[False], outs[True]) for a, b in zip(fa, fb)
    )
    seq, par = frames / best[False], frames / best[True]
    return {
        "frames": frames,
        "rounds": max(1, rounds),
        "sequential_fps": seq,
        "pipelined_fps": par,
        "gain": par / seq,
        "outputs_equal": equal,
    }


# Text --------------------------------------------------------------------------------------


def _num(v, fmt="{:d}"):
    return "-" if v is None else fmt.format(v)


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3f} ms"


def render(prof, width=44):
    """The profile as a text table with totals."""
    memory = f"cycle model behind {prof.memory} memory" if prof.memory else "no cycle model"
    lines = [
        f"{prof.name or 'model'} on {prof.backend} ({prof.config}, {prof.clock_mhz:g} MHz, "
        f"{memory}), {prof.frames} frame(s); times per frame",
        f"{'step':>4}  {'layer':<{width}} {'op':<11} {'where':<6} {'MACs':>11} "
        f"{'cycles':>9} {'time us':>10}  source",
    ]
    segs = {s.step: s for s in prof.segments}
    last = None
    for r in prof.rows:
        if last is not None and last != r.step and last in segs:
            lines.append(_segment_line(segs[last], prof))
        last = r.step
        t = None if r.seconds is None else r.seconds * 1e6
        name = r.name if len(r.name) <= width else "…" + r.name[-(width - 1) :]
        lines.append(
            f"{r.step:>4}  {name:<{width}} {r.op:<11} {r.where:<6} {_num(r.macs):>11} "
            f"{_num(r.cycles):>9} {_num(t, '{:.2f}'):>10}  {r.source}"
            + (f" ({r.bound})" if r.bound else "")
        )
    if last in segs:
        lines.append(_segment_line(segs[last], prof))
    lines += _total_lines(prof)
    return "\n".join(lines)


def _segment_line(s, prof):
    model = (
        "-"
        if s.model_cycles is None
        else f"{s.model_cycles} cycles = {s.model_cycles / prof.clock_mhz:.2f} us"
    )
    counters = "-" if s.counter_cycles is None else f"{s.counter_cycles} cycles"
    return (
        f"{'':>4}  `- segment {s.step}: {s.layers} layers; model {model}; counters "
        f"{counters}; wall {_ms(s.wall_seconds)}; PS->PL {s.in_bytes} B, "
        f"PL->PS {s.out_bytes} B"
    )


def _total_lines(prof):
    t = prof.totals
    wall = WALL_MEANING.get(prof.backend, "measured")
    if prof.emulation:
        e = prof.emulation
        wall += (
            f": {e['stretch']:g}x the model at {e['clock_mhz']:g} MHz behind {e['memory']} memory"
        )
    model = (
        "-"
        if t["model_cycles"] is None
        else f"{t['model_cycles']} cycles = {_ms(t['model_seconds'])} at {prof.clock_mhz:g} MHz"
    )
    counters = (
        "-"
        if t["counter_cycles"] is None
        else f"{t['counter_cycles']} cycles = {_ms(t['counter_seconds'])}"
    )
    macs = "-" if t["fabric_macs"] is None else f"{t['fabric_macs']} MACs"
    out = [
        f"fabric: {t['segments']} segments, {t['fabric_layers']} layers, {macs}; "
        f"cycle model {model}; counters {counters}; wall {_ms(t['fabric_wall_seconds'])} "
        f"({wall})",
        f"cpu: {t['cpu_nodes']} nodes, {t['cpu_macs']} MACs, {_ms(t['cpu_seconds'])} measured",
    ]
    xfer = []
    for key, label in (("ps_to_pl", "PS->PL"), ("pl_to_ps", "PL->PS")):
        d = t[key]
        xfer.append(
            f"{label} {d['transfers']:g} transfers, {d['bytes']:.0f} bytes, {_ms(d['seconds'])}"
        )
    out.append("transfers: " + "; ".join(xfer))
    line = f"frame: {_ms(t['frame_seconds'])} measured on {prof.backend}"
    if t["projected_frame_seconds"] is not None:
        p, sp = t["projected_frame_seconds"], t["projected_split"]
        share = ", ".join(f"{k} {v / p:.0%}" for k, v in sp.items()) if p else ""
        line += (
            f"; fabric ({t['fabric_source']}) + cpu + transfers = {_ms(p)} "
            f"({share}; cpu and transfers as measured on this machine)"
        )
    out.append(line)
    if prof.throughput:
        tp = prof.throughput
        out.append(
            f"throughput over {tp['frames']} frames on {prof.backend}: sequential "
            f"{tp['sequential_fps']:.2f} frames/s, pipelined {tp['pipelined_fps']:.2f} "
            f"frames/s, gain {tp['gain']:.2f}x (best of {tp['rounds']} rounds; outputs "
            f"{'equal' if tp['outputs_equal'] else 'DIFFER'})"
        )
    return out


# Chart -------------------------------------------------------------------------------------


def save_chart(prof, path, top=60):
    """Draw the profile as a PNG: per-layer time (left), the frame's split (right).

    Fabric layers show the cycle model's projection, CPU nodes their measured time;
    with more than ``top`` rows only the ``top`` slowest are drawn (in schedule order).
    Needs matplotlib (imported here: the board may not have it).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise RuntimeBambooError(
            "--png needs matplotlib (pip install matplotlib); the table and --json do not"
        ) from None
    rows = [r for r in prof.rows if r.seconds]  # not FINISH (0 cycles): a log axis
    if len(rows) > top:
        keep = set(id(r) for r in sorted(rows, key=lambda r: -r.seconds)[:top])
        rows = [r for r in rows if id(r) in keep]
    colors = {"fabric": "#2f7d4f", "cpu": "#c0504d"}
    fig = Figure(figsize=(11, max(3.0, 0.22 * len(rows) + 1.5)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(1, 2, width_ratios=(4, 1), wspace=0.35)
    ax = fig.add_subplot(grid[0])
    y = np.arange(len(rows))
    ax.barh(y, [r.seconds * 1e6 for r in rows], color=[colors[r.where] for r in rows])
    ax.set_xscale("log")
    ax.set_yticks(y, [f"{r.name[-40:]} ({r.op})" for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("time per frame (us, log): fabric = cycle model, cpu = measured")
    ax.set_title(
        f"{prof.name or 'model'} on {prof.backend} ({prof.config}, {prof.clock_mhz:g} MHz)",
        fontsize=9,
    )
    ax.legend(
        handles=[Patch(color=c, label=w) for w, c in colors.items()], loc="lower right", fontsize=7
    )
    side = fig.add_subplot(grid[1])
    split = prof.totals.get("projected_split") or {}
    bottom = 0.0
    for (k, v), c in zip(split.items(), ("#2f7d4f", "#c0504d", "#4f81bd")):
        side.bar([0], [v * 1e3], bottom=[bottom], color=c, label=k)
        bottom += v * 1e3
    side.set_xticks([])
    side.set_ylabel("ms per frame")
    side.set_title("frame split", fontsize=9)
    if split:
        side.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
