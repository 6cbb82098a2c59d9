"""Calibration images: real photographs shipped with scikit-image, deterministic.

Each photo is centre-cropped to the target aspect ratio, resized with
anti-aliasing, and normalised to float32 NCHW. The same call always returns the
same array, so quantized models (and their cache keys) are reproducible.
"""

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "PHOTOS", "CalibrationReader", "fit", "load_images", "photo", "photos"]

# Photographs in the scikit-image wheel itself (no download); grey ones become RGB.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "brick", "grass")


def photo(name, height, width):
    """One sample photo as uint8 HWC RGB, centre-cropped and resized to ``height x width``."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {PHOTOS}, not {name!r}")
    return fit(getattr(skimage.data, name)(), height, width)


def fit(img, height, width):
    """A uint8 image (HW or HWC) as uint8 HWC RGB: the largest centred crop with the
    aspect ratio of ``height x width``, resized to it with anti-aliasing."""
    import skimage.transform

    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    h, w = img.shape[:2]
    # Largest centred crop with the target aspect ratio.
    ch, cw = (
        (h, round(h * width / height))
        if w * height >= h * width
        else (round(w * height / width), w)
    )
    top, left = (h - ch) // 2, (w - cw) // 2
    img = img[top : top + ch, left : left + cw, :3]
    out = skimage.transform.resize(
        img, (height, width), order=1, anti_aliasing=True, preserve_range=True
    )
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


def load_images(paths, height, width, mean=0.0, std=1.0, channels=3):
    """Image files as a float32 NCHW batch: each fitted to ``height x width`` (:func:`fit`),
    scaled to 0..1, then normalised per channel as ``(x - mean) / std``.

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
    height, width : int
    mean, std : float or sequence of float
        One value, or one per channel, in units of the 0..1 pixel range.
    channels : {1, 3}
        RGB, or grey (the mean of R, G and B).
    """
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"images have 1 or 3 channels, not {channels!r}")
    mean = np.asarray(mean, np.float32).reshape(-1)
    std = np.asarray(std, np.float32).reshape(-1)
    batch = []
    for path in paths:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        batch.append(fit(rgb, height, width))
    x = np.stack(batch).astype(np.float32) / np.float32(255)
    if channels == 1:
        x = x.mean(axis=-1, keepdims=True, dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)


class CalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over a batch, one image per call.

    Parameters
    ----------
    images : numpy.ndarray
        Float32 NCHW batch.
    input_name : str
    progress : callable, optional
        ``progress(done, total)`` after each image handed out.
    """

    def __init__(self, images, input_name="input", progress=None):
        if images.ndim != 4:
            raise ValueError(f"images must be NCHW, not shape {images.shape!r}")
        self.images = images.astype(np.float32)
        self.input_name = input_name
        self.progress = progress
        self._next = 0

    def get_next(self):
        if self._next >= len(self.images):
            return None
        image = self.images[self._next : self._next + 1]
        self._next += 1
        if self.progress is not None:
            self.progress(self._next, len(self.images))
        return {self.input_name: image}

    def rewind(self):
        self._next = 0

    def __len__(self):
        return len(self.images)
