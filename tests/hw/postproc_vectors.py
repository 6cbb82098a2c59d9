"""Test vectors for the post-processing lanes, and their expected codes from the runtime.

Shared by the Python-simulator tests (test_requantizer.py, test_postproc.py) and
the cocotb module (cocotb_postproc.py), which imports it inside the simulator.
The expected codes come from the numpy reference kernels only
(``bamboo.runtime.requant.requantize``, ``runtime.elementwise.leaky_shift`` and
``lut_apply``), never from the hardware.

Vectors are seeded random plus adversarial cases: exact ties in each of the three
roundings, the renormalizing carry of step 1, the saturation and clip boundaries,
int32 wrap of ``acc + bias``, and exponents beyond the hardware's 8-bit field.
"""

from dataclasses import dataclass

import numpy as np
from bamboo.hw.postproc import Activation
from bamboo.hw.requantizer import requant_fields
from bamboo.runtime.elementwise import leaky_shift, lut_apply
from bamboo.runtime.requant import Requant, qrange, requantize

__all__ = [
    "Layer",
    "Vectors",
    "expected_codes",
    "lane_params",
    "make_vectors",
    "random_layer",
    "requantized",
]


@dataclass(frozen=True)
class Layer:
    """One lane's parameters: a scale (as ``Requant``), output type and activation."""

    rq: Requant
    dtype: type
    act: Activation
    slot: int = 0


@dataclass
class Vectors:
    """``beats`` x ``cols`` lane inputs, the layers they use, the tables and the expected bytes."""

    acc: np.ndarray  # int64 (beats, cols)
    bias: np.ndarray  # int64 (beats, cols)
    layer: np.ndarray  # int (beats, cols), index into layers
    layers: list
    tables: np.ndarray  # uint8 (slots, 256)
    expected: np.ndarray  # uint8 (beats, cols), the output code bytes


def _wrap32(x):
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)


def _layer(scale, zp, dtype, clamp=None, act=Activation.NONE, slot=0):
    return Layer(Requant.from_scale(np.float32(scale), zp, dtype, clamp), dtype, act, slot)


def random_layer(rng, slots, scale=None):
    """A random layer: realistic scales mostly, zero points over the whole code range."""
    dtype = np.uint8 if rng.random() < 0.7 else np.int8
    lo, hi = qrange(dtype)
    zp = int(rng.integers(lo, hi + 1)) if rng.random() < 0.7 else (0 if dtype == np.int8 else 128)
    clamp = None
    if rng.random() < 0.2:
        clamp = (zp, hi)  # fused ReLU
    elif rng.random() < 0.1:
        a, b = sorted(int(v) for v in rng.integers(lo, hi + 1, 2))
        clamp = (a, b)
    if scale is None:
        scale = 2.0 ** rng.uniform(-24, 0) if rng.random() < 0.85 else 2.0 ** rng.uniform(-40, 8)
    act = rng.choice(list(Activation), p=[0.55, 0.15, 0.1, 0.2])
    return _layer(scale, zp, dtype, clamp, act, int(rng.integers(0, slots)))


def _random_acc(rng, layer):
    """(acc, bias) aimed at one of several regimes; 'target' lands inside the code range."""
    kind = rng.random()
    if kind < 0.35:  # outputs near the code range
        target = rng.uniform(-300, 300) / float(layer.rq.scale)
        total = int(np.clip(np.rint(target), -(1 << 31), (1 << 31) - 1))
    elif kind < 0.6:  # log-uniform magnitude
        total = int(rng.choice([-1, 1]) * np.floor(2.0 ** rng.uniform(0, 31)))
    elif kind < 0.8:
        total = int(rng.integers(-(1 << 31), 1 << 31))
    else:
        total = int(rng.integers(-4096, 4097))
    bias = int(rng.integers(-(1 << 20), 1 << 20)) if rng.random() < 0.5 else 0
    return int(_wrap32(total - bias)), bias


def _modinv_tie(rng, m):
    """A ``q < 2**24`` with ``q * m`` exactly halfway between two 24-bit-significand values."""
    for _ in range(100):
        s2 = int(rng.integers(1, 25))
        q = ((1 << (s2 - 1)) * pow(m, -1, 1 << s2)) % (1 << s2)
        if 0 < q < 1 << 24 and (q * m).bit_length() - 24 == s2:
            return q
    return None


def _adversarial(rng, slots):
    """List of (acc, bias, layer) edge cases."""
    cases = []
    edge = [
        0,
        1,
        -1,
        2,
        -2,
        (1 << 23),
        (1 << 24) - 1,
        1 << 24,
        (1 << 24) + 1,
        (1 << 25) - 1,
        (1 << 31) - 1,
        (1 << 31) - 64,
        (1 << 31) - 65,
        12345678,
        987654321,
    ]
    for a in edge + [-v for v in edge] + [-(1 << 31)]:
        for _ in range(3):
            cases.append((a, 0, random_layer(rng, slots)))
    # Step 1 ties: |acc| = q * 2**s + 2**(s-1) with q of 24 bits; q = 2**24 - 1 carries.
    for s in range(1, 8):
        for q in (int(rng.integers(1 << 23, 1 << 24)), (1 << 24) - 1, (1 << 24) - 2, 1 << 23):
            for sign in (1, -1):
                cases.append((sign * (q * (1 << s) + (1 << (s - 1))), 0, random_layer(rng, slots)))
    # Step 3 ties: q * m halfway between 24-bit values; e puts the result near 2**5.
    for _ in range(60):
        m = int(rng.integers(1 << 23, 1 << 24)) | 1
        q = _modinv_tie(rng, m)
        if q is None:
            continue
        e = 5 - (q * m).bit_length()
        lay = _layer(
            np.ldexp(np.float64(m), e),
            int(rng.integers(0, 64)),
            np.uint8,
            act=rng.choice(list(Activation)),
            slot=int(rng.integers(0, slots)),
        )
        assert int(lay.rq.m) == m and int(lay.rq.e) == e
        cases.append((int(rng.choice([-1, 1])) * q, 0, lay))
    # Step 4 ties: y = (odd) / 2 exactly, with power-of-two and trailing-zero mantissas.
    for k in range(1, 21):
        for j in (0, 1, 2, 3, int(rng.integers(4, 150))):
            for sign in (1, -1):
                acc = sign * (j * (1 << k) + (1 << (k - 1)))
                cases.append((acc, 0, _layer(2.0**-k, 128, np.uint8)))
                cases.append((acc, 0, _layer(2.0**-k, 0, np.int8)))
    for p in (0, 3, 10, 20, 27, 30):
        c = int(rng.integers(64, 128)) | 1
        cases.append((1 << p, 0, _layer(np.ldexp(np.float64(c << 17), -18 - p), 100, np.uint8)))
        cases.append((-(1 << p), 0, _layer(np.ldexp(np.float64(c << 17), -18 - p), 0, np.int8)))
    # Saturation and clip boundaries at scale 1: y + zp around qmin, qmax and |y| = 511.
    for dtype, zp in (
        (np.uint8, 0),
        (np.uint8, 255),
        (np.int8, -128),
        (np.int8, 127),
        (np.uint8, 37),
    ):
        lo, hi = qrange(dtype)
        for y in (lo - zp - 1, lo - zp, hi - zp, hi - zp + 1, 510, 511, 512, -510, -511, -512):
            for act in (Activation.NONE, Activation.LEAKY):
                cases.append((y, 0, _layer(1.0, zp, dtype, act=act)))
    # int32 wrap of acc + bias, and exponents beyond the 8-bit field both ways.
    for a, b in (((1 << 31) - 1, 5), (-(1 << 31), -1), ((1 << 31) - 100, 300)):
        cases.append((a, b, _layer(2.0**-20, 128, np.uint8)))
    for scale in (2.0**-140, 2.0**-126, 2.0**-110, 1e-38, 2.0**20, 2.0**36, 3.0e10):
        for a in (1, -1, 3, 1000, -(1 << 31), (1 << 31) - 1):
            if scale > 1 and abs(a) > 1000:
                continue  # the numpy reference shifts within int64
            cases.append((a, 0, _layer(scale, 10, np.uint8)))
    return cases


def make_vectors(cols, slots, beats, seed, adversarial=True):
    """Random plus (optionally) adversarial lane vectors, ``beats`` rows of ``cols`` lanes.

    The adversarial cases come first (spread over lanes), then random ones; each
    (beat, lane) may use a different layer, so parameters change every beat.
    """
    rng = np.random.default_rng(seed)
    cases = _adversarial(rng, slots) if adversarial else []
    rng.shuffle(cases)
    pool = [random_layer(rng, slots) for _ in range(64)]
    layers, index = [], {}
    acc = np.zeros((beats, cols), np.int64)
    bias = np.zeros((beats, cols), np.int64)
    which = np.zeros((beats, cols), np.int64)
    for n in range(beats * cols):
        if n < len(cases):
            a, b, lay = cases[n]
        else:
            lay = pool[int(rng.integers(0, len(pool)))]
            a, b = _random_acc(rng, lay)
        if id(lay) not in index:
            index[id(lay)] = len(layers)
            layers.append(lay)
        acc.flat[n], bias.flat[n], which.flat[n] = a, b, index[id(lay)]
    tables = rng.integers(0, 256, (slots, 256), dtype=np.uint8)
    vec = Vectors(acc, bias, which, layers, tables, np.zeros((beats, cols), np.uint8))
    vec.expected = expected_codes(vec)
    return vec


def requantized(vec):
    """The requantizer's reference codes (before any activation), as int64."""
    total = _wrap32(vec.acc + vec.bias)
    out = np.zeros(total.shape, np.int64)
    for n, lay in enumerate(vec.layers):
        sel = vec.layer == n
        out[sel] = requantize(total[sel], lay.rq)
    return out


def expected_codes(vec):
    """The reference output bytes of every lane input, from the runtime kernels."""
    codes = requantized(vec)
    out = np.zeros(codes.shape, np.uint8)
    for n, lay in enumerate(vec.layers):
        sel = vec.layer == n
        if not sel.any():
            continue
        code = codes[sel].astype(lay.dtype)
        if lay.act in (Activation.LEAKY, Activation.LEAKY_ROUNDED):
            # Equal input and output quantization: the requantization is the identity.
            code = leaky_shift(
                code,
                1.0,
                lay.rq.zp,
                1.0,
                lay.rq.zp,
                lay.dtype,
                rounded=lay.act == Activation.LEAKY_ROUNDED,
            )
        elif lay.act == Activation.LUT:
            code = lut_apply(code, vec.tables[lay.slot])
        out[sel] = code.view(np.uint8) if code.dtype != np.uint8 else code
    return out


def lane_params(lay):
    """The :class:`~bamboo.hw.postproc.LaneParams` fields of a layer."""
    rq = lay.rq
    return {
        "rq": requant_fields(rq.m, rq.e, rq.zp, rq.qmin, rq.qmax),
        "act": lay.act,
        "lut_slot": lay.slot,
    }
