"""Calibration images: real photographs shipped with scikit-image, deterministic.

Each photo is centre-cropped to the target aspect ratio, resized with
anti-aliasing, and normalised to float32 NCHW. The same call always returns the
same array, so quantized models (and their cache keys) are reproducible.
"""

import numpy as np

__all__ = ["PHOTOS", "CalibrationReader", "photo", "photos"]

# Photographs in the scikit-image wheel itself (no download); grey ones become RGB.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "brick", "grass")


def photo(name, height, width):
    """One sample photo as uint8 HWC RGB, centre-cropped and resized to ``height x width``."""
    import skimage.data
    import skimage.transform

    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {PHOTOS}, not {name!r}")
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    h, w = img.shape[:2]
    # Largest centred crop with the target aspect ratio.
    ch, cw = (h, round(h * width / height)) if w * height >= h * width else (
        round(w * height / width), w)
    top, left = (h - ch) // 2, (w - cw) // 2
    img = img[top:top + ch, left:left + cw, :3]
    out = skimage.transform.resize(img, (height, width), order=1, anti_aliasing=True,
                                   preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def photos(height, width=None, count=len(PHOTOS), mean=127.5, std=127.5):
    """A float32 NCHW batch of ``count`` photos, normalised as ``(x - mean) / std``.

    Parameters
    ----------
    height, width : int
        Output size; ``width`` defaults to ``height``.
    count : int
        Number of photos, at most ``len(PHOTOS)``.
    mean, std : float
        Normalisation; the default maps 0..255 to -1..1.
    """
    width = height if width is None else width
    if not 1 <= count <= len(PHOTOS):
        raise ValueError(f"count must be in 1..{len(PHOTOS)}, not {count!r}")
    batch = np.stack([photo(n, height, width) for n in PHOTOS[:count]]).astype(np.float32)
    return np.ascontiguousarray(((batch - mean) / std).transpose(0, 3, 1, 2))


class CalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over a batch, one image per call.

    Parameters
    ----------
    images : numpy.ndarray
        Float32 NCHW batch.
    input_name : str
    """

    def __init__(self, images, input_name="input"):
        if images.ndim != 4:
            raise ValueError(f"images must be NCHW, not shape {images.shape!r}")
        self.images = images.astype(np.float32)
        self.input_name = input_name
        self._next = 0

    def get_next(self):
        if self._next >= len(self.images):
            return None
        image = self.images[self._next:self._next + 1]
        self._next += 1
        return {self.input_name: image}

    def rewind(self):
        self._next = 0

    def __len__(self):
        return len(self.images)
