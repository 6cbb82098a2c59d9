"""Float32 fused multiply-add of a small integer, in integers: the vector unit's ADD datapath.

``r = round24(x * f + z)``: ``x`` an integer of ``x_width`` bits (a code, a zero
point, or a product of two zero-point-corrected codes), ``f`` and ``z`` float32
values, one round-to-nearest-even to 24 significant bits, as x86's ``vfmadd``
(Ref: ../shared/numerics.md, "Add"; ``runtime/elementwise.py``'s ``fma_f32``).
Values travel as :class:`Float` (sign, 24-bit mantissa normalized to ``[2**23,
2**24)``, exponent of the mantissa's last bit), which has no exponent range:
float32's subnormal *results* are out of scope (the scales the compiler writes
give none: every intermediate value is zero or above 2**-60 in magnitude).

The datapath puts the exact product ``P = |x| * f.mant`` at bit ``G`` of a
window and aligns ``z``'s mantissa to it:

* ``z`` more than two bits above ``P``'s top is clamped to that position (the
  window's exponent moves up by as much): ``P`` is then below a quarter of
  ``z``'s last place, and any such ``P`` rounds the same (``z`` is normalized);
* bits of ``z`` below window bit 1 fold into a sticky bit 0. ``P`` starts at
  bit ``G = 3`` and, with ``x != 0`` and ``f`` normalized, the result keeps at
  least 23 bits above ``G``, so it rounds at bit 2 or higher, where the sticky
  bit cannot change the rounding (every rounding boundary there is even);
* ``x * f == 0``: the result is ``z`` itself (already 24 bits).

Then the sum's bit length picks the rounding position (a right shift with
round-half-even) or an exact left shift, and a carry out of the round-up
renormalizes.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from bamboo.hw.pipeline import bit_length, delay_chain, register, round_up

__all__ = ["EXP_WIDTH", "Float", "FusedMultiplyAdd", "addend_layout", "align_addend",
           "float_const", "mantissa_float", "unpack_f32"]

#: Exponent width of :class:`Float`: float32 values and the window's offsets fit easily.
EXP_WIDTH = 12
_MANT = 24
_G = 3          # the product's first bit in the window
_ABOVE = 2      # zero bits between the product's top and a clamped z


class Float(data.Struct):
    """A float value ``(-1)**sign * mant * 2**exp``; ``mant`` in ``[2**23, 2**24)`` unless zero.

    Fields
    ------
    zero : unsigned(1)
        The value is zero (``sign``, ``mant``, ``exp`` are then don't-care).
    sign : unsigned(1)
    mant : unsigned(24)
    exp : signed(EXP_WIDTH)
    """

    zero: unsigned(1)
    sign: unsigned(1)
    mant: unsigned(_MANT)
    exp: signed(EXP_WIDTH)


def float_const(value):
    """Fields of a :class:`Float` constant equal to the Python float or int ``value``."""
    import math

    if value == 0:
        return {"zero": 1, "sign": 0, "mant": 0, "exp": 0}
    frac, exp = math.frexp(abs(value))
    mant = int(frac * (1 << _MANT))
    if mant / (1 << _MANT) != frac:
        raise ValueError(f"value must have at most 24 significant bits, not {value!r}")
    return {"zero": 0, "sign": int(value < 0), "mant": mant, "exp": exp - _MANT}


def _normalized(m, mant, exp, name):
    """``(mant << shift, exp - shift)`` with the top bit of the 24-bit ``mant`` at bit 23."""
    length = bit_length(m, mant, f"{name}_len")
    shift = (_MANT - length)[:5]
    return (mant << shift)[:_MANT], exp - shift


def unpack_f32(m, bits, name):
    """A :class:`Float` view of float32 ``bits`` (combinational; subnormals normalized).

    Infinities and NaNs are not float32 values the compiler writes; they read as
    finite numbers with exponent 128.
    """
    out = Signal(Float, name=name)
    e8, frac = bits[23:31], bits[:23]
    mant = Mux(e8 == 0, frac, frac | (1 << 23))
    exp = Mux(e8 == 0, 1, e8) - 150
    norm, nexp = _normalized(m, mant[:_MANT], exp, name)
    m.d.comb += [out.zero.eq(mant == 0), out.sign.eq(bits[31]), out.mant.eq(norm),
                 out.exp.eq(nexp)]
    return out


def mantissa_float(m, mant, exp, name):
    """A :class:`Float` of ``mant * 2**exp`` (``mant`` unsigned, up to 24 bits)."""
    out = Signal(Float, name=name)
    norm, nexp = _normalized(m, mant, exp, name)
    m.d.comb += [out.zero.eq(mant == 0), out.mant.eq(norm), out.exp.eq(nexp)]
    return out


def _window(x_width):
    """``(top, width)``: highest window position of z's last bit, and the window's bits."""
    top = _G + x_width + _MANT + _ABOVE       # the product has x_width + 24 bits
    return top, top + _MANT


def addend_layout(x_width):
    """``z`` aligned to the window of ``x_width``-bit products (:func:`align_addend`)."""
    return data.StructLayout({"win": unsigned(_window(x_width)[1] - 1), "sticky": 1,
                              "pexp": signed(EXP_WIDTH)})


def align_addend(m, x_width, f, z, name):
    """``z`` aligned to the products ``x * f`` (combinational).

    With ``f`` and ``z`` constant over many operations (ADD's ``rB`` and ``K``), one
    shifter per instruction replaces one per lane (``FusedMultiplyAdd(aligned=True)``).
    Returns a Signal of :func:`addend_layout`: window bits 1 and up, the sticky bit 0,
    and the window's exponent (bit ``G`` weighs ``2**pexp``).
    """
    (top, width), below = _window(x_width), _MANT
    out = Signal(addend_layout(x_width), name=name)
    pos = _G + z.exp - f.exp                    # window position of z's last bit
    shift = Mux(pos + below < 0, 0, Mux(pos > top, top + below, pos + below))
    zwide = (Mux(z.zero, 0, z.mant) << shift[:(top + below).bit_length()])[:width + below]
    m.d.comb += [out.win.eq(zwide[below + 1:]), out.sticky.eq(zwide[:below + 1].any()),
                 # A clamped z moves the window up with it (the product only rounds).
                 out.pexp.eq(f.exp + Mux(pos > top, pos - top, 0))]
    return out


class FusedMultiplyAdd(wiring.Component):
    """``o = round24(x * f + z)``, pipelined, one operation per cycle, no back-pressure.

    Parameters
    ----------
    x_width : int
        Width of the signed integer ``x``.
    tag_shape : shape-like
        Side data carried alongside, unchanged.
    aligned : bool
        Take ``z`` also pre-aligned (``za``), for an addend shared
        by many units (:func:`align_addend`); ``z`` itself is then only the result when
        ``x * f == 0``.

    Attributes
    ----------
    i : In(stream.Signature({x, f, z, [za,] tag}), always_ready)
        ``x`` signed(x_width); ``f``, ``z`` :class:`Float`; ``za`` :func:`addend_layout`.
    o : Out(stream.Signature({r, tag}), always_ready)
        ``r`` :class:`Float`, :data:`LATENCY` cycles after the input.
    """

    LATENCY = 7

    def __init__(self, x_width, tag_shape=unsigned(0), *, aligned=False):
        if not isinstance(x_width, int) or not 2 <= x_width <= 24:
            raise ValueError(f"x_width must be an integer in [2, 24], not {x_width!r}")
        self.x_width = x_width
        self.aligned = bool(aligned)
        self._width = _window(x_width)[1]
        fields = {"x": signed(x_width), "f": Float, "z": Float, "tag": tag_shape}
        if aligned:
            fields["za"] = addend_layout(x_width)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout(fields), always_ready=True)),
            "o": Out(stream.Signature(data.StructLayout({"r": Float, "tag": tag_shape}),
                                      always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        width = self._width

        def reg(value, name, shape=None):
            return register(m, value, name, shape)

        valid = delay_chain(m, self.i.valid, self.LATENCY)[-1]
        tag = p.tag
        for n in range(self.LATENCY):
            tag = reg(tag, f"tag{n + 1}")

        # Stage 1: |x|, the product's sign and zero flag, z's position relative to the product.
        neg_x = p.x < 0
        mag1 = reg(Mux(neg_x, -p.x, p.x), "mag1", unsigned(self.x_width))
        fm1 = reg(p.f.mant, "fm1")
        psign1 = reg(neg_x ^ p.f.sign, "psign1")
        pzero1 = reg((p.x == 0) | p.f.zero, "pzero1")
        z1 = reg(p.z, "z1")
        f1 = reg(p.f, "f1")
        za1 = reg(p.za, "za1") if self.aligned else None
        # Stage 2: the product (a DSP48E2), and z's mantissa shifted into the window (or
        # the aligned addend given).
        prod2 = reg(mag1 * fm1, "prod2", unsigned(self.x_width + _MANT))
        za2 = reg(za1 if self.aligned else align_addend(m, self.x_width, f1, z1, "za_comb"),
                  "za2", addend_layout(self.x_width))
        zwin2, zsticky2, pexp2 = za2.win, za2.sticky, za2.pexp
        psign2, pzero2, z2 = (reg(v, f"{n}2") for n, v in
                              (("psign", psign1), ("pzero", pzero1), ("z", z1)))
        # Stage 3: the exact signed sum (z's sticky as bit 0), window bit 0 has weight
        # 2**(pexp - G).
        pw = Mux(pzero2, 0, prod2) << _G
        zw = Mux(z2.zero, 0, (zwin2 << 1) | zsticky2)
        total = Mux(psign2, -pw, pw) + Mux(z2.sign, -zw, zw)
        sum3 = reg(total, "sum3", signed(width + 2))
        pzero3, pexp3, z3 = reg(pzero2, "pzero3"), reg(pexp2, "pexp3"), reg(z2, "z3")
        # Stage 4: sign, magnitude and its bit length.
        mag4 = reg(Mux(sum3 < 0, -sum3, sum3)[:width + 1], "mag4", unsigned(width + 1))
        neg4 = reg(sum3 < 0, "neg4")
        len4 = reg(bit_length(m, Mux(sum3 < 0, -sum3, sum3)[:width + 1], "len_comb"), "len4")
        pzero4, pexp4, z4 = reg(pzero3, "pzero4"), reg(pexp3, "pexp4"), reg(z3, "z4")
        # Stage 5: to 24 bits: a right shift keeping guard and sticky, or an exact left shift.
        over = len4 - _MANT                         # bits below the 24 kept
        right = Signal(range(width + 2), name="right")
        m.d.comb += right.eq(Mux(over > 0, over - 1, 0))
        t = mag4 >> right                           # guard bit at t[0]
        mask = ~(Const(-1, signed(width + 2)) << right)
        sticky = (mag4 & mask[:width + 1]).any()
        left = (mag4 << Mux(over < 0, -over, 0)[:5])[:_MANT]
        q5 = reg(Mux(over > 0, t[1:_MANT + 1], left), "q5", unsigned(_MANT))
        up5 = reg((over > 0) & t[0] & (sticky | t[1]), "up5")
        exp5 = reg(pexp4 - _G + over, "exp5", signed(EXP_WIDTH))
        zero5 = reg(len4 == 0, "zero5")
        neg5, pzero5, z5 = reg(neg4, "neg5"), reg(pzero4, "pzero5"), reg(z4, "z5")
        # Stage 6: the round-up; a carry out to 2**24 renormalizes (then q is exactly 2**23).
        mant6, carry6 = round_up(q5, up5)
        res = Signal(Float, name="res6_comb")
        m.d.comb += [res.zero.eq(zero5), res.sign.eq(neg5), res.mant.eq(mant6),
                     res.exp.eq(exp5 + carry6)]
        r6 = reg(Mux(pzero5, z5.as_value(), res.as_value()), "r6", Float)
        # Stage 7: output register (the next unit's alignment starts from a clean register).
        r7 = reg(r6, "r7", Float)
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.r.eq(r7),
                     self.o.payload.tag.eq(tag)]
        return m
