"""``bamboo demo --task segment`` and ``--task detect``: dense prediction through ``Session(isa)``.

Detection: the pretrained UltraFace RFB-320 face detector (``bamboo.models.faces``, MIT)
quantized by onnxruntime, compiled for ``ultra96`` and run on a photo with a face
(scikit-image's astronaut, or ``--image``) by the instruction simulator; both raw head
outputs are compared bit for bit with onnxruntime, then decoded on the CPU (priors,
score threshold, non-maximum suppression in numpy), printed beside the float model's
boxes, drawn with their scores into ``detect.png`` and written to ``detect.json``.

Segmentation:

The segmenter (``bamboo.models.segmenter``: two scikit-learn digits side by side, 11
classes per pixel, bilinear upsampling in the graph) is quantized by onnxruntime,
compiled for ``ultra96`` and run on held-out pairs by the instruction simulator with the
CPU steps in the runtime; every output is compared bit for bit with onnxruntime, the
per-pixel argmax (on the CPU) is timed, the pixel accuracy is computed three ways, and
the first pair is written as a PNG: the image, the mask over it, the labels.
"""

import json
import pathlib
import time

import numpy as np

from bamboo.arch.errors import BambooError

from .report import bit_equal as _same
from .report import ort_session as _ort_session

__all__ = ["DemoInputError", "detect_section", "draw_boxes", "segment_section"]


class DemoInputError(BambooError, ValueError):
    """An image given to the demo cannot be read."""


PAIRS = 16


def _palette():
    rng = np.random.default_rng(3)
    pal = rng.integers(60, 256, (11, 3)).astype(np.uint8)
    pal[0] = 0
    return pal


def overlay_png(image, mask, path):
    """Write ``image`` (1 x H x W in -1..1) with ``mask`` (H x W classes) coloured over it,
    scaled up 8x, to ``path`` (PNG)."""
    from PIL import Image

    grey = np.clip((image[0] + 1.0) * 127.5, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    colour = _palette()[mask].astype(np.float32)
    blend = np.where(mask[..., None] > 0, 0.4 * rgb + 0.6 * colour, rgb).astype(np.uint8)
    h, w = mask.shape
    Image.fromarray(blend).resize((w * 8, h * 8), Image.NEAREST).save(path)
    return path


def segment_section(out, compile_fn):
    """Run the section; returns True when every output is bit-exact with onnxruntime."""
    from bamboo.models import segmenter
    from bamboo.runtime.session import Session

    print("== Segmentation: digit pairs, 11 classes per pixel (trained here) ==")
    q_path = segmenter.build_quantized()
    graph, compiled, blob = compile_fn(q_path, "ultra96")
    where = sorted({(n.op, n.target) for n in compiled.graph.nodes if n.op == "resize"})
    print(
        f"  model: {q_path.name}; {compiled.stats['instructions']} instructions; "
        f"resize on {', '.join(t for _, t in where)}"
    )
    x, labels = segmenter.pairs("test", PAIRS)
    ort = _ort_session(q_path)
    same, ours = True, []
    t0 = time.perf_counter()
    with Session(blob, backend="isa") as sess:
        for k in range(PAIRS):
            got = sess.run(None, {"input": x[k : k + 1]})[0]
            want = ort.run(None, {"input": x[k : k + 1]})[0]
            same = same and _same(got, want)
            ours.append(got)
    elapsed = time.perf_counter() - t0
    ours = np.concatenate(ours)
    c0 = time.process_time()
    masks = ours.argmax(axis=1)
    argmax_ms = (time.process_time() - c0) * 1e3 / PAIRS
    theirs = np.concatenate([ort.run(None, {"input": x[k : k + 1]})[0] for k in range(PAIRS)])
    print(
        f"  {PAIRS} held-out pairs through Session(isa) bit-exact with onnxruntime: "
        f"{'yes' if same else 'NO'} ({elapsed:.1f} s)"
    )
    print(
        f"  pixel accuracy: onnxruntime int8 {segmenter.pixel_accuracy(theirs, labels):.4f}, "
        f"Bamboo {float(np.mean(masks == labels)):.4f} (background alone "
        f"{float(np.mean(labels == 0)):.4f})"
    )
    print(f"  argmax over 11 classes on the CPU: {argmax_ms:.3f} ms per 32x64 frame here")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = overlay_png(x[0], masks[0], out / "segment.png")
    print(f"  wrote {png}")
    print()
    return same


DETECT_SCALE = 2  # the PNG is the 320x240 input scaled up twice, for legible scores


def draw_boxes(image, boxes, scores, path, scale=DETECT_SCALE):
    """Write ``image`` (uint8 HxWx3) scaled up ``scale`` times with ``boxes`` (pixels of
    ``image``, corner form) outlined in green and their ``scores`` above them, as a PNG."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    pic = Image.fromarray(image).resize((w * scale, h * scale), Image.NEAREST)
    draw = ImageDraw.Draw(pic)
    for box, score in zip(boxes, scores):
        x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=(0, 255, 0), width=3)
        label = f"face {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label)
        ty = max(y0 - (bottom - top) - 6, 0)
        draw.rectangle((x0, ty, x0 + right - left + 6, ty + bottom - top + 6), fill=(0, 255, 0))
        draw.text((x0 + 3 - left, ty + 3 - top), label, fill=(0, 0, 0))
    pic.save(path)
    return path


def detect_section(out, compile_fn, image=None, title="UltraFace RFB-320 face detector"):
    """Run the detection demo on ``image`` (a path; the astronaut when None); returns True
    when both head outputs are bit-exact with onnxruntime."""
    from bamboo.compiler.inspect import summary
    from bamboo.models import faces
    from bamboo.runtime.session import Session

    try:
        picture = faces.demo_image(image)
    except OSError as exc:  # missing, unreadable or not an image
        raise DemoInputError(f"cannot read the image {str(image)!r}: {exc}") from None
    print(f"== {title} (pretrained, models/pretrained/ultraface) ==")
    q_path = faces.build_quantized()
    graph, compiled, blob = compile_fn(q_path, "ultra96")
    x = faces.to_input(picture)
    print(
        f"  model: {q_path.name}, compiled for ultra96: "
        f"{compiled.stats['instructions']} instructions"
    )
    print(
        "  MACs per frame: "
        + ", ".join(f"{k} {v:,}" for k, v in summary(compiled.graph)["macs"].items())
    )
    t0 = time.perf_counter()
    with Session(blob, backend="isa") as sess:
        ours = sess.run(None, {"input": x})
    elapsed = time.perf_counter() - t0
    theirs = _ort_session(q_path).run(None, {"input": x})
    same = all(_same(a, b) for a, b in zip(ours, theirs))
    print(
        f"  {image or 'astronaut (scikit-image)'} through Session(isa): scores "
        f"{ours[0].shape}, boxes {ours[1].shape}, bit-exact with onnxruntime: "
        f"{'yes' if same else 'NO'} ({elapsed:.1f} s)"
    )
    c0 = time.process_time()
    boxes, scores = faces.detect(ours)
    post_ms = (time.process_time() - c0) * 1e3
    ref_boxes, ref_scores = faces.detect(_ort_session(faces.build_float()).run(None, {"input": x}))
    print(
        f"  decoding on the CPU (priors, score >= {faces.FACE_THRESHOLD}, NMS at IoU "
        f"{faces.IOU_THRESHOLD}): {post_ms:.2f} ms here; {len(boxes)} face(s), float model "
        f"{len(ref_boxes)}"
    )
    for k, (box, score) in enumerate(zip(boxes, scores)):
        best = float(faces.iou(box[None], ref_boxes).max()) if len(ref_boxes) else 0.0
        print(
            f"  face {k + 1}: score {score:.3f}, box x0 {box[0]:.1f} y0 {box[1]:.1f} "
            f"x1 {box[2]:.1f} y1 {box[3]:.1f} (pixels of 320x240); IoU with the float "
            f"model's nearest box {best:.3f}"
        )
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = draw_boxes(picture, boxes, scores, out / "detect.png")
    record = {
        "image": str(image) if image else "skimage.data.astronaut",
        "scale": DETECT_SCALE,
        "bit_exact": same,
        "boxes": boxes.round(3).tolist(),
        "scores": scores.round(5).tolist(),
        "float_boxes": ref_boxes.round(3).tolist(),
    }
    (out / "detect.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"  wrote {png} and {out / 'detect.json'}")
    print()
    return same
