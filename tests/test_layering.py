"""Dependency direction, checked in a clean interpreter per package.

arch <- runtime <- compiler; arch <- hw; sim -> arch, runtime, hw; boards -> hw, arch;
models -> compiler, runtime, arch.
The runtime runs on the board with numpy alone, so every one of its modules must
import with nothing third-party but numpy.
"""

import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

ALLOWED = {
    "arch": {"arch"},
    "runtime": {"arch", "runtime"},
    "compiler": {"arch", "runtime", "compiler"},
    "hw": {"arch", "hw"},
    "sim": {"arch", "runtime", "hw", "sim"},
    "boards": {"arch", "hw", "boards"},
    "models": {"arch", "runtime", "compiler", "models"},
}
# Third-party top-level modules a package may pull in; None means unrestricted.
# (cython_runtime is a module numpy's Cython extensions register, not a package.)
THIRD_PARTY = {"arch": set(), "runtime": {"numpy", "cython_runtime"}}
NEVER = {"torch", "torchvision"}
# Only the model zoo may use torch.


PROBE = r"""
import importlib, json, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(package):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, f"bamboo.{package}"],
        capture_output=True,
        text=True,
        cwd=ROOT / "tests",
        check=False,
    )
    assert out.returncode == 0, f"importing bamboo.{package} failed:\n{out.stderr}"
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependency_direction(package):
    modules = _loaded(package)
    ours = {m.split(".")[1] for m in modules if m.startswith("bamboo.") and m.count(".") >= 1}
    ours -= {"cli", "__main__"}
    assert ours <= ALLOWED[package], (
        f"bamboo.{package} imports {sorted(ours - ALLOWED[package])}; "
        f"it may import only {sorted(ALLOWED[package])}"
    )
    top = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"bamboo"}
    top = {m for m in top if not m.startswith("_")}
    if package != "models":
        assert not top & NEVER, f"bamboo.{package} imports {sorted(top & NEVER)}"
    if package in THIRD_PARTY:
        extra = top - THIRD_PARTY[package]
        assert not extra, f"bamboo.{package} imports third-party {sorted(extra)}"


@pytest.mark.parametrize("folder", ["arch", "runtime"])
def test_board_code_parses_as_python_310(folder):
    """The board's PYNQ image runs Python 3.10: no newer syntax in what it imports."""
    import ast

    for path in sorted((ROOT / folder).rglob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))


# Modules a package names by string and imports only when asked for (never at import
# time): the runtime's backend lookup and its cycle model, both implemented in sim.
LAZY = {
    ("runtime/session.py", "bamboo.sim.isa_device"),
    ("runtime/session.py", "bamboo.sim.rtl_device"),
    ("runtime/profiling.py", "bamboo.sim.cycles"),
}


def _imports(path, package):
    """``(line, module)`` of every import in ``path``, inside functions too, and of every
    string naming a ``bamboo.`` module (as ``importlib.import_module`` takes it)."""
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    parts = ["bamboo", package, *path.relative_to(ROOT / package).with_suffix("").parts]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:-1]  # the module's package (an __init__'s is itself)
                base = base[: len(base) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.lineno, node.module
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"bamboo\.(%s)(\.\w+)*" % "|".join(ALLOWED), node.value)
        ):
            yield node.lineno, node.value


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_every_import_respects_the_direction(package):
    """By the source, not by what got loaded: imports inside functions count too, and so
    do module names handed to importlib, except the lazy lookups listed in LAZY."""
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for line, module in _imports(path, package):
            if not module.startswith("bamboo.") or (rel, module) in LAZY:
                continue
            target = module.split(".")[1]
            if target not in ALLOWED[package]:
                bad.append(f"{rel}:{line}: {module}")
    assert not bad, f"bamboo.{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(
        bad
    )


def test_the_lazy_lookups_are_still_there():
    """Each LAZY entry names a module string its file still holds (no stale allowances)."""
    for rel, module in LAZY:
        package = rel.split("/")[0]
        assert module in {m for _, m in _imports(ROOT / rel, package)}, (rel, module)


# The ONNX front end, bottom first: each module imports only modules listed before it, and
# only at module level (no import inside a function holding a cycle together).
FRONT_END = [
    "errors",
    "ir",
    "shapes",
    "lut",
    "tables",
    "onnx_common",
    "resize",
    "partition",
    "onnx_moves",
    "onnx_compute",
    "onnx_qop",
    "onnx_ops",
    "onnx_import",
]


def _compiler_imports(name):
    """``(line, imported front-end module, inside a function)`` for compiler/``name``.py."""
    import ast

    tree = ast.parse((ROOT / "compiler" / f"{name}.py").read_text())
    inner = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(f)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            mods = [node.module] if node.module else [a.name for a in node.names]
            for m in mods:
                if m.split(".")[0] in FRONT_END:
                    yield node.lineno, m.split(".")[0], id(node) in inner


def test_front_end_modules_import_downward_at_module_level():
    bad = []
    for k, name in enumerate(FRONT_END):
        for line, target, in_function in _compiler_imports(name):
            if in_function or target not in FRONT_END[:k]:
                where = "inside a function" if in_function else "upward"
                bad.append(f"compiler/{name}.py:{line}: imports {target} {where}")
    assert not bad, "\n".join(bad)
