"""``python -m bamboo.bench``: projected speed of zoo models on a configuration, and the toolflow's.

For each model (``name[@resolution[xwidth]]``; ``--all``: every zoo model at its full
resolution and the UltraFace detector) on one configuration (default ``ultra96``):

* the toolflow: ``bamboo compile`` time (import, passes, back end, artifact; wall and
  process CPU time, which does not depend on other load of the machine) and the time of
  one frame on the instruction simulator (``bamboo.runtime.Session``, backend ``isa``);
* bit-exactness: that frame (a real photo) against onnxruntime on the quantized model;
* the cycle model (``bamboo.sim.cycles``) behind the board's memory
  (``bamboo.arch.timing.BOARDS``) at 100, 187.5 and 250 MHz: cycles, MAC utilization of
  the whole network and per op kind (``bamboo.report``), DRAM bytes against the
  compulsory minimum (weights and biases once, tensors crossing PS/PL once), and the
  share of the time lost to memory (against an ideal memory);
* the processor side (``bamboo.arch.timing.HOSTS``): CPU nodes, PS/PL bytes per frame
  (counted by the runtime), projected CPU milliseconds;
* FPS: the fabric alone, and with the processor side overlapped (two frames in flight,
  ``Session.run_batch``), which is the figure reported as ``fps_*``; the bound
  (compute, DMA or CPU) says which side limits it.

``--out DIR`` writes ``DIR/results.json`` (one object per model) and ``DIR/results.md``
(the tables and the targets of issues #8 and #15, each met or missed by how much and
why).
A top-level tool: it joins models, compiler, runtime and sim.
"""

import argparse
import json
import pathlib
import sys
import time

__all__ = [
    "ALL_MODELS",
    "CLOCKS",
    "DEFAULT_MODELS",
    "RTL_RECORD",
    "RTL_RECORD_COMMAND",
    "GEN2_TARGETS",
    "TARGETS",
    "bench_model",
    "check_gen2_targets",
    "check_targets",
    "main",
    "record_rtl_cycles",
    "render_markdown",
    "rtl_cycle_summary",
    "rtl_cycle_text",
]

DEFAULT_MODELS = (
    "mobilenet_v2@224x1.0",
    "mobilenet_v1@224x1.0",
    "mcunet@160x1.0",
    "squeezenet1_1@224x1.0",
    "shufflenet_v2@224x1.0",
)
#: ``--all``: the zoo at full resolution, then the pretrained face detector.
ALL_MODELS = (
    "mobilenet_v1",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "shufflenet_v1",
    "shufflenet_v2",
    "squeezenet1_1",
    "ghostnet",
    "efficientnet_b0",
    "mcunet",
    "tiny_yolov3",
    "efficientnet_b4",
    "ultraface",
)
CLOCKS = (100.0, 187.5, 250.0)
#: The clock of the utilization and bound figures.
REFERENCE_MHZ = 250.0
FACES = "ultraface"

#: Issue #8's targets for the ``ultra96`` config: (model, resolution, field, minimum, text).
TARGETS = (
    ("mobilenet_v2", "224x224", "fps_250mhz", 100.0, "MobileNetV2-1.0@224 >= 100 FPS at 250 MHz"),
    (
        "mobilenet_v2",
        "224x224",
        "dw_utilization",
        0.40,
        "MobileNetV2-1.0@224 depthwise layers >= 40 % MAC utilization",
    ),
    (
        "mobilenet_v2",
        "224x224",
        "pw_utilization",
        0.80,
        "MobileNetV2-1.0@224 pointwise layers >= 80 % MAC utilization",
    ),
    (
        "efficientnet_b4",
        "256x256",
        "fps_100mhz",
        18.0,
        "EfficientNet-B4@256 >= 18 FPS at 100 MHz, squeeze-excite on the CPU",
    ),
)


#: Issue #15's targets (engine generation 2) for the ``ultra96`` config: (model,
#: resolution, field, "min" or "max", goal, text). The shares are of the fabric time at
#: 250 MHz (``op_kinds``: depthwise layers; ``other``, the layers without MACs).
GEN2_TARGETS = (
    ("mobilenet_v2", "224x224", "fps_250mhz", "min", 200.0, "MobileNetV2-1.0@224 >= 200 FPS"),
    (
        "mobilenet_v2",
        "224x224",
        "dram_vs_compulsory",
        "max",
        2.5,
        "MobileNetV2-1.0@224 DRAM traffic <= 2.5x the compulsory minimum",
    ),
    (
        "mobilenet_v2",
        "224x224",
        "dw_time_share",
        "max",
        0.15,
        "MobileNetV2-1.0@224 depthwise layers <= 15 % of the fabric time",
    ),
    ("efficientnet_b4", "256x256", "fps_250mhz", "min", 24.0, "EfficientNet-B4@256 >= 24 FPS"),
    (
        "efficientnet_b4",
        "256x256",
        "fps_100mhz",
        "min",
        10.0,
        "EfficientNet-B4@256 >= 10 FPS at 100 MHz",
    ),
    (
        "efficientnet_b4",
        "256x256",
        "macless_time_share",
        "max",
        0.20,
        "EfficientNet-B4@256 layers without MACs <= 20 % of the fabric time",
    ),
    ("tiny_yolov3", "416x416", "fps_250mhz", "min", 30.0, "Tiny-YOLOv3@416 >= 30 FPS"),
)


#: The cycle model against the ``ultra96`` RTL's CYCLES counter (Verilator, behind the cocotb
#: memory): per compiled layer (tests/sim/test_cycles.py) and per fabric segment of whole
#: blocks (tests/sim/test_rtl_blocks.py), written by the slow tests' full sets.
RTL_RECORD = pathlib.Path(__file__).resolve().parent.parent / "bench" / "rtl_cycles_ultra96.json"
RTL_RECORD_COMMAND = "make bench-tests PYTEST_ARGS=\"-n 0 -k 'ultra96_rtl and all'\""
_RTL_SECTIONS = {
    "layers": "tests/sim/test_cycles.py::test_model_matches_ultra96_rtl_cycle_counters[all]",
    "blocks": "tests/sim/test_rtl_blocks.py::test_blocks_on_ultra96_rtl[all]",
}


def record_rtl_cycles(section, runs, design, path=RTL_RECORD):
    """Write one section of :data:`RTL_RECORD` (the other is kept).

    Parameters
    ----------
    section : {"layers", "blocks"}
    runs : dict
        name -> ``[{"rtl": CYCLES counter, "model": model cycles}]``, one per fabric run.
    design : str
        The simulated Verilog's name (``bamboo_top-<content hash>``).
    """
    import fcntl
    import os

    if section not in _RTL_SECTIONS:
        raise ValueError(f"section must be one of {sorted(_RTL_SECTIONS)}, not {section!r}")
    path = pathlib.Path(path)
    folder = os.open(path.parent, os.O_RDONLY)  # the lock: two tests may write at once
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(
            {
                "about": "The cycle model (bamboo.sim.cycles, memory BOARDS['cocotb']) against the "
                "CYCLES counter of the ultra96 accelerator's RTL in Verilator, per fabric "
                "run; written by the slow tests named in each section.",
                "command": RTL_RECORD_COMMAND,
                "config": "ultra96",
                "memory": "cocotb",
            }
        )
        data[section] = {
            "test": _RTL_SECTIONS[section],
            "design": design,
            "runs": {
                k: [{"rtl": int(r["rtl"]), "model": int(round(r["model"]))} for r in v]
                for k, v in sorted(runs.items())
            },
        }
        path.write_text(json.dumps(data, indent=1) + "\n")
    finally:
        os.close(folder)  # and the lock with it


def rtl_cycle_summary(path=RTL_RECORD):
    """The model's error per section of :data:`RTL_RECORD` (None when there is no record):
    ``{section: {"names", "runs", "worst", "worst_name", "mean_abs", "design"}}``, errors
    ``(model - RTL) / RTL``, plus ``"command"``."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    out = {"command": data["command"], "config": data["config"]}
    for section in _RTL_SECTIONS:
        if section not in data:
            continue
        errors = [
            ((r["model"] - r["rtl"]) / r["rtl"], name)
            for name, runs in data[section]["runs"].items()
            for r in runs
        ]
        worst, worst_name = max(errors, key=lambda e: abs(e[0]))
        out[section] = {
            "names": len(data[section]["runs"]),
            "runs": len(errors),
            "worst": worst,
            "worst_name": worst_name,
            "mean_abs": sum(abs(e) for e, _ in errors) / len(errors),
            "design": data[section]["design"],
        }
    return out


def rtl_cycle_text(summary):
    """One paragraph on :func:`rtl_cycle_summary` for the report."""
    if summary is None:
        return (
            "Cycle model against the RTL: no record (`bench/rtl_cycles_ultra96.json`; "
            f"`{RTL_RECORD_COMMAND}` writes it)."
        )
    parts = []
    for section, what in (("layers", "compiled layers"), ("blocks", "whole blocks")):
        s = summary.get(section)
        if s:
            parts.append(
                f"{s['names']} {what} ({s['runs']} fabric runs): worst "
                f"{s['worst']:+.1%} ({s['worst_name']}), mean |error| "
                f"{s['mean_abs']:.1%}"
            )
    return (
        f"Cycle model against the RTL: the `{summary['config']}` accelerator in Verilator "
        "(the CYCLES counter against the model behind the same memory, cocotb's "
        "AxiRam): " + "; ".join(parts) + ". Recorded in "
        f"`bench/rtl_cycles_ultra96.json` by `{summary['command']}`. The FPS here "
        "are the same model behind the board's memory figures (`BOARDS`), which only a "
        "board can check."
    )


def _key(mhz):
    return f"{mhz:g}".replace(".", "_") + "mhz"


def _parse(spec):
    name, _, rest = spec.partition("@")
    res, _, width = rest.partition("x")
    return name, int(res) if res else None, float(width) if width else 1.0


def _model(spec):
    """``(name, width, resolution "HxW", quantized path, one real photo as float NCHW)``."""
    from bamboo.models import calibration, faces, zoo

    name, res, width = _parse(spec)
    if name == FACES:
        return (
            name,
            1.0,
            f"{faces.WIDTH}x{faces.HEIGHT}",
            faces.build_quantized(),
            faces.calibration_images(count=1),
        )
    res = zoo.ZOO[name].resolution if res is None and name in zoo.ZOO else res
    path = zoo.build_quantized(name, res, width)
    return name, width, f"{res}x{res}", path, calibration.photos(res, count=1)


def _compulsory(compiled):
    """DRAM bytes no schedule can avoid: fabric weights (int8) and biases (int32) read once,
    tensors crossing PS/PL written or read once."""
    g = compiled.graph
    by_name = {n.name: n for n in g.nodes}
    total = 0
    for step in compiled.steps:
        if not step.on_fabric:
            continue
        total += sum(g.tensors[t].size for t in step.inputs + step.outputs)
        for name in step.nodes:
            n = by_name[name]
            if n.op in ("conv", "fc"):
                w = n.attrs["w"]
                total += w.size + 4 * w.shape[0]
    return total


def _fabric_bound(rows):
    dma = sum(r.cycles for r in rows if r.bound.startswith("dma"))
    return "DMA" if dma > sum(r.cycles for r in rows) - dma else "compute"


def timing_estimate(config_name):
    """``(estimated Fmax MHz, record)`` of configuration ``config_name`` from the committed
    Yosys estimates (``boards/estimates/*.json``, ``make resources BOARD=... RECORD=1``;
    the static timing estimate of :mod:`bamboo.boards.timing`), the lowest over the boards
    that build it; ``(None, None)`` when none has one."""
    from bamboo.boards.resources import RECORDED

    best = (None, None)
    for path in sorted(RECORDED.glob("*.json")):
        data = json.loads(path.read_text())
        fmax = data.get("fmax_mhz")
        if (
            data.get("config") == config_name
            and fmax is not None
            and (best[0] is None or fmax < best[0])
        ):
            best = (fmax, f"boards/estimates/{path.name}")
    return best


def projected_clock(config):
    """``(MHz, Fmax estimate or None, its record)``: the clock FPS is projected at, the
    lower of the design clock and the estimated Fmax."""
    fmax, source = timing_estimate(config.name)
    mhz = config.clock_mhz if fmax is None else min(config.clock_mhz, fmax)
    return round(mhz, 1), fmax, source


def bench_model(spec, config_name="ultra96", board="ultra96", simulate=True, top=0, out=None):
    """Measure one model; returns a dict of the figures (and prints a line to ``out``)."""
    from bamboo.arch import preset
    from bamboo.arch.timing import BOARDS, HOSTS
    from bamboo.compiler.backend import artifact_writer, lower_graph
    from bamboo.compiler.cli_inspect import compile_model
    from bamboo.compiler.inspect import macs as node_macs
    from bamboo.sim import cycles

    from . import report

    out = out or sys.stdout
    config = preset(config_name)
    memory, host = BOARDS[board], HOSTS[board]
    t0 = time.perf_counter()
    name, width, resolution, path, image = _model(spec)
    t_build = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    graph = compile_model(str(path))
    compiled = lower_graph(graph, config)
    blob = artifact_writer.build(compiled)
    t_compile = time.perf_counter() - t0
    cpu_compile = time.process_time() - c0
    g = compiled.graph
    net_macs = sum(node_macs(g, n) for n in g.nodes if n.op in ("conv", "fc"))
    cpu = report.host_time(blob, host)
    cpu_macs = sum(node_macs(g, n) for n in g.nodes if n.op in ("conv", "fc") and n.target == "cpu")
    row = {
        "model": name,
        "width": width,
        "resolution": resolution,
        "config": config_name,
        "array": f"{config.rows} x {config.cols}",
        "macs_per_cycle": config.macs_per_cycle,
        "dsp48e2": config.dsp_count,
        "board": board,
        "macs": net_macs,
        "fabric_macs": net_macs - cpu_macs,
        "cpu_macs": cpu_macs,
        "model_build_s": round(t_build, 3),
        "compile_s": round(t_compile, 3),
        "compile_cpu_s": round(cpu_compile, 3),
        "artifact_bytes": len(blob),
        "instructions": compiled.stats["instructions"],
        "dram_bytes": compiled.stats["dram_bytes"],
        "insn_bytes": len(compiled.program),
        "dram_compulsory_bytes": _compulsory(compiled),
        "cpu_ops": cpu["cpu_nodes"],
        "fabric_steps": cpu["fabric_steps"],
        "exchange_bytes": cpu["exchange_bytes"],
        "cpu_workstation_ms": {k: round(v * 1e3, 3) for k, v in cpu["cpu_node_s"].items()},
        "host_slowdown": host.slowdown,
        "cpu_ms": round(cpu["seconds"] * 1e3, 3),
    }
    row["dram_vs_compulsory"] = round(row["dram_bytes"] / row["dram_compulsory_bytes"], 2)
    if simulate:
        from bamboo.runtime.session import Session

        ort = report.ort_session(path)
        feed = {ort.get_inputs()[0].name: image}
        with Session(blob, backend="isa", config=config) as sess:
            t0, c0 = time.perf_counter(), time.process_time()
            ours = sess.run(None, feed)
            row["isa_sim_s"] = round(time.perf_counter() - t0, 3)
            row["isa_sim_cpu_s"] = round(time.process_time() - c0, 3)
            st = sess.stats()
        theirs = ort.run(None, feed)
        row["bitexact"] = len(ours) == len(theirs) and all(
            report.bit_equal(a, b) for a, b in zip(ours, theirs)
        )
        row["ps_pl_bytes"] = st["ps_to_pl"]["bytes"] + st["pl_to_ps"]["bytes"]
    else:
        row["bitexact"] = None
        row["ps_pl_bytes"] = cpu["exchange_bytes"]
    reps = {}
    projected, fmax, fmax_source = projected_clock(config)
    row.update(
        design_mhz=config.clock_mhz,
        fmax_estimate_mhz=fmax,
        fmax_source=fmax_source,
        projected_mhz=projected,
    )
    for mhz in sorted(set(CLOCKS) | {projected}):
        t0 = time.perf_counter()
        rep = reps[mhz] = cycles.model_compiled(compiled, memory, mhz)
        row[f"cycle_model_s_{_key(mhz)}"] = round(time.perf_counter() - t0, 3)
        k = _key(mhz)
        row[f"cycles_{k}"] = rep.total
        row[f"fabric_fps_{k}"] = round(rep.fps, 1)
        row[f"fps_{k}"] = round(1.0 / max(rep.seconds, cpu["seconds"]), 1)
        row[f"fabric_bound_{k}"] = _fabric_bound(report.layer_rows(compiled, rep))
        row[f"bound_{k}"] = "CPU" if cpu["seconds"] > rep.seconds else row[f"fabric_bound_{k}"]
    ref = reps[REFERENCE_MHZ]
    rows = report.layer_rows(compiled, ref)
    kinds = report.kind_summary(rows, config)
    ideal = cycles.model_compiled(compiled, BOARDS["ideal"], REFERENCE_MHZ)
    row["cycles"] = ref.total
    row["mac_utilization"] = round(
        sum(r.macs for r in rows) / (config.macs_per_cycle * ref.total), 4
    )
    for short, kind in (("conv", "conv"), ("dw", "depthwise"), ("pw", "pointwise")):
        row[f"{short}_utilization"] = (
            round(kinds[kind]["utilization"], 4) if kind in kinds else None
        )
    row["op_kinds"] = {
        k: {f: round(v, 4) if isinstance(v, float) else v for f, v in d.items()}
        for k, d in kinds.items()
    }
    row["dw_time_share"] = round(kinds.get("depthwise", {}).get("share", 0.0), 4)
    row["macless_time_share"] = round(kinds.get("other", {}).get("share", 0.0), 4)
    row["memory_stall_share"] = round(1.0 - ideal.total / ref.total, 4)
    row["ideal_memory_fabric_fps_250mhz"] = round(ideal.fps, 1)
    row["bound"] = row[f"bound_{_key(REFERENCE_MHZ)}"]
    for what in ("fps", "fabric_fps", "bound"):
        row[f"{what}_projected"] = row[f"{what}_{_key(projected)}"]
    label = f"{name} {resolution}" + (f" x{width:g}" if width != 1.0 else "")
    print(
        f"{label} on {config_name}/{board}: "
        f"{net_macs / 1e6:.0f} M MACs, compile {t_compile:.2f} s"
        + (
            f", ISA sim {row['isa_sim_s']:.1f} s/frame, bit-exact "
            f"{'yes' if row['bitexact'] else 'NO'}"
            if simulate
            else ""
        )
        + ", "
        + ", ".join(f"{row[f'fps_{_key(m)}']} FPS @ {m:g} MHz" for m in CLOCKS)
        + f", projected {row['fps_projected']} FPS @ {projected:g} MHz (design "
        f"{config.clock_mhz:g} MHz, estimated Fmax "
        + (f"{fmax:g} MHz" if fmax is not None else "none")
        + ")"
        + f" (fabric {row['fabric_fps_250mhz']}, CPU {row['cpu_ms']} ms), "
        f"util {row['mac_utilization']:.1%}, bound {row['bound']}",
        file=out,
        flush=True,
    )
    if top:
        print(report.render_table(rows, ref, top=top), file=out)
    return row


def _why(row, field, goal=None):
    """Why ``row`` misses a target on ``field``: the limiting side, from the figures."""
    if field.startswith("fps"):
        k = field[len("fps_") :]
        bound = row[f"bound_{k}"]
        fabric_fps = row[f"fabric_fps_{k}"]
        fabric_ms = 1e3 / fabric_fps
        if bound == "CPU":
            work = ", ".join(
                f"{op} x{row['cpu_ops'][op]} {ms:.1f} ms"
                for op, ms in sorted(row["cpu_workstation_ms"].items(), key=lambda kv: -kv[1])
            )
            why = (
                f"CPU-bound: the processor side takes {row['cpu_ms']:.1f} ms/frame on the "
                f"board's A53 against {fabric_ms:.1f} ms on the fabric; the runtime's CPU "
                f"nodes take {work or 'nothing'} on the workstation "
                f"(x{row['host_slowdown']:g} on the A53), plus {row['fabric_steps']} "
                f"fabric step{'s' * (row['fabric_steps'] != 1)} and "
                f"{row['ps_pl_bytes'] / 1e3:.0f} KB across PS/PL"
            )
            if goal is None or fabric_fps >= goal:
                return why + f"; the fabric alone gives {fabric_fps:.1f} FPS"
            fabric = dict(row, **{f"bound_{k}": row.get(f"fabric_bound_{k}", "compute")})
            return why + (
                f"; the fabric alone gives {fabric_fps:.1f} FPS, also short: " + _why(fabric, field)
            )
        if bound == "DMA":
            return (
                f"DMA-bound: layers waiting on the load/store units take most of the fabric's "
                f"{fabric_ms:.1f} ms; {row['memory_stall_share']:.0%} of the time at "
                f"{REFERENCE_MHZ:g} MHz is lost to the memory ({row['dram_bytes'] / 1e6:.1f}"
                f" MB/frame, {row['dram_vs_compulsory']}x the compulsory minimum)"
            )
        # The op kind that loses the most array time: its share of the time, unused.
        kinds = {k: v for k, v in row["op_kinds"].items() if k != "fc"}
        worst = max(
            kinds, key=lambda k: kinds[k]["share"] * (1 - kinds[k]["utilization"]), default=None
        )
        if worst is None:
            return f"compute-bound: MAC utilization {row['mac_utilization']:.1%}"
        w = kinds[worst]
        what = (
            "pooling, elementwise and LUT layers (no MACs)"
            if worst == "other"
            else f"{worst} layers at {w['utilization']:.1%} utilization"
        )
        return (
            f"compute-bound: MAC utilization {row['mac_utilization']:.1%} at "
            f"{REFERENCE_MHZ:g} MHz; {what} take {w['share']:.0%} of the time"
        )
    kind = {
        "dw_utilization": "depthwise",
        "pw_utilization": "pointwise",
        "conv_utilization": "conv",
    }[field]
    d = row["op_kinds"].get(kind)
    if d is None:
        return f"no {kind} layers"
    if d["compute_bound_share"] >= 0.5:
        return (
            f"compute-bound: {d['compute_bound_share']:.0%} of these layers' time is "
            f"compute-bound, and while computing them the array does "
            f"{d['occupancy']:.1%} of its peak MACs (the mapping's occupancy)"
        )
    return (
        f"DMA-bound: {1 - d['compute_bound_share']:.0%} of these layers' time waits on "
        f"the load/store units (a buffer word a cycle, or the DDR); while computing, "
        f"the array reaches {d['occupancy']:.1%} of its peak"
    )


def check_targets(rows):
    """Each of :data:`TARGETS` against ``rows``: dicts with ``target``, ``value``, ``goal``,
    ``met``, ``miss`` (the shortfall relative to the goal) and ``why`` when missed."""
    return _check(rows, [(m, res, f, "min", goal, text) for m, res, f, goal, text in TARGETS])


def check_gen2_targets(rows):
    """Each of :data:`GEN2_TARGETS` against ``rows``, as :func:`check_targets` returns them;
    ``miss`` is the shortfall (or the excess, for an at-most target) relative to the goal."""
    return _check(rows, GEN2_TARGETS)


def _why_max(row, field):
    """Why ``row`` is over an at-most target on ``field``: what the figure is made of."""
    if field == "dram_vs_compulsory":
        minimum = row["dram_bytes"] / row["dram_vs_compulsory"]
        return (
            f"{row['dram_bytes'] / 1e6:.1f} MB/frame against {minimum / 1e6:.1f} MB "
            "compulsory: every fabric layer stores its output to DDR and the next loads it "
            "back (no layer fusion on chip), and tiles reload halos and weights"
        )
    kind = {"dw_time_share": "depthwise", "macless_time_share": "other"}[field]
    d = row["op_kinds"][kind]
    what = (
        "layers without MACs (pools, Add, channel scale, tables)"
        if kind == "other"
        else "depthwise layers"
    )
    if d["compute_bound_share"] < 0.5:
        bound = f"{1 - d['compute_bound_share']:.0%} of it waiting on the load/store units"
    elif kind == "other":
        bound = (
            f"{d['compute_bound_share']:.0%} of it compute-bound (the vector unit's "
            "operations, and global pools past its window, which run on the array as "
            "depthwise CONVs with all-ones kernels)"
        )
    else:
        bound = (
            f"{d['compute_bound_share']:.0%} of it compute-bound, the array at "
            f"{d['occupancy']:.1%} of its peak while computing them"
        )
    return f"{what} take {d['share']:.0%} of the fabric time at 250 MHz, {bound}"


def _check(rows, targets):
    """``targets``: ``(model, resolution, field, "min" or "max", goal, text)`` each."""
    out = []
    for model, res, field, sense, goal, text in targets:
        row = next(
            (
                r
                for r in rows
                if r["model"] == model and r["resolution"] == res and r.get("width", 1.0) == 1.0
            ),
            None,
        )
        if row is None or row.get(field) is None:
            out.append(
                dict(
                    target=text,
                    field=field,
                    value=None,
                    goal=goal,
                    met=None,
                    miss=None,
                    why="not benchmarked",
                )
            )
            continue
        value = row[field]
        met = value >= goal if sense == "min" else value <= goal
        why = None
        if not met:
            why = _why(row, field, goal) if sense == "min" else _why_max(row, field)
        out.append(
            dict(
                target=text,
                field=field,
                value=value,
                goal=goal,
                met=met,
                miss=None if met else round(abs(goal - value) / goal, 4),
                why=why,
            )
        )
    return out


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f} %"


def render_markdown(rows, targets, command, seconds=None, rtl=None, gen2=()):
    """The results as Markdown: the main table, the cycle model's measured error (``rtl``,
    :func:`rtl_cycle_summary`), the toolflow's speed, the targets (issue #8's, then issue
    #15's, ``gen2``)."""
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    lines = [
        f"Generated by `{command}`{took} (cycle model and instruction simulator; "
        "no board measurement)."
    ]
    for name, array, macs, dsp in sorted(
        {(r["config"], r["array"], r["macs_per_cycle"], r["dsp48e2"]) for r in rows}
    ):
        lines.append(
            f"Configuration `{name}`: {array} array, {macs} MACs/cycle ({dsp} "
            "DSP48E2), peak "
            + ", ".join(f"{2 * macs * m / 1e3:.0f} GOP/s at {m:g} MHz" for m in CLOCKS)
            + "."
        )
    for name, design, fmax, source, mhz in sorted(
        {
            (
                r["config"],
                r.get("design_mhz"),
                r.get("fmax_estimate_mhz"),
                r.get("fmax_source"),
                r.get("projected_mhz"),
            )
            for r in rows
        },
        key=str,
    ):
        if fmax is None:
            lines.append(
                f"Projected clock of `{name}`: its design clock, {design:g} MHz (no "
                "timing estimate recorded)."
            )
        else:
            lines.append(
                f"Projected clock of `{name}`: {mhz:g} MHz, the lower of the design "
                f"clock ({design:g} MHz) and the estimated Fmax ({fmax:g} MHz: the "
                f"static timing estimate over the Yosys netlist in `{source}`, "
                "`make resources`; an estimate, not Vivado's timing)."
            )
    lines += [
        "",
        "| model | input | GMACs | fabric FPS @187.5 / @250 | CPU ms | FPS @187.5 | "
        "FPS @250 | FPS @100 | FPS projected (MHz) | bound | MAC util | dw util | "
        "pw util | DRAM MB/frame (x min) | PS/PL KB | CPU ops | bit-exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ops = ", ".join(f"{k} {v}" for k, v in r["cpu_ops"].items()) or "-"
        exact = {True: "yes", False: "**no**", None: "-"}[r["bitexact"]]
        name = r["model"] + (f" x{r['width']:g}" if r.get("width", 1.0) != 1.0 else "")
        lines.append(
            f"| {name} | {r['resolution']} | {r['macs'] / 1e9:.3f} | "
            f"{r['fabric_fps_187_5mhz']:.1f} / {r['fabric_fps_250mhz']:.1f} | "
            f"{r['cpu_ms']:.1f} | {r['fps_187_5mhz']:.1f} | {r['fps_250mhz']:.1f} | "
            f"{r['fps_100mhz']:.1f} | {r['fps_projected']:.1f} ({r['projected_mhz']:g}) | "
            f"{r['bound']} | {_pct(r['mac_utilization'])} | "
            f"{_pct(r['dw_utilization'])} | {_pct(r['pw_utilization'])} | "
            f"{r['dram_bytes'] / 1e6:.1f} ({r['dram_vs_compulsory']:.1f}x) | "
            f"{r['ps_pl_bytes'] / 1e3:.1f} | {ops} | {exact} |"
        )
    lines += [
        "",
        "Fabric FPS: the cycle model behind the board's memory (`arch/timing.py` "
        "`BOARDS`). CPU ms: the processor side per frame, the runtime's own CPU work "
        "timed here and scaled to the board's A53 (`HOSTS`). FPS: both overlapped, two "
        "frames in flight, as 1 / max(fabric, CPU) (an upper bound); FPS projected: "
        "the same at the projected clock above; bound: what "
        "limits it at 250 MHz (CPU, DMA: layers waiting on the load/store units, or "
        "compute). Utilization: the network's MACs over rows x cols per cycle at 250 MHz. "
        "DRAM: bytes the program loads and stores per frame, and "
        "that over the compulsory minimum (weights and biases once, PS/PL tensors "
        "once).",
        "",
        rtl_cycle_text(rtl),
        "",
        "Toolflow speed on this machine (wall seconds; CPU seconds in results.json):",
        "",
        "| model | compile s | ISA sim s/frame | cycles @250 | memory stall @250 | "
        "fabric FPS @250, ideal memory |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        isa = "-" if r.get("isa_sim_s") is None else f"{r['isa_sim_s']:.1f}"
        lines.append(
            f"| {r['model']} | {r['compile_s']:.2f} | {isa} | {r['cycles']:,} | "
            f"{_pct(r['memory_stall_share'])} | "
            f"{r['ideal_memory_fabric_fps_250mhz']:.1f} |"
        )
    for title, group, word in (
        ("Targets (issue #8, `ultra96`):", targets, "short"),
        ("Targets (issue #15, engine generation 2, `ultra96`, 250 MHz unless said):", gen2, "off"),
    ):
        if not group:
            continue
        lines += ["", title, ""]
        for t in group:
            if t["met"] is None:
                lines.append(f"- {t['target']}: {t['why']}")
                continue
            value = f"{t['value']:.1f}" if t["goal"] > 1 else _pct(t["value"])
            if t["field"] == "dram_vs_compulsory":
                value = f"{t['value']:.2f}x"
            if t["met"]:
                lines.append(f"- {t['target']}: **met** ({value})")
            else:
                lines.append(
                    f"- {t['target']}: **missed** ({value}, {t['miss']:.0%} {word}). {t['why']}"
                )
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bamboo.bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "models",
        nargs="*",
        help=f"zoo models as name[@resolution[xwidth]] or {FACES} "
        f"(default: {' '.join(DEFAULT_MODELS)})",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="every zoo model at full resolution and the face detector",
    )
    p.add_argument("--config", default="ultra96")
    p.add_argument(
        "--board",
        default="ultra96",
        help="memory and processor timing (arch/timing.py BOARDS, HOSTS)",
    )
    p.add_argument(
        "--no-sim",
        action="store_true",
        help="skip the instruction simulator (and the bit-exact check)",
    )
    p.add_argument("--top", type=int, default=0, help="print the N slowest layers")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--out", help="write OUT/results.json and OUT/results.md")
    args = p.parse_args(argv)
    models = list(ALL_MODELS) if args.all else (args.models or list(DEFAULT_MODELS))
    rows = []
    start = time.perf_counter()
    for k, spec in enumerate(models):
        print(
            f"[{k + 1}/{len(models)}] {spec} ({time.perf_counter() - start:.0f} s so far)",
            file=sys.stderr,
            flush=True,
        )
        rows.append(bench_model(spec, args.config, args.board, not args.no_sim, args.top))
    targets = check_targets(rows) if args.config == "ultra96" else []
    gen2 = check_gen2_targets(rows) if args.config == "ultra96" else []
    rtl = rtl_cycle_summary() if args.config == "ultra96" else None
    print(
        rtl_cycle_text(rtl)
        if args.config == "ultra96"
        else f"Cycle model against the RTL: measured on ultra96 only, not on {args.config}."
    )
    for t in [*targets, *gen2]:
        state = {
            True: "met",
            False: f"MISSED by {t['miss']:.0%}" if t["miss"] else "",
            None: "n/a",
        }[t["met"]]
        print(f"target: {t['target']}: {state}" + (f" ({t['why']})" if t["why"] else ""))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        command = "python -m bamboo.bench " + " ".join(argv if argv is not None else sys.argv[1:])
        (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        (out / "results.md").write_text(
            render_markdown(rows, targets, command, time.perf_counter() - start, rtl, gen2)
        )
        print(
            f"wrote {out / 'results.json'} and {out / 'results.md'} "
            f"({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
