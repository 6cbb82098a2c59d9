"""``bamboo demo --task segment``: the trained digit segmenter through ``Session(isa)``.

The segmenter (``bamboo.models.segmenter``: two scikit-learn digits side by side, 11
classes per pixel, bilinear upsampling in the graph) is quantized by onnxruntime,
compiled for ``ultra96`` and run on held-out pairs by the instruction simulator with the
CPU steps in the runtime; every output is compared bit for bit with onnxruntime, the
per-pixel argmax (on the CPU) is timed, the pixel accuracy is computed three ways, and
the first pair is written as a PNG: the image, the mask over it, the labels.
"""

import pathlib
import time

import numpy as np

from .report import bit_equal as _same
from .report import ort_session as _ort_session

__all__ = ["segment_section"]

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
    print(f"  model: {q_path.name}; {compiled.stats['instructions']} instructions; "
          f"resize on {', '.join(t for _, t in where)}")
    x, labels = segmenter.pairs("test", PAIRS)
    ort = _ort_session(q_path)
    same, ours = True, []
    t0 = time.perf_counter()
    with Session(blob, backend="isa") as sess:
        for k in range(PAIRS):
            got = sess.run(None, {"input": x[k:k + 1]})[0]
            want = ort.run(None, {"input": x[k:k + 1]})[0]
            same = same and _same(got, want)
            ours.append(got)
    elapsed = time.perf_counter() - t0
    ours = np.concatenate(ours)
    c0 = time.process_time()
    masks = ours.argmax(axis=1)
    argmax_ms = (time.process_time() - c0) * 1e3 / PAIRS
    theirs = np.concatenate([ort.run(None, {"input": x[k:k + 1]})[0] for k in range(PAIRS)])
    print(f"  {PAIRS} held-out pairs through Session(isa) bit-exact with onnxruntime: "
          f"{'yes' if same else 'NO'} ({elapsed:.1f} s)")
    print(f"  pixel accuracy: onnxruntime int8 {segmenter.pixel_accuracy(theirs, labels):.4f}, "
          f"Bamboo {float(np.mean(masks == labels)):.4f} (background alone "
          f"{float(np.mean(labels == 0)):.4f})")
    print(f"  argmax over 11 classes on the CPU: {argmax_ms:.3f} ms per 32x64 frame here")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = overlay_png(x[0], masks[0], out / "segment.png")
    print(f"  wrote {png}")
    print()
    return same
