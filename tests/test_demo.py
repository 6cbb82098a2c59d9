"""`bamboo demo` runs end to end and reports what it measured (`make bench-tests`)."""

import struct
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_and_is_bit_exact(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bamboo", "demo", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
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
    assert struct.unpack(">II", png[16:24]) == (64 * 8, 32 * 8)  # width, height


# The astronaut's face in the detector's 320x240 picture, labelled by eye (hairline to chin,
# cheek to cheek): an answer that does not come from any model.
ASTRONAUT_FACE = (116, 48, 167, 110)


def test_demo_detect_task(tmp_path, capsys):
    """``bamboo demo --task detect``: UltraFace through Session(isa) bit-exact with
    onnxruntime, the decoded face where onnxruntime's float model and a human put it, and
    the box drawn in the PNG."""
    import json

    import numpy as np
    from PIL import Image

    pytest.importorskip("onnxruntime")
    from bamboo.models import faces

    from bamboo.cli import main
    from bamboo.report import ort_session

    assert main(["demo", "--task", "detect", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "bit-exact with onnxruntime: yes" in text
    record = json.loads((tmp_path / "detect.json").read_text())
    boxes = np.array(record["boxes"])
    assert record["bit_exact"] and boxes.shape == (1, 4) and record["scores"][0] >= 0.9
    assert "face 1: score" in text
    picture = faces.demo_image()
    ref_boxes, _ = faces.detect(
        ort_session(faces.build_float()).run(None, {"input": faces.to_input(picture)})
    )
    assert len(ref_boxes) == 1 and faces.iou(boxes, ref_boxes)[0, 0] >= 0.85
    assert faces.iou(boxes, [ASTRONAUT_FACE])[0, 0] >= 0.6
    # The PNG is the picture scaled twice, changed on the box outline and nowhere far from it.
    scale = record["scale"]
    png = np.asarray(Image.open(tmp_path / "detect.png").convert("RGB")).astype(int)
    plain = picture.repeat(scale, axis=0).repeat(scale, axis=1).astype(int)
    assert png.shape == plain.shape == (480, 640, 3)
    x0, y0, x1, y1 = (int(round(v * scale)) for v in boxes[0])
    edges = [
        png[(y0 + y1) // 2, x0] - plain[(y0 + y1) // 2, x0],
        png[(y0 + y1) // 2, x1] - plain[(y0 + y1) // 2, x1],
        png[y1, (x0 + x1) // 2] - plain[y1, (x0 + x1) // 2],
    ]
    assert all(np.abs(d).sum() > 60 for d in edges)
    changed = np.abs(png - plain).sum(axis=2) > 0
    assert changed[y0 - 30 : y1 + 4, x0 - 4 : x1 + 120].sum() == changed.sum() > 0


def test_demo_detect_unreadable_image(tmp_path, capsys):
    from bamboo.cli import main

    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    assert main(["demo", "--task", "detect", "--image", str(bad), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bamboo demo: error: cannot read the image") and err.count("\n") == 1
