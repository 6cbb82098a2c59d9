"""`bamboo demo` runs end to end and reports what it measured (`make bench-tests`)."""

import struct
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_and_is_bit_exact(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bamboo", "demo", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=1200, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "bit-exact with onnxruntime: 450/450 images (yes)" in text
    assert "all outputs bit-exact with onnxruntime" in text
    if "RTL simulation" in text and "skipped" not in text.split("== 3.")[1].split("== 4.")[0]:
        assert "all bit-exact with onnxruntime and the instruction simulator: yes" in text
    assert "projected at 187.5 MHz" in text and "projected at 250 MHz" in text
    for name in ("digits", "mobilenet_v2_224"):
        for kind in ("utilization", "roofline"):
            data = (tmp_path / f"{name}_{kind}.png").read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">I", data[16:20])[0] > 0


def test_demo_segment_task(tmp_path, capsys):
    """``bamboo demo --task segment``: the trained segmenter through Session(isa), every
    output bit-exact with onnxruntime, the mask PNG written."""
    pytest.importorskip("torch", reason="the segmenter is trained with torch")
    pytest.importorskip("onnxruntime")
    from bamboo.cli import main

    assert main(["demo", "--task", "segment", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "bit-exact with onnxruntime: yes" in text
    png = (tmp_path / "segment.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (64 * 8, 32 * 8)   # width, height
