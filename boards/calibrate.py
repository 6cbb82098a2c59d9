"""Yosys data points of the resource model of ``bamboo explore`` (:mod:`.resource_model`).

``python -m bamboo.boards.calibrate`` synthesizes every configuration of :data:`POINTS`
for the UltraScale+ fabric (:func:`bamboo.boards.resources.estimate`, the ``make
resources`` flow, results cached by design hash) one after another and writes
:data:`DATA`: per point the configuration, the design hash and Yosys's DSP, LUT, FF
and BRAM36 counts with its estimated Fmax. The committed boards/estimates/*.json of the
UltraScale+ boards are data points too (:func:`points`). ``--only NAME`` runs one.

The points vary the knobs the generator has (array shape, packing, vector lanes,
buffer depths, LUT slots, the depthwise blocks and groups, the AXI width) around the
presets; small ones take 1-3 minutes each on one core, the 8 x 32 ones ~6.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..arch.config import AcceleratorConfig
from .resources import RECORDED, estimate
from .vivado import build_root

__all__ = ["DATA", "POINTS", "main", "points"]

#: The committed results of :func:`main`.
DATA = Path(__file__).resolve().parent / "calibration" / "resource_points.json"
#: The board the points are synthesized for (UltraScale+, the family of every zynqmp board).
BOARD = "ultra96"
_SMALL = dict(
    input_buffer_depth=1024, weight_buffer_depth=256, acc_buffer_depth=256, output_buffer_depth=256
)

#: A packed 8 x 16 point, also the base of its post-processing-lanes variant.
_X8X16P = AcceleratorConfig(
    name="x8x16p",
    rows=8,
    cols=16,
    dsp_packing=True,
    input_buffer_depth=4096,
    weight_buffer_depth=512,
    vector_lanes=4,
    lut_slots=4,
    depthwise_groups=2,
)

#: The ``ultra96`` preset before the 16 x 32 array (sessions 12-15): 8 x 32 packed, a
#: requantizer lane per column, one ACC bank of 1024, two depthwise channel blocks. The
#: base of the post-processing-lanes and ACC-bank points, so that they stay the builds
#: they were when the preset changed.
_ULTRA96_8X32 = AcceleratorConfig(
    name="ultra96-8x32",
    rows=8,
    cols=32,
    input_buffer_depth=8192,
    weight_buffer_depth=512,
    acc_buffer_depth=1024,
    output_buffer_depth=2048,
    axi_data_width=128,
    lut_slots=4,
    dsp_packing=True,
    clock_mhz=250.0,
    vector_lanes=2,
    depthwise_blocks=2,
    depthwise_groups=2,
)

#: ``{name: AcceleratorConfig}``: the configurations synthesized beside the presets.
POINTS = {
    p.name: p
    for p in [
        AcceleratorConfig(
            name="x4x8",
            rows=4,
            cols=8,
            axi_data_width=64,
            vector_lanes=2,
            depthwise_groups=2,
            **_SMALL,
        ),
        AcceleratorConfig(name="x8x8", rows=8, cols=8),
        _X8X16P,
        AcceleratorConfig(
            name="x4x16p",
            rows=4,
            cols=16,
            dsp_packing=True,
            axi_data_width=64,
            weight_buffer_depth=512,
            acc_buffer_depth=512,
            output_buffer_depth=512,
            vector_lanes=4,
            depthwise_blocks=2,
        ),
        AcceleratorConfig(
            name="x8x16",
            rows=8,
            cols=16,
            input_buffer_depth=8192,
            weight_buffer_depth=256,
            acc_buffer_depth=2048,
            output_buffer_depth=2048,
            vector_lanes=2,
            lut_slots=8,
            depthwise_blocks=2,
            depthwise_groups=4,
        ),
        AcceleratorConfig(name="x16x16", rows=16, cols=16, vector_lanes=4, **_SMALL),
        AcceleratorConfig(
            name="x8x32p-v8",
            rows=8,
            cols=32,
            dsp_packing=True,
            input_buffer_depth=4096,
            weight_buffer_depth=512,
            output_buffer_depth=2048,
            lut_slots=4,
        ),
        # The ultra96 preset with half its post-processing lanes (hw/postproc.py lane
        # groups): the point that separates the per-lane cost from the per-column one.
        dataclasses.replace(_ULTRA96_8X32, name="ultra96-pp16", postproc_lanes=16),
        # A second lane count on another shape, so that neither lane-varying build is
        # alone when the other is held out.
        dataclasses.replace(_X8X16P, name="x8x16p-pp4", postproc_lanes=4),
        # Two ACC banks (hw/compute.py ping-pong) at half the depth, as ``explore --gen2``'s
        # ``pp16+pingpong-acc512``; and on the 8 x 16 shape at full depth, so that the
        # second bank's logic per column is not fitted to one build.
        dataclasses.replace(
            _ULTRA96_8X32,
            name="ultra96-pp16-ab2",
            postproc_lanes=16,
            acc_banks=2,
            acc_buffer_depth=512,
        ),
        dataclasses.replace(_X8X16P, name="x8x16p-ab2", acc_banks=2),
        # The 8 x 32 packed ultra96 preset of sessions 12-15 (a preset's build until the
        # 16 x 32 one took its name): 256 MACs on 128 DSP48E2, a lane per column.
        _ULTRA96_8X32,
    ]
}


def _row(name, r, config, source):
    return {
        "name": name,
        "source": source,
        "config": config.to_dict(),
        "design_hash": r.design_hash,
        "dsp": r.dsp,
        "lut": r.lut,
        "ff": r.ff,
        "bram36": r.bram36,
        "fmax_mhz": r.fmax_mhz,
        "seconds": r.seconds,
    }


def points():
    """Every data point: :data:`DATA` and the recorded estimates of the UltraScale+ boards.

    A list of dicts with ``name``, ``source``, ``config`` (an :class:`AcceleratorConfig`),
    ``dsp``, ``lut``, ``ff``, ``bram36``, ``fmax_mhz``. Boards sharing a design (Ultra96
    V1 and V2) count once.
    """
    from ..arch.config import preset
    from .platforms import BOARDS

    rows = json.loads(DATA.read_text())["points"] if DATA.exists() else []
    seen = {r["design_hash"] for r in rows}
    for b in BOARDS.values():
        path = RECORDED / f"{b.name}.json"
        if b.yosys_family != "xcup" or not path.exists():
            continue
        rec = json.loads(path.read_text())
        if rec["design_hash"] in seen:
            continue
        seen.add(rec["design_hash"])
        cfg = preset(b.preset)
        rows.append(
            {
                "name": b.preset,
                "source": f"boards/estimates/{b.name}.json",
                "config": cfg.to_dict(),
                **{
                    k: rec.get(k)
                    for k in ("design_hash", "dsp", "lut", "ff", "bram36", "fmax_mhz", "seconds")
                },
            }
        )
    for r in rows:
        r["config"] = AcceleratorConfig.from_dict(r["config"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bamboo.boards.calibrate",
        description="Yosys data points of the resource model.",
    )
    parser.add_argument("--only", action="append", help="one point of POINTS (repeatable)")
    args = parser.parse_args(argv)
    names = args.only or list(POINTS)
    unknown = [n for n in names if n not in POINTS]
    if unknown:
        print(
            f"bamboo: error: unknown points {unknown}; known: {', '.join(POINTS)}", file=sys.stderr
        )
        return 1
    data = json.loads(DATA.read_text()) if DATA.exists() else {}
    rows = {r["name"]: r for r in data.get("points", [])}
    for name in names:
        config = POINTS[name]
        r = estimate(BOARD, config=config, folder=build_root() / BOARD / f"calibrate-{name}")
        rows[name] = _row(name, r, config, "python -m bamboo.boards.calibrate")
        print(
            f"{name}: DSP {r.dsp} LUT {r.lut} FF {r.ff} BRAM36 {r.bram36:g} "
            f"Fmax {r.fmax_mhz} MHz ({r.seconds:g} s)",
            flush=True,
        )
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text(
            json.dumps(
                {
                    "command": "python -m bamboo.boards.calibrate",
                    "board": BOARD,
                    "note": "Yosys synth_xilinx -family xcup of the design at the "
                    "commit that wrote each row (design_hash); "
                    "boards/estimates/*.json add the presets",
                    "points": [rows[n] for n in POINTS if n in rows],
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
