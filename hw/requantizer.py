"""The requantizer: int32 accumulator plus bias to a saturated 8-bit code, bit-exact.

Implements steps 1-4 of ``runtime/requant.py`` (Ref: docs/numerics.md,
"Conv, Gemm") in integers, on the magnitude and sign of the accumulator (every
rounding there is symmetric in sign, so the sign rides along to the end):

1. ``q = RNE(|acc| / 2**s1)`` with ``s1 = bitlen(|acc|) - 24``: 24 significant bits,
   rounded when ``s1 > 0``, an exact left shift when ``s1 <= 0`` (normalized);
2. ``P = q * m``, a 24 x 24 bit unsigned product;
3. ``r = RNE(P / 2**s2)`` keeps 24 significant bits of the product (``s2`` is 23 or 24);
4. ``y = RNE(r * 2**t)`` with ``t = s1 + s2 + e``, then ``zp + sign * y``, saturated.

Why this shape: rounding the accumulator before the multiply (which step 1 asks for
anyway) shrinks a 33 x 24 signed product to 24 x 24 unsigned: two DSP48E2 slices
per lane (26 x 17 unsigned each, the second taking the upper 7 bits of ``m``)
instead of four. Normalizing ``q`` like ``m`` (both in ``[2**23, 2**24)``) leaves
step 3 two cases instead of a 25-way shifter. Carrying ``s1`` and ``s2`` as
exponents instead of shifting the product back keeps the datapath 25 bits wide
after the multiply; step 4 then shifts the normalized ``r`` right by 15 to 24 only
(any other exponent gives 0 or saturates). Every stage is at most a 32-bit add, a
priority encoder or one shifter with its rounding bits, for 250 MHz on UltraScale+.

Output bounds: ``|y| >= 511`` always saturates, since ``zp``, ``qmin`` and ``qmax``
lie in ``[-128, 255]``, so ``y`` is clipped to 511 early and the last adders are
11 bits wide. For the same reason ``e`` is 8 bits: any ``e < -128`` gives 0 like
``e = -128`` (``t <= 9 + 24 - 128``, far below the 25 bits of ``r``) and any ``e > 127``
saturates like ``e = 127``; :func:`requant_fields` clamps it.

The unit is a free-running pipeline (no back-pressure: ``o`` is always ready);
:class:`~bamboo.hw.postproc.PostProcessor` puts flow control around it.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from bamboo.hw.pipeline import delay_chain, group_lengths, register, round_up

__all__ = [
    "CODE_MAX",
    "CODE_MIN",
    "E_MAX",
    "E_MIN",
    "RequantParams",
    "Requantizer",
    "requant_fields",
]

E_MIN, E_MAX = -128, 127
# Zero points and bounds of uint8 and int8 codes together.
CODE_MIN, CODE_MAX = -128, 255
# |y| >= _Y_CLIP saturates for every zero point and bound in [CODE_MIN, CODE_MAX].
_Y_CLIP = 511
# Step 4 exponents from which a normalized r (>= 2**23) gives y >= 2**23 * 2**-14 = 512.
_CLIP_T = -14
_NO_TAG = unsigned(0)


class RequantParams(data.Struct):
    """Per-channel requantization parameters: ``S = m * 2**e``, zero point and bounds.

    Fields
    ------
    m : unsigned(24)
        Mantissa of the scale, as ``Requant.m``.
    e : signed(8)
        Exponent, as ``Requant.e`` clamped to ``[E_MIN, E_MAX]`` (results unchanged).
    zp, qmin, qmax : signed(9)
        Output zero point and saturation bounds, in ``[-128, 255]``.
    """

    m: unsigned(24)
    e: signed(8)
    zp: signed(9)
    qmin: signed(9)
    qmax: signed(9)


def requant_fields(m, e, zp, qmin, qmax):
    """Fields of a :class:`RequantParams` constant from ``Requant``-style integers.

    Clamps ``e`` to ``[E_MIN, E_MAX]``, which does not change any result (module
    docstring), and validates the rest.

    Returns
    -------
    dict
        For ``RequantParams.const(...)`` or a containing layout's ``const``.
    """
    m, e, zp, qmin, qmax = (int(v) for v in (m, e, zp, qmin, qmax))
    if not 0 < m < 1 << 24:
        raise ValueError(f"mantissa must be in [1, 2**24), not {m!r}")
    for name, value in (("zp", zp), ("qmin", qmin), ("qmax", qmax)):
        if not CODE_MIN <= value <= CODE_MAX:
            raise ValueError(f"{name} must be in [{CODE_MIN}, {CODE_MAX}], not {value!r}")
    if qmin > qmax:
        raise ValueError(f"qmin must not exceed qmax, not {qmin!r} > {qmax!r}")
    return {"m": m, "e": min(max(e, E_MIN), E_MAX), "zp": zp, "qmin": qmin, "qmax": qmax}


def _rne_right(m, x, amount, cases, name):
    """``(x >> amount, round-up bit)`` of round-half-even, for ``amount`` in ``cases``.

    One case per shift keeps guard and sticky bits constant slices (no variable
    masks); amounts outside ``cases`` give 0.
    """
    q = Signal(len(x), name=f"{name}_q")
    up = Signal(name=f"{name}_up")
    with m.Switch(amount):
        for k in cases:
            with m.Case(k):
                if k == 0:
                    m.d.comb += q.eq(x)
                else:
                    guard = x[k - 1]
                    sticky = x[: k - 1].any() if k > 1 else 0
                    m.d.comb += [q.eq(x[k:]), up.eq(guard & (sticky | x[k]))]
    return q, up


#: Step 4's right shifts with a result: ``r`` normalized and ``t`` in ``[-24, -15]``.
_STEP4 = range(1 - _CLIP_T, 25)


def round_decode(m, r, up, t, zero, name):
    """First half of ``y = RNE((r + up) * 2**t)``, min(y, 511), for ``r + up`` zero or in
    ``[2**23, 2**24]``: decoded from the operands of ``r + up``, alongside that adder.

    ``r + up`` normalized, ``t`` alone decides most cases: ``t >= -14`` gives ``y >= 512``,
    which saturates for every zero point (module docstring), and ``t <= -25`` rounds to
    0. Only the 10 shifts ``k`` of :data:`_STEP4` remain (``t == -k``). Their sticky bits
    (the bits of ``r + up`` below its guard bit ``k - 1``) are split in two: bits
    ``[0, 14)``, below every case's guard bit, give one flag decoded here (an all-ones
    test of ``r``'s bits when ``up`` is set, as the +1 carries through them, an any-bit
    test otherwise); bits ``[14, 23)`` are masked by a thermometer of ``t`` and tested by
    :func:`round_select` on the sum itself. No flag is a prefix of another: a chain of
    prefix ORs is what a LUT mapper builds from per-case sticky bits.

    Returns
    -------
    dict
        ``zero`` (``r + up == 0``, from the caller), ``sat`` (``t >= -14``), ``sel``
        (one-hot over :data:`_STEP4`, 0 when ``t`` is outside it), ``low`` (a sticky
        bit among bits ``[0, 14)`` of ``r + up``) and ``therm`` (bit ``i``: bit
        ``14 + i`` of ``r + up`` is below the selected case's guard bit), combinational;
        register them (:func:`register_fields`) and pass them to :func:`round_select`.
    """
    lo = _STEP4.start - 1
    sel = Signal(len(_STEP4), name=f"{name}_sel")
    therm = Signal(_STEP4.stop - 2 - lo, name=f"{name}_therm")
    # Every t that selects a case lies in [-32, -1], where t's bits above 5 are all ones
    # and t = t[:5] - 32: one test of the high bits shared by all, and a 5-bit compare
    # per flag (one LUT), not a wide compare each.
    assert t.shape().signed and len(t) >= 6 and -_STEP4[-1] >= -32
    in_32, low5 = t[5:].all(), t[:5]
    for j, k in enumerate(_STEP4):
        m.d.comb += sel[j].eq(in_32 & (low5 == 32 - k))
    # Bit lo + i is below guard bit k - 1 for k >= lo + i + 2: ``-24 <= t <= -(lo+i+2)``.
    for i in range(len(therm)):
        m.d.comb += therm[i].eq(in_32 & (low5 >= 32 - _STEP4[-1]) & (low5 <= 32 - (lo + i + 2)))
    low = r[:lo]
    return {
        "zero": zero,
        "sat": t >= _CLIP_T,
        "sel": sel,
        "low": Mux(up, ~low.all(), low.any()),
        "therm": therm,
    }


def register_fields(m, fields, name, reg):
    """``fields`` (a dict of values) registered, as a namespace of ``{name}_{key}``."""
    from types import SimpleNamespace

    return SimpleNamespace(**{k: reg(v, f"{name}_{k}") for k, v in fields.items()})


def round_select(r, step):
    """Second half: ``(y, round-up bit)`` from the sum ``r`` and the registered decode
    ``step`` of :func:`round_decode`; ``y + up`` is the rounded, clipped magnitude."""
    width = (_Y_CLIP + 1).bit_length()  # y reaches 512 (r = 2**24 at t = -15)
    lo = _STEP4.start - 1
    y, guard, odd = Mux(step.sat, _Y_CLIP, 0), Const(0), Const(0)
    for j, k in enumerate(_STEP4):
        y = y | Mux(step.sel[j], r[k:], 0)
        guard = guard | (step.sel[j] & r[k - 1])
        odd = odd | (step.sel[j] & (r[k] if k < len(r) else 0))
    sticky = step.low | (r[lo : lo + len(step.therm)] & step.therm).any()
    return Mux(step.zero, 0, y[:width]), ~step.zero & guard & (sticky | odd)


class Requantizer(wiring.Component):
    """One requantizer lane: ``(acc + bias, RequantParams)`` to a saturated code.

    Parameters
    ----------
    tag_shape : shape-like
        Side data carried alongside each value, unchanged (default: none).

    Attributes
    ----------
    i : In(stream.Signature(...), always_ready)
        ``acc``, ``bias`` (int32; their sum wraps at 32 bits like the int32
        accumulator), ``params`` (:class:`RequantParams`) and ``tag``.
    o : Out(stream.Signature(...), always_ready)
        ``code`` (signed(9), in ``[qmin, qmax]``), ``zp`` (the input's) and ``tag``,
        :data:`LATENCY` cycles after the input.
    """

    LATENCY = 14

    def __init__(self, tag_shape=_NO_TAG):
        self._tag_shape = tag_shape
        super().__init__(
            {
                "i": In(
                    stream.Signature(
                        data.StructLayout(
                            {
                                "acc": signed(32),
                                "bias": signed(32),
                                "params": RequantParams,
                                "tag": tag_shape,
                            }
                        ),
                        always_ready=True,
                    )
                ),
                "o": Out(
                    stream.Signature(
                        data.StructLayout({"code": signed(9), "zp": signed(9), "tag": tag_shape}),
                        always_ready=True,
                    )
                ),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        prm = p.params

        def reg(value, name, shape=None):
            return register(m, value, name, shape)

        # Valid travels with the data.
        valid = delay_chain(m, self.i.valid, self.LATENCY)

        def carry(sig, name, first, last):
            """``{n: sig as held in stage n}`` for n in first..last (``sig`` is stage first's)."""
            out = {first: sig}
            for n in range(first + 1, last + 1):
                out[n] = reg(out[n - 1], f"{name}{n}")
            return out

        # Parameters enter at stage 0; each is delayed only as far as its last use.
        mant = carry(prm.m, "m", 0, 6)
        e = carry(prm.e, "e", 0, 9)
        zp = carry(prm.zp, "zp", 0, self.LATENCY)
        qmin = carry(prm.qmin, "qmin", 0, 13)
        qmax = carry(prm.qmax, "qmax", 0, 13)
        tag = carry(p.tag, "tag", 0, self.LATENCY)

        # Stage 1: acc + bias, wrapping at 32 bits as the int32 accumulator does.
        acc = reg((p.acc + p.bias)[:32].as_signed(), "acc1", signed(32))
        # Stage 2: sign and magnitude (|-2**31| = 2**31 still fits 32 unsigned bits).
        neg = carry(reg(acc < 0, "neg2"), "neg", 2, 12)
        mag = reg(Mux(acc < 0, -acc, acc)[:32], "mag2", unsigned(32))
        # Stages 3-4: the shift that puts the top bit of |acc| at bit 23: right (rounding,
        # step 1) when |acc| >= 2**24, left (exact) below. Normalizing small values too
        # makes the product's top bit 46 or 47, so step 6 below has two cases, not 25.
        # The bit length in two registered steps, by bytes then whole; stage 4 writes
        # s1 = bit_length(|acc|) - 24 and the forms stage 5 uses (the left shift, whether
        # to shift right) with the byte's offset folded in, so no compare follows it.
        groups = [
            (reg(nz, f"nz{g}_3"), reg(length, f"len{g}_3"))
            for g, (nz, length) in enumerate(group_lengths(m, mag, "glen"))
        ]
        mag3 = reg(mag, "mag3")
        s1_c = Signal(signed(6), name="s1_comb", init=-24)
        lsh_c = Signal(5, name="lsh_comb", init=24)
        for g, (nz, length) in enumerate(groups):  # later assignments win: the top byte
            with m.If(nz):
                m.d.comb += s1_c.eq(8 * g - 24 + length)
                if 8 * g < 24:
                    m.d.comb += lsh_c.eq(24 - 8 * g - length)
                else:
                    m.d.comb += lsh_c.eq(0)
        s1_4 = reg(s1_c, "s1_4", signed(6))
        lsh_4, rsh_4 = reg(lsh_c, "lsh4"), reg(groups[3][0], "rsh4")  # bits 24 up
        mag4 = reg(mag3, "mag4")
        # Stage 5: step 1 (shift and round-up bit), or the exact left shift.
        right, up0 = _rne_right(m, mag4, s1_4, range(1, 9), "step1")
        left = mag4[:24] << lsh_4
        q5 = reg(Mux(rsh_4, right[:24], left[:24]), "q5", unsigned(24))
        up5, s1_5 = reg(up0, "up5"), reg(s1_4, "s1_5")
        # Stage 6: add the round-up; a carry out to 2**24 renormalizes (exact: q = 2**23).
        q_up, carry = round_up(q5, up5)
        q6 = reg(q_up, "q6", unsigned(24))
        s1_6 = reg(s1_5 + carry, "s1_6", signed(6))
        # Stage 7: step 2, the 24 x 24 product as two 24 x 12 partial products (one
        # DSP48E2 each, registered); stage 8 adds them.
        lo7 = reg(q6 * mant[6][:12], "lo7", unsigned(36))
        hi7 = reg(q6 * mant[6][12:], "hi7", unsigned(36))
        s1_7 = reg(s1_6, "s1_7")
        # Stage 8: the product.
        prod8, s1_8 = reg(lo7 + (hi7 << 12), "prod8", unsigned(48)), reg(s1_7, "s1_8")
        # Stage 9: with q and m both in [2**23, 2**24), step 3 drops 23 or 24 bits (q = 0
        # gives P = 0, which any shift keeps 0).
        s2_9 = reg(23 + prod8[47], "s2_9", unsigned(5))
        prod9, s1_9 = reg(prod8, "prod9"), reg(s1_8, "s1_9")
        # Stage 10: step 3, round the product to 24 significant bits.
        r0, up1 = _rne_right(m, prod9, s2_9, (23, 24), "step3")
        r10, up10 = reg(r0[:24], "r10"), reg(up1, "up10")
        t10 = reg(s1_9 + s2_9 + e[9], "t10", signed(10))
        # Stage 11: add the round-up (r may reach 2**24); t = s1 + s2 + e is r's exponent.
        # Step 4's case decode and sticky bits come from r10 and up10 alongside the adder.
        r11 = reg(r10 + up10, "r11", unsigned(25))
        step4 = register_fields(
            m, round_decode(m, r10, up10, t10, (r10 == 0) & ~up10, "step4"), "step4_11", reg
        )
        # Stage 12: step 4, y = RNE(r * 2**t) from the decoded case (:func:`round_decode`).
        y12, up12 = round_select(r11, step4)
        y_12, up_12 = reg(y12, "y12"), reg(up12, "up12")
        # Stage 13: apply the sign and the zero point in one adder: zp +/- (y + up).
        y_up = y_12 + up_12
        yz = reg(Mux(neg[12], zp[12] - y_up, zp[12] + y_up), "yz13", signed(12))
        # Stage 14: saturate to [qmin, qmax].
        code = Mux(yz < qmin[13], qmin[13], Mux(yz > qmax[13], qmax[13], yz))
        code14 = reg(code, "code14", signed(9))

        m.d.comb += [
            self.o.valid.eq(valid[self.LATENCY]),
            self.o.payload.code.eq(code14),
            self.o.payload.zp.eq(zp[self.LATENCY]),
            self.o.payload.tag.eq(tag[self.LATENCY]),
        ]
        return m
