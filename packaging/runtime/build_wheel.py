"""Build the board runtime wheel: ``python packaging/runtime/build_wheel.py [--out dist]``.

Copies the modules the board needs into a staging folder beside this folder's
``pyproject.toml`` and builds it with pip (setuptools, no build isolation: the
workstation's pinned setuptools, no network). What goes in is listed here, not globbed
from the package folders: ``bamboo/`` holds the compiler's command line and ``sim/`` the
cocotb harness, which the board must not get.
"""

import argparse
import pathlib
import re
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: (package folder in the repository, package in the wheel, modules or "*" for every one)
CONTENTS = (
    ("bamboo", "bamboo", ("__init__.py",)),
    ("arch", "bamboo/arch", "*"),  # standard library only
    ("runtime", "bamboo/runtime", "*"),  # numpy only (tests/test_layering.py)
    (
        "sim",
        "bamboo/sim",
        ("__init__.py", "isa.py", "isa_ops.py", "isa_device.py", "pacing.py", "cycles.py"),
    ),
)


def stage(dest):
    """Copy the wheel's sources and pyproject.toml into ``dest``; returns the file list."""
    if dest.exists():
        shutil.rmtree(dest)
    files = []
    for folder, package, modules in CONTENTS:
        src = ROOT / folder
        names = sorted(p.name for p in src.glob("*.py")) if modules == "*" else modules
        (dest / package).mkdir(parents=True)
        for name in names:
            shutil.copy2(src / name, dest / package / name)
            files.append(f"{package}/{name}")
    shutil.copy2(HERE / "pyproject.toml", dest / "pyproject.toml")
    return files


def _version(pyproject):
    # The [project] table's version line (no tomllib: the workstation may run Python 3.10).
    return re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M).group(1)


def check_version():
    main, mine = _version(ROOT / "pyproject.toml"), _version(HERE / "pyproject.toml")
    if main != mine:
        sys.exit(f"packaging/runtime/pyproject.toml has version {mine}, the project {main}")
    return mine


def build(out, work=None):
    """Build the wheel into ``out``; returns its path."""
    version = check_version()
    work = pathlib.Path(work or ROOT / "build" / "runtime-wheel").resolve()
    src = work / "src"
    stage(src)
    out = pathlib.Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"bamboo_runtime-{version}-py3-none-any.whl"
    if wheel.exists():
        wheel.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(src),
        ],
        check=True,
        cwd=work,
    )
    assert wheel.exists(), wheel
    return wheel


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="wheel folder (default dist/)")
    parser.add_argument("--work", help="staging folder (default build/runtime-wheel)")
    args = parser.parse_args(argv)
    print(build(args.out, args.work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
