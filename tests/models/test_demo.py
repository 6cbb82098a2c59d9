"""`bamboo demo` runs end to end and reports bit-exactness it measured."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_and_is_bit_exact():
    out = subprocess.run([sys.executable, "-m", "bamboo", "demo"], capture_output=True,
                         text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bit-exact with onnxruntime: 450/450 images (yes)" in out.stdout
    assert "all outputs bit-exact with onnxruntime" in out.stdout
