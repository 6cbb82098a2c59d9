"""VEC test cases for the vector unit, and their expected OUT words from the instruction simulator.

Shared by test_vector.py (Amaranth's simulator) and cocotb_vector.py (Verilator,
Icarus). A :class:`Case` is one random VEC instruction with the INP, PARAM and LUT
contents it reads; its expected OUT words come from ``bamboo.sim.isa_ops.vec`` run
on the same buffers (ADD's PARAM from ``compiler.backend.pack.add_params``, checked
further against ``runtime.elementwise.add`` in test_vector.py). :func:`words` packs
buffer rows into the integers a testbench drives.
"""

from dataclasses import dataclass

import numpy as np
from bamboo.arch import isa
from bamboo.arch.layout import PARAM_DEPTH, param_lane
from bamboo.sim import isa_ops
from bamboo.sim.isa import Machine

__all__ = ["OPS", "Case", "add_exhaustive", "make_case", "words"]

OPS = (
    isa.VecOp.ADD,
    isa.VecOp.MAX_POOL,
    isa.VecOp.AVG_POOL,
    isa.VecOp.MUL_CHANNEL,
    isa.VecOp.COPY,
    isa.VecOp.MUL,
)
F32 = np.float32


@dataclass
class Case:
    """One VEC instruction (``word``, ``fields``) and the buffers it runs on."""

    fields: dict
    word: int
    inp: np.ndarray  # (depth, rows) uint8
    param: np.ndarray  # (PARAM_DEPTH, cols) uint64
    lut: np.ndarray  # (slots, 256) uint8
    expected: np.ndarray  # (P, cols) uint8: OUT words out_addr...

    @property
    def pixels(self):
        return self.fields["out_h"] * self.fields["out_w"]


def _run_reference(config, fields, inp, param, lut):
    word = isa.encode(isa.Opcode.VEC, **fields)
    f = isa.decode(word)
    m = Machine(config, np.zeros(16, np.uint8))
    m.inp[:] = inp
    m.param[:] = param
    m.lut[:] = lut
    isa_ops.vec(m, f)
    p = f["out_h"] * f["out_w"]
    return Case(fields, word, inp, param, lut, m.out[f["out_addr"] : f["out_addr"] + p].copy())


def _add_param(rng, cols, signed):
    from bamboo.compiler.backend.pack import add_params

    lo, hi = (-128, 127) if signed else (0, 255)
    sa, sb, sc = 2.0 ** rng.uniform(-9, -1, 3)
    za, zb, zc = (int(v) for v in rng.integers(lo, hi + 1, 3))
    word = add_params(F32(sa), F32(sb), F32(sc), za, zb, zc, cols)
    return word.view("<u8").astype(np.uint64)[0], (sa, sb, sc, za, zb, zc)


def _codes(rng, lo, hi):
    a, b = sorted(int(v) for v in rng.integers(lo, hi + 1, 2))
    return (a, b) if rng.random() < 0.6 else (lo, hi)


def words(array):
    """Rows of a 2-D uint8/uint64 array as little-endian integers (one per buffer word)."""
    raw = np.ascontiguousarray(array).view(np.uint8).reshape(array.shape[0], -1)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def make_case(config, vop, rng, lut, max_pixels=None):
    """A random valid VEC instruction of ``vop`` on random buffers, expected from the simulator."""
    B, C = config.rows, config.cols
    depth = config.input_buffer_depth
    signed = int(rng.random() < 0.5)
    lo, hi = (-128, 127) if signed else (0, 255)
    oh, ow = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    if max_pixels:
        oh = min(oh, max(1, max_pixels // ow))
    pool = vop in (isa.VecOp.MAX_POOL, isa.VecOp.AVG_POOL)
    kh = kw = sh = sw = 1
    if pool:
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    in_w = (ow - 1) * sw + kw + int(rng.integers(0, 3))
    in_h = (oh - 1) * sh + kh
    words = in_h * in_w
    src_a = int(rng.integers(0, depth - 2 * words - 1))
    src_b = src_a + words + (int(rng.integers(0, 3)) if vop == isa.VecOp.MUL_CHANNEL else 0)
    qmin, qmax = _codes(rng, lo, hi)
    fields = dict(
        vop=vop,
        kernel_h=kh,
        kernel_w=kw,
        stride_h=sh,
        stride_w=sw,
        out_h=oh,
        out_w=ow,
        in_w=in_w,
        src_a=src_a,
        src_b=src_b,
        out_addr=int(rng.integers(0, config.output_buffer_depth - oh * ow + 1)),
        param_addr=int(rng.integers(0, PARAM_DEPTH)),
        act=int(rng.integers(0, 4)),
        lut_slot=int(rng.integers(0, config.lut_slots)),
        a_zp=int(rng.integers(lo, hi + 1)) & 0xFF,
        b_zp=int(rng.integers(lo, hi + 1)) & 0xFF,
        out_zp=int(rng.integers(lo, hi + 1)) & 0xFF,
        qmin=qmin & 0xFF,
        qmax=qmax & 0xFF,
        signed=signed,
    )
    if not pool and rng.random() < 0.3:  # pool fields are don't-care elsewhere
        fields.update(kernel_h=int(rng.integers(0, 16)), stride_w=int(rng.integers(0, 8)))
    inp = rng.integers(0, 256, (depth, B)).astype(np.uint8)
    param = rng.integers(0, 1 << 63, (PARAM_DEPTH, C), dtype=np.uint64)
    pa = fields["param_addr"]
    if vop == isa.VecOp.ADD:
        param[pa], _ = _add_param(rng, C, signed)
    elif vop == isa.VecOp.AVG_POOL:
        n = kh * kw
        for c in range(C):
            scale = F32(2.0 ** rng.uniform(-4, 1) / n)
            mant, exp = np.frexp(np.float64(scale))
            param[pa, c] = param_lane(
                int(rng.integers(-3000, 3000)), int(round(mant * (1 << 24))), int(exp) - 24
            )
    elif vop in (isa.VecOp.MUL, isa.VecOp.MUL_CHANNEL):
        mant = int(rng.integers(1 << 23, 1 << 24))
        exp = int(rng.integers(-36, -20)) if rng.random() < 0.9 else int(rng.integers(-54, 1))
        param[pa, 0] = param_lane(0, mant, exp)
    return _run_reference(config, fields, inp, param, lut)


def add_exhaustive(config, ra_rb_k_word, signed, out_addr=0, first_pair=0):
    """ADD over 256 x 256 code pairs, in instructions of ``output_buffer_depth`` pixels.

    Yields Cases whose INP holds ``a`` codes then ``b`` codes; lane ``c`` of pixel
    ``p`` of instruction ``i`` is pair ``(i * P + p) * rows + c`` (``a`` the high byte).
    """
    B, C = config.rows, config.cols
    P = min(config.output_buffer_depth, config.input_buffer_depth // 2)
    pairs = np.arange(1 << 16)
    a_all, b_all = (pairs >> 8).astype(np.uint8), (pairs & 0xFF).astype(np.uint8)
    lo, hi = (-128, 127) if signed else (0, 255)
    per = P * B
    for start in range(first_pair, 1 << 16, per):
        a = np.zeros(per, np.uint8)
        b = np.zeros(per, np.uint8)
        n = min(per, (1 << 16) - start)
        a[:n], b[:n] = a_all[start : start + n], b_all[start : start + n]
        inp = np.zeros((config.input_buffer_depth, B), np.uint8)
        inp[:P] = a.reshape(P, B)
        inp[P : 2 * P] = b.reshape(P, B)
        param = np.zeros((PARAM_DEPTH, C), np.uint64)
        param[0] = ra_rb_k_word
        fields = dict(
            vop=isa.VecOp.ADD,
            out_h=1,
            out_w=P,
            in_w=P,
            src_a=0,
            src_b=P,
            out_addr=out_addr,
            param_addr=0,
            act=isa.Activation.NONE,
            qmin=lo & 0xFF,
            qmax=hi & 0xFF,
            signed=int(signed),
        )
        yield _run_reference(
            config, fields, inp, param, np.zeros((config.lut_slots, 256), np.uint8)
        )
