"""The board runtime wheel (``make runtime-wheel``, packaging/runtime/): what is in it, and a
model run with it in a fresh venv that holds numpy 1.26.4 and nothing else of ours.

The venv runs the digits model, compiled here by the development tree, through
``Session(path, backend="isa")`` on float inputs and on codes, and ``bamboo-profile``;
its outputs must equal the development tree's bit for bit. numpy comes from PyPI (or
pip's cache); without either the test skips, saying so. About 30 s, most of it pip.
"""

import ast
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from bamboo.runtime.session import Session
from test_session import _compiled

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
NUMPY = "numpy==1.26.4"
#: Imported lazily by the wheel's modules, each for one optional feature.
OPTIONAL = {"pynq": "the board backend", "PIL": "image inputs", "matplotlib": "--png"}
NEVER = (
    "bamboo/hw/",
    "bamboo/compiler/",
    "bamboo/models/",
    "bamboo/boards/",
    "bamboo/cli.py",
    "bamboo/bench.py",
    "bamboo/sim/harness.py",
    "bamboo/sim/rtl_",
    "bamboo/sim/tools.py",
)

RUN = r"""
import json, sys
import numpy as np
from bamboo.runtime.session import Session

model, x_path, out = sys.argv[1:4]
x = np.load(x_path)
with Session(model, backend="isa") as sess:
    name = sess.get_inputs()[0].name
    (y,) = sess.run(None, {name: x})
    spec = sess.io.inputs[0]
    from bamboo.runtime.quant import quantize
    codes = quantize(x, np.float32(spec.scale), spec.zp, np.dtype(spec.dtype))
    (raw,) = sess.run(None, {name: codes}, raw=True)
np.savez(out, y=y, raw=raw)
ours = sorted({m.split(".")[0] for m in sys.modules if not m.startswith("_")}
              - set(sys.stdlib_module_names))
print(json.dumps({"modules": ours, "numpy": np.__version__}))
"""


def _build_wheel(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "build_wheel", ROOT / "packaging" / "runtime" / "build_wheel.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(tmp_path / "dist", tmp_path / "work")


def _imports(source):
    tree = ast.parse(source, feature_version=(3, 10))  # the board's Python
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0]


def test_wheel_holds_the_runtime_alone(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        sources = {n: z.read(n).decode() for n in names if n.endswith(".py")}
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for must in (
        "bamboo/__init__.py",
        "bamboo/arch/isa.py",
        "bamboo/runtime/session.py",
        "bamboo/runtime/board.py",
        "bamboo/sim/isa_device.py",
        "bamboo/sim/cycles.py",
    ):
        assert must in names, must
    assert not [n for n in names if n.startswith(NEVER)], names
    third = set()
    for name, source in sources.items():
        third |= set(_imports(source)) - set(sys.stdlib_module_names) - {"bamboo"}
    assert third <= {"numpy", *OPTIONAL}, sorted(third)
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert len(requires) == 1 and requires[0].startswith("Requires-Dist: numpy"), requires


def _pip(python, *args):
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_wheel_runs_a_model_in_a_fresh_venv(tmp_path):
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    out = _pip(python, "install", "--quiet", NUMPY)
    if out.returncode:
        offline = (
            "Could not fetch",
            "NewConnectionError",
            "No matching distribution",
            "Temporary failure in name resolution",
            "Network is unreachable",
        )
        if any(s in out.stdout + out.stderr for s in offline):
            pytest.skip(f"{NUMPY} unavailable (no PyPI, no pip cache): {out.stderr[-300:]}")
        pytest.fail(out.stdout + out.stderr)
    out = _pip(python, "install", "--quiet", "--no-index", str(wheel))
    assert out.returncode == 0, out.stdout + out.stderr
    installed = json.loads(_pip(python, "list", "--format", "json").stdout)
    assert {p["name"].lower() for p in installed} - {"pip", "setuptools"} == {
        "bamboo-runtime",
        "numpy",
    }

    _, _, blob = _compiled("digits")
    model = tmp_path / "digits.bmb"
    model.write_bytes(blob)
    x = np.random.default_rng(9).standard_normal((1, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    # -I: no PYTHONPATH, no user site, no current folder: only what the venv holds.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    run = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            RUN,
            str(model),
            str(tmp_path / "x.npy"),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["numpy"] == "1.26.4"
    assert set(report["modules"]) - {"bamboo", "numpy"} <= {"cython_runtime"}, report
    got = np.load(tmp_path / "out.npz")
    with Session(blob, backend="isa") as sess:
        (want,) = sess.run(None, x)
        spec = sess.io.inputs[0]
        from bamboo.runtime.quant import quantize

        codes = quantize(x, np.float32(spec.scale), spec.zp, np.dtype(spec.dtype))
        (want_raw,) = sess.run(None, codes, raw=True)
    assert np.array_equal(got["y"].view(np.uint32), want.view(np.uint32))
    assert got["raw"].dtype == want_raw.dtype and np.array_equal(got["raw"], want_raw)

    prof = subprocess.run(
        [
            str(venv / "bin" / "bamboo-profile"),
            str(model),
            "--input",
            str(tmp_path / "x.npy"),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert prof.returncode == 0, prof.stderr
    data = json.loads(prof.stdout)
    assert data["totals"]["model_cycles"] > 0 and data["backend"] == "isa"
    png = subprocess.run(
        [str(venv / "bin" / "bamboo-profile"), str(model), "--png", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert png.returncode == 1 and "--png needs matplotlib" in png.stderr
