"""``bamboo demo``: Bamboo end to end on a trained model and a real pretrained one.

1. The digits classifier (a small MobileNetV2-style net trained on scikit-learn's
   digits), quantized by onnxruntime and compiled for the ``ultra96`` configuration:
   float, onnxruntime int8 and Bamboo accuracy on the whole held-out split, Bamboo
   being the compiled program on the instruction simulator (``bamboo.sim.isa``) with
   the CPU steps in the runtime, and every output compared bit for bit with onnxruntime.
2. Its fabric/CPU partition, as ``bamboo inspect`` prints it.
3. A few of those images through the RTL of the whole accelerator (``hw/top.py`` under
   Verilator, the ``tiny`` configuration: the RTL simulates every cycle), compared bit
   for bit with onnxruntime and the instruction simulator, with the hardware's cycle
   counter against the cycle model. The simulator builds in the background while
   section 1 runs (minutes the first time, then cached under ``build/sim``).
4. The cycle model (``bamboo.sim.cycles``) on ``ultra96``: the per-layer cycle table,
   frames per second at 187.5 and 250 MHz (fabric, processor side, both overlapped),
   the same for MobileNetV2-1.0@224, and PNGs of per-layer MAC utilization and a
   roofline under the array's peak and the DDR bandwidth.
5. The pretrained UltraFace detector (vendored in ``models/pretrained``) on the instruction
   simulator on a photo, both outputs compared bit for bit with onnxruntime, the faces
   decoded and drawn into ``detect.png`` (``bamboo.demo_dense``).

A top-level tool: it joins models, compiler, runtime and sim. Every figure is computed
when the demo runs; nothing is recorded.
"""

import pathlib
import sys
import time

import numpy as np

from .report import bit_equal as _same
from .report import ort_session as _ort_session
from .report import progress

__all__ = ["CLOCKS", "main"]

CLOCKS = (187.5, 250.0)
CONFIG = "ultra96"
BOARD = "ultra96"
RTL_CONFIG = "tiny"


def _now():
    return time.perf_counter()


def _compile(q_path, config_name):
    from bamboo.arch import preset
    from bamboo.compiler.backend import artifact_writer, lower_graph
    from bamboo.compiler.cli_inspect import compile_model

    graph = compile_model(str(q_path))
    compiled = lower_graph(graph, preset(config_name))
    return graph, compiled, artifact_writer.build(compiled)


def digits_section(state, rtl_images=0):
    """Section 1 and 2: accuracy three ways on the held-out split, then the partition.
    Starts the RTL build (section 3) in the background once the model exists."""
    from bamboo.compiler.inspect import render
    from bamboo.models import digits
    from bamboo.runtime.session import Session

    print("== 1. digits classifier (trained here, MobileNetV2-style) ==")
    t0 = _now()
    print("  training or loading the model and quantizing it with onnxruntime ...", flush=True)
    float_path, q_path = digits.build_float(), digits.build_quantized()
    print(f"  model: {q_path.name} (ready in {_now() - t0:.1f} s)")
    if rtl_images > 0:
        reason = _rtl_unavailable()
        if reason:
            state["rtl_skipped"] = reason
        else:
            state["rtl"] = start_rtl(q_path)
            print(
                f"  building the RTL simulator of the {RTL_CONFIG} config in the background "
                "(section 3)",
                flush=True,
            )
    _, _, x_te, y_te = digits.dataset()
    t0 = _now()
    graph, compiled, blob = _compile(q_path, CONFIG)
    print(
        f"  compiled for {CONFIG} in {_now() - t0:.2f} s: {len(blob):,} bytes, "
        f"{compiled.stats['instructions']} instructions"
    )
    fsess, qsess = _ort_session(float_path), _ort_session(q_path)
    name = qsess.get_inputs()[0].name
    hits = {"float": 0, "onnxruntime int8": 0, "bamboo (instruction simulator)": 0}
    exact = 0
    start = _now()
    with Session(blob, backend="isa") as sess:
        for i in range(len(x_te)):
            x = x_te[i : i + 1]
            (ours,) = sess.run(None, {name: x})
            (theirs,) = qsess.run(None, {name: x})
            exact += _same(ours, theirs)
            hits["float"] += int(np.argmax(fsess.run(None, {name: x})[0]) == y_te[i])
            hits["onnxruntime int8"] += int(np.argmax(theirs) == y_te[i])
            hits["bamboo (instruction simulator)"] += int(np.argmax(ours) == y_te[i])
            if (i + 1) % 25 == 0 or i + 1 == len(x_te):
                progress(
                    "held-out split on the instruction simulator", i + 1, len(x_te), start, _now()
                )
    print(f"  accuracy on {len(x_te)} held-out digits:")
    for label, n in hits.items():
        print(f"    {label:<32} {n / len(x_te):.2%}")
    print(
        f"  bit-exact with onnxruntime: {exact}/{len(x_te)} images "
        f"({'yes' if exact == len(x_te) else 'NO'})"
    )
    print()
    print("== 2. fabric/CPU partition of the digits model (bamboo inspect) ==")
    print(render(graph, title=q_path.name))
    print()
    state.update(
        digits_q=q_path, digits_compiled=compiled, digits_blob=blob, digits_x=x_te, digits_y=y_te
    )
    return exact == len(x_te)


def _rtl_unavailable():
    try:
        import bamboo.sim.rtl_device as rtl
    except ImportError as exc:
        return str(exc)
    return rtl.unavailable()


def start_rtl(q_path):
    """Compile ``q_path`` for the RTL's configuration and open an RTL session in a
    background thread (the first run builds the simulator: minutes), so the build
    overlaps the instruction-simulator section. Returns ``(compiled, blob, future)``."""
    from concurrent.futures import ThreadPoolExecutor

    from bamboo.runtime.session import Session

    _, compiled, blob = _compile(q_path, RTL_CONFIG)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bamboo-demo-rtl")
    t0 = _now()
    future = pool.submit(lambda: (Session(blob, backend="rtl"), _now() - t0))
    pool.shutdown(wait=False)
    return compiled, blob, future


def rtl_section(state, images):
    """``images`` held-out digits through the RTL (tiny), against onnxruntime and the
    instruction simulator on the same artifact; cycle counter against the cycle model."""
    from bamboo.arch.timing import BOARDS
    from bamboo.runtime.session import Session
    from bamboo.sim import cycles

    print(f"== 3. RTL simulation of the whole accelerator ({RTL_CONFIG} config, Verilator) ==")
    if images <= 0 or "rtl" not in state:
        print(f"  skipped: {state.get('rtl_skipped', '--rtl-images 0')}")
        print()
        return True
    q_path, x_te, y_te = state["digits_q"], state["digits_x"], state["digits_y"]
    compiled, blob, future = state["rtl"]
    model_cycles = cycles.model_compiled(compiled, BOARDS["cocotb"]).total
    qsess = _ort_session(q_path)
    name = qsess.get_inputs()[0].name
    print(
        f"  the digits model compiled for {RTL_CONFIG} ({compiled.stats['instructions']} "
        "instructions); waiting for the simulator (Verilator, built in the background "
        "since section 1, cached under build/sim) ...",
        flush=True,
    )
    try:
        sess, took = future.result()
    except Exception as exc:  # a failed build or start: report it, the demo goes on
        print(f"  the RTL simulation could not start: {type(exc).__name__}: {exc}")
        print()
        return False
    print(f"  simulator up {took:.0f} s after its build started", flush=True)
    ok = True
    with Session(blob, backend="isa") as isa, sess:
        start = _now()
        results = []
        progress("images through the RTL", 0, images, start, start)
        for i in range(images):
            x = x_te[i : i + 1]
            sess.reset_stats()
            (got,) = sess.run(None, {name: x})
            hw_cycles = sum(s["cycles"] for s in sess.stats()["segments"])
            (ref,) = isa.run(None, {name: x})
            (ort,) = qsess.run(None, {name: x})
            results.append((i, got, ref, ort, hw_cycles))
            progress("images through the RTL", i + 1, images, start, _now())
    per = (_now() - start) / images
    print(
        f"  {'image':>5} {'label':>5} {'RTL':>4} {'ISA':>4} {'ORT':>4}  "
        f"{'= ORT':>5} {'= ISA':>5} {'RTL cycles':>10} {'model':>8} {'error':>7}"
    )
    for i, got, ref, ort, hw_cycles in results:
        same_ort, same_isa = _same(got, ort), _same(got, ref)
        ok = ok and same_ort and same_isa
        err = (model_cycles - hw_cycles) / hw_cycles if hw_cycles else float("nan")
        print(
            f"  {i:>5} {y_te[i]:>5} {int(np.argmax(got)):>4} {int(np.argmax(ref)):>4} "
            f"{int(np.argmax(ort)):>4}  {'yes' if same_ort else 'NO':>5} "
            f"{'yes' if same_isa else 'NO':>5} {hw_cycles:>10} {model_cycles:>8} "
            f"{err:>+7.1%}"
        )
    print(
        f"  {images} images, {per:.0f} s of simulation each; all bit-exact with onnxruntime "
        f"and the instruction simulator: {'yes' if ok else 'NO'}"
    )
    print("  (cycle model: the same program behind the cocotb AXI memory, BOARDS['cocotb'])")
    print()
    return ok


def _projection(compiled, blob, q_name, out, tag, top=None):
    """Print the cycle table and FPS of ``compiled`` on ultra96; write its PNGs."""
    from bamboo.arch.timing import BOARDS, HOSTS
    from bamboo.sim import cycles

    from . import report

    memory, host = BOARDS[BOARD], HOSTS[BOARD]
    reps = {mhz: cycles.model_compiled(compiled, memory, mhz) for mhz in CLOCKS}
    clock = CLOCKS[-1]
    rows = report.layer_rows(compiled, reps[clock])
    print(report.render_table(rows, reps[clock], top=top))
    if top is not None:
        print(f"  (the {top} slowest of {len(rows)} layers; total over all)")
    cpu = report.host_time(blob, host)
    cfg = compiled.config
    print(
        f"  {cfg.name}: {cfg.rows}x{cfg.cols} array ({cfg.macs_per_cycle} MACs/cycle), "
        f"DDR {memory.bandwidth_gbps:g} GB/s sustained"
    )
    print(
        f"  processor side: {sum(cpu['cpu_nodes'].values())} CPU nodes {cpu['cpu_nodes']}, "
        f"{cpu['fabric_steps']} fabric steps, {cpu['exchange_bytes']:,} bytes across PS/PL: "
        f"{cpu['workstation_cpu_s'] * 1e3:.2f} ms of CPU time here, projected "
        f"{cpu['seconds'] * 1e3:.2f} ms/frame on the board's A53 (arch/timing.py HOSTS)"
    )
    fps = {}
    for mhz, rep in reps.items():
        both = 1.0 / max(rep.seconds, cpu["seconds"])
        fps[mhz] = both
        util = sum(r.macs for r in report.layer_rows(compiled, rep)) / (
            cfg.macs_per_cycle * rep.total
        )
        print(
            f"  projected at {mhz:g} MHz: {rep.total:,} cycles = {rep.seconds * 1e3:.3f} ms "
            f"= {rep.fps:,.0f} FPS on the fabric (MAC utilization {util:.1%}); "
            f"{both:,.0f} FPS with the processor side overlapped (two frames in flight)"
        )
    kinds = report.kind_summary(rows, cfg)
    print(
        "  per op kind at 250 MHz: "
        + "; ".join(
            f"{k} {v['share']:.0%} of the time at {v['utilization']:.1%} utilization"
            for k, v in kinds.items()
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    title = f"{q_name} on {cfg.name} at {clock:g} MHz (cycle model)"
    u = report.write_utilization_png(rows, cfg, out / f"{tag}_utilization.png", title)
    r = report.write_roofline_png(rows, cfg, memory, clock, out / f"{tag}_roofline.png", title)
    print(f"  wrote {u} and {r}")
    return fps


def cycles_section(state, out, headline=True):
    """Section 4: cycle tables, FPS and PNGs for the digits model and MobileNetV2@224."""
    from bamboo.models import zoo

    print(
        f"== 4. cycle model on {CONFIG} (per-layer cycles at {CLOCKS[-1]:g} MHz, memory {BOARD}) =="
    )
    print("  -- the digits model (input 1x32x32) --")
    _projection(
        state["digits_compiled"], state["digits_blob"], state["digits_q"].name, out, "digits"
    )
    if headline:
        print()
        print("  -- MobileNetV2-1.0@224 from the zoo (random weights; speed only) --")
        t0 = _now()
        print("  building and quantizing it (first run only) ...", flush=True)
        q_path = zoo.build_quantized("mobilenet_v2", 224, 1.0)
        _, compiled, blob = _compile(q_path, CONFIG)
        print(f"  ready in {_now() - t0:.0f} s; {compiled.stats['instructions']} instructions")
        _projection(compiled, blob, q_path.name, out, "mobilenet_v2_224", top=12)
    print()
    return True


def main(out="build/demo", rtl_images=4, headline=True, task="all", image=None):
    """Run the demo; returns the process exit code (non-zero if anything is not bit-exact).

    Parameters
    ----------
    out : str or Path
        Folder of the PNGs.
    rtl_images : int
        Held-out digits run through the RTL simulation (0 skips it).
    headline : bool
        Also project MobileNetV2-1.0@224 (builds it on the first run).
    task : str
        "all" (the sections above), "segment" (the trained digit segmenter,
        ``bamboo.demo_dense``) or "detect" (the face detector, section 5).
    image : str or Path, optional
        Photo for the face detector (default: scikit-image's astronaut).
    """
    t0 = _now()
    out = pathlib.Path(out)
    from .demo_dense import detect_section, segment_section

    if task in ("segment", "detect"):
        ok = (
            segment_section(out, _compile)
            if task == "segment"
            else detect_section(out, _compile, image)
        )
        print(
            f"demo finished in {_now() - t0:.0f} s: "
            f"{'all outputs bit-exact with onnxruntime' if ok else 'MISMATCH'}"
        )
        return 0 if ok else 1
    state = {}
    ok = digits_section(state, rtl_images)
    ok = rtl_section(state, rtl_images) and ok
    ok = cycles_section(state, out, headline) and ok
    ok = detect_section(out, _compile, image, "5. UltraFace RFB-320 face detector") and ok
    print(
        f"demo finished in {_now() - t0:.0f} s: "
        f"{'all outputs bit-exact with onnxruntime' if ok else 'MISMATCH against onnxruntime'}"
    )
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
