"""``python -m bamboo.bench``: compile time, simulator time and projected FPS of zoo models.

For each model (``name[@resolution[xwidth]]``, default the list below) on one
configuration (default ``ultra96``): the time of ``bamboo compile`` (import, passes,
back end, artifact; wall and process CPU time: the CPU time does not depend on
other load of the machine), the time of one frame on the instruction simulator
(``bamboo.sim.isa``, CPU steps by the reference executor), instruction counts,
DRAM bytes moved, MACs, and the cycle model's (``bamboo.sim.cycles``) frame time and
FPS at 187.5 and 250 MHz behind the board's memory (``bamboo.arch.timing.BOARDS``).
A top-level tool: it joins models, compiler and sim, which do not import one another.
"""

import argparse
import json
import sys
import time

__all__ = ["DEFAULT_MODELS", "bench_model", "main"]

DEFAULT_MODELS = ("mobilenet_v2@224x1.0", "mobilenet_v1@224x1.0", "mcunet@160x1.0",
                  "squeezenet1_1@224x1.0", "shufflenet_v2@224x1.0")
CLOCKS = (187.5, 250.0)


def _parse(spec):
    name, _, rest = spec.partition("@")
    res, _, width = rest.partition("x")
    return name, int(res) if res else None, float(width) if width else 1.0


def bench_model(spec, config_name="ultra96", board="ultra96", simulate=True, top=0, out=None):
    """Measure one model; returns a dict of the figures (and prints them to ``out``)."""
    import numpy as np

    from bamboo.arch import preset
    from bamboo.arch.timing import BOARDS
    from bamboo.compiler import executor
    from bamboo.compiler.backend import artifact_writer, lower_graph
    from bamboo.compiler.cli_inspect import compile_model
    from bamboo.models import zoo
    from bamboo.sim import cycles
    from bamboo.sim.isa import run_artifact

    out = out or sys.stdout
    name, res, width = _parse(spec)
    config = preset(config_name)
    path = zoo.build_quantized(name, res, width)
    t0, c0 = time.perf_counter(), time.process_time()
    graph = compile_model(str(path))
    compiled = lower_graph(graph, config)
    blob = artifact_writer.build(compiled)
    t_compile = time.perf_counter() - t0
    cpu_compile = time.process_time() - c0
    row = {"model": spec, "config": config_name, "compile_s": round(t_compile, 3),
           "compile_cpu_s": round(cpu_compile, 3),
           "artifact_bytes": len(blob), "instructions": compiled.stats["instructions"],
           "dram_bytes": compiled.stats["dram_bytes"], "macs": compiled.stats["macs"],
           "cpu_nodes": sum(n.target == "cpu" for n in compiled.graph.nodes)}
    if simulate:
        g = compiled.graph
        rng = np.random.default_rng(0)
        values = {}
        for s in g.inputs:
            t = g.tensors[s.tensor]
            x = rng.integers(t.q.qmin, t.q.qmax + 1, s.onnx_shape).astype(t.q.np_dtype)
            values[s.tensor] = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) \
                if len(x.shape) == 4 else x
        by_name = {n.name: n for n in g.nodes}

        def cpu(nodes, vals):
            for nm in nodes:
                node = by_name[nm]
                vals[node.outputs[0]] = executor.run_node(node, vals, g)

        t0, c0 = time.perf_counter(), time.process_time()
        _, machine = run_artifact(blob, values, config, cpu)
        row["sim_s"] = round(time.perf_counter() - t0, 3)
        row["sim_cpu_s"] = round(time.process_time() - c0, 3)
        row["sim_instructions"] = machine.stats.instructions
    for mhz in CLOCKS:
        t0 = time.perf_counter()
        rep = cycles.model_compiled(compiled, BOARDS[board], mhz)
        row[f"model_s@{mhz:g}"] = round(time.perf_counter() - t0, 3)
        row[f"cycles@{mhz:g}"] = rep.total
        row[f"ms@{mhz:g}"] = round(rep.seconds * 1e3, 3)
        row[f"fps@{mhz:g}"] = round(rep.fps, 1)
        row[f"mac_util@{mhz:g}"] = round(rep.utilization, 3)
    print(f"{spec} on {config_name}/{board}: compile {t_compile:.2f} s "
          f"({cpu_compile:.2f} s CPU)"
          + (f", sim {row['sim_s']:.2f} s/frame ({row['sim_cpu_s']:.2f} s CPU)"
             if simulate else "")
          + f", {row['instructions']} insns, {row['dram_bytes'] / 1e6:.2f} MB moved, "
          f"{row['macs'] / 1e6:.1f} M MACs (incl. padding), "
          + ", ".join(f"{row[f'fps@{m:g}']} FPS @ {m:g} MHz (util {row[f'mac_util@{m:g}']})"
                      for m in CLOCKS), file=out, flush=True)
    if top:
        print(cycles.render(cycles.model_compiled(compiled, BOARDS[board], CLOCKS[-1]), top),
              file=out)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bamboo.bench", description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="*", default=list(DEFAULT_MODELS),
                   help="zoo models as name[@resolution[xwidth]] (default: %(default)s)")
    p.add_argument("--config", default="ultra96")
    p.add_argument("--board", default="ultra96", help="memory timing (arch/timing.py BOARDS)")
    p.add_argument("--no-sim", action="store_true", help="skip the instruction simulator")
    p.add_argument("--top", type=int, default=0, help="print the N slowest layers")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    rows = [bench_model(m, args.config, args.board, not args.no_sim, args.top)
            for m in args.models]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
