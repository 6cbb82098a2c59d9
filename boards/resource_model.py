"""Predicted DSP48E2, LUT, FF and BRAM36 of a configuration, calibrated against Yosys.

``bamboo explore`` sweeps hundreds of configurations; Yosys takes minutes on each, so
the search predicts them. Every resource is a linear model over a few *features* of
the configuration (:data:`FEATURES`), each a count of something the generator builds
once per unit of the knob: DSP48E2 per array slice (exact: ``config.dsp_count``), per
post-processing lane (the requantizer products) and per vector lane; BRAM36
entirely structural, per memory from its shape as Yosys maps it (RAMB36 or RAMB18
halves, :func:`_bram`), the INP buffer once per depthwise read port
(:func:`inp_copies`) and an activation table per post-processing lane and per vector
lane; LUT and FF per MAC, per column, per post-processing lane, per vector lane and per
depthwise INP port. Structural
coefficients are fixed; the rest are fitted by non-negative least squares on Yosys's
counts of real builds (:func:`bamboo.boards.calibrate.points`: the committed ``boards/calibration/
resource_points.json`` and ``boards/estimates/*.json``).

:func:`leave_one_out` is the honest error: every point predicted by a model fitted on
the others. ``python -m bamboo.boards.resource_model`` prints it.

All figures are UltraScale+ (``synth_xilinx -family xcup``); a Zynq-7000 build maps to
DSP48E1 differently and is not modelled (:func:`fit` takes only xcup points).
"""

import sys
from dataclasses import dataclass

import numpy as np

from .resources import bram36_for

__all__ = [
    "FEATURES",
    "LEVER_ESTIMATES",
    "RESOURCES",
    "ResourceModel",
    "fit",
    "lever_resources",
    "leave_one_out",
    "predict_with_levers",
    "main",
]

RESOURCES = ("dsp", "lut", "ff", "bram36")


def _lanes(c):
    return c.vector_lanes or c.rows


# RAMB18E2 shapes (depth, width), counted as half a BRAM36 (UG573).
_RAMB18 = [(512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)]


def _bram(depth, width):
    """BRAM36 of one memory as Yosys maps it: the cheaper of RAMB36 (with the 72-bit
    simple-dual-port shape) and RAMB18 halves, at the best aspect ratio."""
    half = min(-(-depth // d) * -(-width // w) for d, w in _RAMB18)
    return min(bram36_for(depth, width), half / 2)


def inp_copies(c):
    """INP buffers Yosys builds: one per depthwise read port, and at least two (the
    array's and the vector unit's reads). Read off the mapped netlists of the calibration
    builds (``accel.compute.inp_mem`` cells), not derived from the RTL."""
    return max(2, c.depthwise_ports)


def _lut_tables(c):
    """Activation tables: one ``lut_slots x 256``-byte memory per post-processing lane
    and per vector lane."""
    return (_pp_lanes(c) + _lanes(c)) * _bram(256 * c.lut_slots, 8)


def _pp_lanes(c):
    """Post-processing lanes (requantizer and activation): ``postproc_lanes`` or one per
    column."""
    return c.postproc_lanes or c.cols


_LOGIC = [
    ("per MAC", lambda c: c.macs_per_cycle, None),
    ("per column", lambda c: c.cols, None),
    ("per post-processing lane", _pp_lanes, None),
    ("per vector lane", _lanes, None),
    ("per INP byte x depthwise port", lambda c: c.rows * c.depthwise_ports, None),
    ("per column x second ACC bank", lambda c: c.cols * (c.acc_banks - 1), None),
    ("control", lambda c: 1, None),
]

#: ``{resource: [(feature name, function of a config, fixed coefficient or None)]}``.
#: None: fitted (non-negative). The function names say what is counted.
FEATURES = {
    "dsp": [
        ("array DSP (rows x cols, / 2 packed)", lambda c: c.dsp_count, 1.0),
        ("per post-processing lane (requantizer)", _pp_lanes, None),
        ("per vector lane", _lanes, None),
        ("control", lambda c: 1, None),
    ],
    "bram36": [
        ("WGT", lambda c: _bram(c.weight_buffer_depth, 8 * c.rows * c.cols), 1.0),
        ("ACC", lambda c: _bram(c.acc_buffer_depth, 32 * c.cols) * c.acc_banks, 1.0),
        ("OUT", lambda c: _bram(c.output_buffer_depth, 8 * c.cols), 1.0),
        ("INP x copies", lambda c: _bram(c.input_buffer_depth, 8 * c.rows) * inp_copies(c), 1.0),
        ("activation tables", _lut_tables, 1.0),
    ],
    # LUT and FF: the same units, each fitted on its own, plus one each that the
    # calibration builds separate: LUTs per row (the INP byte lanes' muxes and the
    # depthwise row logic), flip-flops per array DSP48E2 (its operand and product
    # pipeline registers, shared by the two MACs of a packed DSP). Without them the
    # held-out 16 x 32 packed build's FFs were 10.5 % over and x4x8's LUTs 6.5 %.
    "lut": _LOGIC + [("per row", lambda c: c.rows, None)],
    "ff": [("per array DSP", lambda c: c.dsp_count, None)] + _LOGIC,
}


# Engine generation 2 (arch/timing.py EngineLevers): unbuilt units ----------------------

#: Per-unit LUT/FF figures of the engine-generation-2 levers. The depthwise engine's
#: (``dw_*``) are fitted to its measured component builds (``python -m
#: bamboo.boards.resources ultra96 --component dwengine`` / ``dwengine_lut`` and the
#: sizes in docs/engine2.md: 16 and 32 lanes at 3x3, 8 and 16 at 5x5, within 7 % of each;
#: ``tests/boards/test_resource_model.py`` holds the fit to those figures); the others are
#: stated estimates of unbuilt units. ``dw_tap``: one tap of one lane of hw/dwengine.py
#: (window and operand registers, adder-tree input); ``dw_lut_mult``: a 9 x 8-bit radix-4
#: Booth product in LUTs (its ``multiplier="lut"``); ``dw_lane``: a lane's line-buffer
#: ports and output FIFO; ``dw_fixed``: its scan counters and parameter registers;
#: ``dma2_byte``: one more write (INP) or read (OUT) byte lane with its bank select;
#: ``add_col``: the skip operand's rescale and the saturating add per column;
#: ``se_lane``: the GAP accumulator per column (128 sums of 32 bits in LUT RAM, 64 LUTs)
#: or the channel-scale path per INP byte on load; ``band``: the OUT -> INP band path
#: and its row counters (fuse_block).
LEVER_ESTIMATES = {
    "dw_tap": {"lut": 20, "ff": 85},
    "dw_lut_mult": {"lut": 86, "ff": 16},
    "dw_lane": {"lut": 10, "ff": 0},
    "dw_fixed": {"lut": 120, "ff": 300},
    "dma2_byte": {"lut": 25, "ff": 10},
    "add_col": {"lut": 90, "ff": 70},
    "se_lane": {"lut": 150, "ff": 60},
    "band": {"lut": 1200, "ff": 800},
}


def lever_resources(config, levers, model=None):
    """``{resource: change}`` the levers add to (or save from) ``config``'s resources.

    DSP48E2 and BRAM36 are structural: the depthwise engine takes ``dw_lanes x
    dw_kernel**2`` DSPs (one per product, hw/dwengine.py ``multiplier="dsp"``; none with
    LUT multipliers) and ``dw_kernel - 1`` line buffers of ``dw_width = 256`` pixels x
    ``dw_lanes`` bytes; two DMA words split INP (each copy) and
    OUT into two banks of half the depth; the fused Add one DSP per column (the skip
    operand's 24-bit rescale); SE one per INP byte (the channel scale on load), its GAP
    sums in LUT RAM. (Fewer post-processing lanes and two ACC banks are configuration
    fields, ``postproc_lanes`` and ``acc_banks``, predicted by the fitted model itself.) LUT/FF:
    :data:`LEVER_ESTIMATES` (the depthwise engine's fitted to its component builds, the
    rest stated)."""
    model = model or default_model()
    est, out = LEVER_ESTIMATES, {r: 0.0 for r in RESOURCES}

    def logic(name, n):
        out["lut"] += est[name]["lut"] * n
        out["ff"] += est[name]["ff"] * n

    if levers.dw_lanes:
        taps, lanes = levers.dw_kernel**2, levers.dw_lanes
        if levers.dw_multiplier == "dsp":
            out["dsp"] += lanes * taps
        else:
            logic("dw_lut_mult", lanes * taps)
        logic("dw_tap", lanes * taps)
        logic("dw_lane", lanes)
        logic("dw_fixed", 1)
        out["bram36"] += (levers.dw_kernel - 1) * _bram(256, 8 * lanes)
    if levers.dma_words > 1:
        for depth, width, copies in (
            (config.input_buffer_depth, 8 * config.rows, inp_copies(config)),
            (config.output_buffer_depth, 8 * config.cols, 1),
        ):
            out["bram36"] += copies * (2 * _bram(depth // 2, width) - _bram(depth, width))
        logic("dma2_byte", config.rows + config.cols)
    if levers.fuse_add:
        out["dsp"] += config.cols
        logic("add_col", config.cols)
    if levers.fuse_se:
        out["dsp"] += config.rows
        logic("se_lane", config.cols + config.rows)
    if levers.fuse_block:
        logic("band", 1)
    return out


def predict_with_levers(config, levers, model=None):
    """:meth:`ResourceModel.predict` of ``config`` plus :func:`lever_resources`."""
    model = model or default_model()
    base = model.predict(config)
    delta = lever_resources(config, levers, model)
    total = {r: base[r] + delta[r] for r in RESOURCES}
    return {r: round(2 * v) / 2 if r == "bram36" else int(round(v)) for r, v in total.items()}


def _nnls(a, b, iters=200):
    """Non-negative least squares (Lawson-Hanson active set): ``argmin |a x - b|, x >= 0``."""
    m, n = a.shape
    x = np.zeros(n)
    free = np.zeros(n, bool)
    for _ in range(iters):
        w = a.T @ (b - a @ x)
        if free.all() or (w[~free] <= 1e-9 * max(1.0, np.abs(w).max())).all():
            break
        free[np.argmax(np.where(free, -np.inf, w))] = True
        while True:
            z = np.zeros(n)
            z[free] = np.linalg.lstsq(a[:, free], b, rcond=None)[0]
            if (z[free] > 0).all():
                x = z
                break
            neg = free & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            free &= x > 1e-12
    return x


@dataclass(frozen=True)
class ResourceModel:
    """Fitted coefficients: ``{resource: tuple of coefficients in FEATURES order}``."""

    coefficients: dict
    points: int

    def predict(self, config):
        """``{resource: predicted count}`` of ``config`` (BRAM36 in halves, the rest whole)."""
        out = {}
        for res, feats in FEATURES.items():
            v = sum(k * f(config) for (_, f, _), k in zip(feats, self.coefficients[res]))
            out[res] = round(2 * v) / 2 if res == "bram36" else int(round(v))
        return out

    def describe(self):
        """One line per resource: its fitted formula."""
        return [
            f"{res}: "
            + " + ".join(
                f"{k:.3g} x {name}"
                for (name, _, _), k in zip(FEATURES[res], self.coefficients[res])
                if k
            )
            for res in RESOURCES
        ]


def fit(points):
    """Fit :data:`FEATURES` to ``points`` (dicts with ``config`` and the counts)."""
    if not points:
        raise ValueError("no Yosys data points to fit the resource model to")
    coefs = {}
    for res, feats in FEATURES.items():
        fixed = np.array(
            [sum(k * f(p["config"]) for _, f, k in feats if k is not None) for p in points], float
        )
        free = [i for i, (_, _, k) in enumerate(feats) if k is None]
        a = np.array([[feats[i][1](p["config"]) for i in free] for p in points], float)
        b = np.array([p[res] for p in points], float) - fixed
        x = _nnls(a, b) if free else []
        full = [k for _, _, k in feats]
        for i, v in zip(free, x):
            full[i] = float(v)
        coefs[res] = tuple(full)
    return ResourceModel(coefs, len(points))


def leave_one_out(points):
    """Every point predicted by the model fitted on the others.

    Returns ``[(point, prediction)]`` and ``{resource: (mean abs % error, max abs % error)}``.
    """
    rows = []
    for k, p in enumerate(points):
        model = fit(points[:k] + points[k + 1 :])
        rows.append((p, model.predict(p["config"])))
    err = {}
    for res in RESOURCES:
        e = [abs(pred[res] - p[res]) / p[res] * 100 for p, pred in rows if p[res]]
        err[res] = (float(np.mean(e)), float(np.max(e)))
    return rows, err


_MODEL = None


def default_model():
    """The model fitted on every committed data point (cached)."""
    global _MODEL
    if _MODEL is None:
        from .calibrate import points

        _MODEL = fit(points())
    return _MODEL


def main(argv=None):
    from .calibrate import DATA, points

    pts = points()
    model = fit(pts)
    print(
        f"resource model fitted on {len(pts)} Yosys builds ({DATA.name} and "
        "boards/estimates), UltraScale+:"
    )
    for line in model.describe():
        print("  " + line)
    rows, err = leave_one_out(pts)
    print("leave-one-out (each build predicted by the model fitted on the others):")
    print(f"  {'point':<12}" + "".join(f"{r:>16}" for r in RESOURCES))
    for p, pred in rows:
        print(f"  {p['name']:<12}" + "".join(f"{pred[r]:>8g}/{p[r]:<7g}" for r in RESOURCES))
    print(
        "  mean |error|  "
        + "  ".join(f"{r} {m:.1f} % (max {x:.1f} %)" for r, (m, x) in err.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
