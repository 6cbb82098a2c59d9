"""Packaging: every package folder is listed, and the console script answers."""

import pathlib
import subprocess
import sys

import tomllib

import bamboo

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == set(setuptools["packages"])


def test_version_command():
    out = subprocess.run(
        [sys.executable, "-m", "bamboo", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"bamboo {bamboo.__version__}"
    assert bamboo.__version__ != "0.0.0+unknown"
