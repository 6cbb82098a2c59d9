"""Float32 fused multiply-add of a small integer, in integers: the vector unit's ADD datapath.

``r = round24(x * f + z)``: ``x`` an integer of ``x_width`` bits (a code, a zero
point, or a product of two zero-point-corrected codes), ``f`` and ``z`` float32
values, one round-to-nearest-even to 24 significant bits, as x86's ``vfmadd``
(Ref: docs/numerics.md, "Add"; ``runtime/elementwise.py``'s ``fma_f32``).
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

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from bamboo.hw.pipeline import (
    combine_lengths,
    delay_chain,
    group_lengths,
    leading_zeros,
    register,
    round_up,
)

__all__ = [
    "EXP_WIDTH",
    "Float",
    "FusedMultiplyAdd",
    "addend_layout",
    "addend_shift",
    "addend_shift_layout",
    "align_addend",
    "float_const",
    "mantissa_float",
    "partial_layout",
    "shift_addend",
    "unpack_f32",
    "window_addend",
]

#: Exponent width of :class:`Float`: float32 values and the window's offsets fit easily.
EXP_WIDTH = 12
_MANT = 24
_G = 3  # the product's first bit in the window
_ABOVE = 2  # zero bits between the product's top and a clamped z


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


def _normalized(m, mant, exp, name, stage=None, exp_offset=0):
    """``(mant << shift, exp + exp_offset - shift)`` with the top bit of the 24-bit
    ``mant`` at bit 23.

    ``stage(value, name)``, if given, splits it in two balanced steps: by whole bytes
    first (the highest non-zero byte moved to the top, that byte's leading zeros picked
    from three formed beside the byte test), registered, then by those zeros (0 to 7; 8
    only for a zero ``mant``), the exponent adjusted by both at once."""
    assert len(mant) == _MANT
    if stage is None:
        shift = leading_zeros(m, mant, f"{name}_lz")[:5]
        return (mant << shift)[:_MANT], exp + exp_offset - shift
    hi, mid = mant[16:24].any(), mant[8:16].any()
    coarse = Mux(hi, mant, Mux(mid, mant << 8, mant << 16))[:_MANT]
    zeros = [leading_zeros(m, mant[lo : lo + 8], f"{name}_lz{lo}") for lo in (16, 8, 0)]
    coarse, exp, fine, by = (
        stage(coarse, f"{name}_bytes"),
        stage(exp + exp_offset, f"{name}_exp"),
        stage(Mux(hi, zeros[0], Mux(mid, zeros[1], zeros[2])), f"{name}_fine"),
        stage(Mux(hi, 0, Mux(mid, 1, 2)), f"{name}_by"),  # whole bytes shifted
    )
    # shift = 8 * by + fine without an adder: fine <= 7 but for a zero mant (8, with
    # by = 2), whose shift is 24.
    shift = Cat(fine[:3], Mux(fine[3], 3, by))
    return (coarse << fine)[:_MANT], exp - shift


def unpack_f32(m, bits, name, stage=None):
    """A :class:`Float` view of float32 ``bits`` (combinational; subnormals normalized).

    Infinities and NaNs are not float32 values the compiler writes; they read as
    finite numbers with exponent 128. ``stage(value, name)``, if given, makes it two
    steps: the normalizing shift a register later than the bit length.
    """
    out = Signal(Float, name=name)
    e8, frac = bits[23:31], bits[:23]
    mant = Mux(e8 == 0, frac, frac | (1 << 23))
    zero, sign = mant == 0, bits[31]
    if stage is not None:
        zero, sign = stage(zero, f"{name}_zero"), stage(sign, f"{name}_sign")
    # The exponent, Mux(e8 == 0, 1, e8) - 150, with the bias added by the normalizer.
    norm, nexp = _normalized(m, mant[:_MANT], Mux(e8 == 0, 1, e8), name, stage, -150)
    m.d.comb += [out.zero.eq(zero), out.sign.eq(sign), out.mant.eq(norm), out.exp.eq(nexp)]
    return out


def mantissa_float(m, mant, exp, name, stage=None):
    """A :class:`Float` of ``mant * 2**exp`` (``mant`` unsigned, up to 24 bits);
    ``stage`` as :func:`unpack_f32`'s."""
    out = Signal(Float, name=name)
    zero = mant == 0 if stage is None else stage(mant == 0, f"{name}_zero")
    norm, nexp = _normalized(m, mant, exp, name, stage)
    m.d.comb += [out.zero.eq(zero), out.mant.eq(norm), out.exp.eq(nexp)]
    return out


def _window(x_width):
    """``(top, width)``: highest window position of z's last bit, and the window's bits."""
    top = _G + x_width + _MANT + _ABOVE  # the product has x_width + 24 bits
    return top, top + _MANT


def addend_layout(x_width):
    """``z`` aligned to the window of ``x_width``-bit products (:func:`align_addend`)."""
    return data.StructLayout(
        {"win": unsigned(_window(x_width)[1] - 1), "sticky": 1, "pexp": signed(EXP_WIDTH)}
    )


def addend_shift_layout(x_width):
    """The alignment of ``z`` to ``x_width``-bit products (:func:`addend_shift`)."""
    top, _ = _window(x_width)
    return data.StructLayout(
        {"shift": unsigned((top + _MANT).bit_length()), "pexp": signed(EXP_WIDTH)}
    )


def addend_shift(m, x_width, f_exp, z_exp, diff, name):
    """The first part of :func:`align_addend`: the left shift of ``z``'s mantissa into
    the window and the window's exponent, from the exponents and their difference
    ``diff = z_exp - f_exp`` (a register in a pipeline; combinational: compares with
    constants, one adder)."""
    (top, _), below = _window(x_width), _MANT
    out = Signal(addend_shift_layout(x_width), name=name)
    # z's last bit sits at window position G + diff.
    clamp = diff > top - _G
    m.d.comb += [
        out.shift.eq(Mux(diff < -(_G + below), 0, Mux(clamp, top + below, diff + (_G + below)))),
        # A clamped z moves the window up with it (the product only rounds).
        out.pexp.eq(Mux(clamp, z_exp + (_G - top), f_exp)),
    ]
    return out


def partial_layout(x_width):
    """``z``'s mantissa shifted by the low three bits of its alignment (:func:`shift_addend`)."""
    top, _ = _window(x_width)
    return data.StructLayout(
        {
            "part": unsigned(_MANT + 7),
            "hi": unsigned(max((top + _MANT).bit_length() - 3, 1)),
            "pexp": signed(EXP_WIDTH),
        }
    )


def addend_mantissa(z):
    """``z``'s mantissa, 0 for a zero ``z``: the input of :func:`shift_addend`."""
    return Mux(z.zero, 0, z.mant)


def addend_keep(m, shift, name):
    """The mask of ``z``'s mantissa bits that land below window bit 1 (they only make the
    sticky bit): its bits below ``25 - shift``, for the ``shift`` of :func:`addend_shift`
    (combinational, a decoder). A pipeline registers it beside :func:`shift_addend`'s
    result and takes the sticky bit a stage later, in parallel with
    :func:`window_addend`'s shift."""
    keep = Signal(_MANT, name=name)
    # Bit j is kept below bit 25 - shift: one compare of ``shift`` with a constant each,
    # not a decoder whose shared terms the mapper chains.
    m.d.comb += keep.eq(Cat(shift <= _MANT - j for j in range(_MANT)))
    return keep


def shift_addend(m, x_width, mant, sh, name):
    """The second part of :func:`align_addend`: the mantissa ``mant`` of ``z``
    (:func:`addend_mantissa`, registered or not) shifted by the low three bits of
    ``sh.shift`` (:func:`addend_shift`) (combinational; a Signal of
    :func:`partial_layout`)."""
    out = Signal(partial_layout(x_width), name=name)
    m.d.comb += [
        out.part.eq(mant << sh.shift[:3]),
        out.hi.eq(sh.shift[3:]),
        out.pexp.eq(sh.pexp),
    ]
    return out


def window_addend(m, x_width, part, sticky, name):
    """The last part of :func:`align_addend`: the partly shifted mantissa moved by the
    multiple of eight left, with the ``sticky`` bit, ``(mant & keep).any()`` of
    :func:`addend_keep` (combinational; a Signal of :func:`addend_layout`)."""
    (_, width), below = _window(x_width), _MANT
    out = Signal(addend_layout(x_width), name=name)
    zwide = (part.part << Cat(Const(0, 3), part.hi))[: width + below]
    m.d.comb += [out.win.eq(zwide[below + 1 :]), out.sticky.eq(sticky), out.pexp.eq(part.pexp)]
    return out


def align_addend(m, x_width, f, z, name):
    """``z`` aligned to the products ``x * f`` (combinational).

    With ``f`` and ``z`` constant over many operations (ADD's ``rB`` and ``K``), one
    shifter per instruction replaces one per lane (``FusedMultiplyAdd(aligned=True)``).
    Returns a Signal of :func:`addend_layout`: window bits 1 and up, the sticky bit 0,
    and the window's exponent (bit ``G`` weighs ``2**pexp``). A pipelined datapath
    registers between its three parts: :func:`addend_shift`, :func:`shift_addend` (with
    :func:`addend_keep`), :func:`window_addend` (with the sticky bit).
    """
    mant = addend_mantissa(z)
    sh = addend_shift(m, x_width, f.exp, z.exp, z.exp - f.exp, f"{name}_sh")
    part = shift_addend(m, x_width, mant, sh, f"{name}_part")
    sticky = (mant & addend_keep(m, sh.shift, f"{name}_keep")).any()
    return window_addend(m, x_width, part, sticky, name)


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
        ``x * f == 0``. ``za`` is read :data:`ZA_LAG` cycles after the other operands
        (it is needed only then: the vector unit's is a per-instruction constant).

    Attributes
    ----------
    i : In(stream.Signature({x, f, z, [za,] tag}), always_ready)
        ``x`` signed(x_width); ``f``, ``z`` :class:`Float`; ``za`` :func:`addend_layout`.
    o : Out(stream.Signature({r, tag}), always_ready)
        ``r`` :class:`Float`, :data:`LATENCY` cycles after the input.
    """

    LATENCY = 13
    #: Cycles from an operation's ``x``, ``f``, ``z`` to its ``za`` (``aligned=True``).
    ZA_LAG = 3

    def __init__(self, x_width, tag_shape=unsigned(0), *, aligned=False):
        if not isinstance(x_width, int) or not 2 <= x_width <= 24:
            raise ValueError(f"x_width must be an integer in [2, 24], not {x_width!r}")
        self.x_width = x_width
        self.aligned = bool(aligned)
        self._width = _window(x_width)[1]
        fields = {"x": signed(x_width), "f": Float, "z": Float, "tag": tag_shape}
        if aligned:
            fields["za"] = addend_layout(x_width)
        super().__init__(
            {
                "i": In(stream.Signature(data.StructLayout(fields), always_ready=True)),
                "o": Out(
                    stream.Signature(
                        data.StructLayout({"r": Float, "tag": tag_shape}), always_ready=True
                    )
                ),
            }
        )

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

        def delay(value, n, name):
            for k in range(n):
                value = reg(value, f"{name}_d{k + 1}")
            return value

        def stage(n, **values):
            """Registers ``{name}{n}`` of ``values``, as a namespace."""
            return SimpleNamespace(**{k: reg(v, f"{k}{n}") for k, v in values.items()})

        # Stage 1: |x|, the product's sign and zero flag, z's exponent relative to f's.
        neg_x = p.x < 0
        s1 = stage(
            1,
            mag=Mux(neg_x, -p.x, p.x)[: self.x_width],
            fm=p.f.mant,
            psign=neg_x ^ p.f.sign,
            pzero=(p.x == 0) | p.f.zero,
            z=p.z,
        )
        if not self.aligned:
            diff1, fexp1 = (
                reg(p.z.exp - p.f.exp, "diff1", signed(EXP_WIDTH + 1)),
                reg(p.f.exp, "fexp1"),
            )
        # Stages 2-4: the product (a DSP48E2, registered twice); z's mantissa shifted into
        # the window in three steps (:func:`align_addend`), or the aligned addend, given
        # ZA_LAG cycles late.
        prod2 = reg(s1.mag * s1.fm, "prod2", unsigned(self.x_width + _MANT))
        prod3 = reg(Mux(delay(s1.pzero, 1, "pz"), 0, prod2), "prod3")
        prod4 = reg(prod3, "prod4")
        if self.aligned:
            za4 = reg(p.za, "za4", addend_layout(self.x_width))
        else:
            sh2 = reg(
                addend_shift(m, self.x_width, fexp1, s1.z.exp, diff1, "sh_comb"),
                "sh2",
                addend_shift_layout(self.x_width),
            )
            # The sticky bit's mask is decoded in stage 3 and applied in stage 4, beside the
            # window shift.
            zmant2 = reg(addend_mantissa(s1.z), "zmant2", unsigned(_MANT))
            part3 = reg(
                shift_addend(m, self.x_width, zmant2, sh2, "part_comb"),
                "part3",
                partial_layout(self.x_width),
            )
            keep3 = reg(addend_keep(m, sh2.shift, "keep_comb"), "keep3")
            zmant3 = reg(zmant2, "zmant3")
            za4 = reg(
                window_addend(m, self.x_width, part3, (zmant3 & keep3).any(), "za_comb"),
                "za4",
                addend_layout(self.x_width),
            )
        s4 = stage(
            4,
            psign=delay(s1.psign, 2, "psign"),
            pzero=delay(s1.pzero, 2, "pzero"),
            z=delay(s1.z, 2, "z"),
        )
        # Stage 5: the addends in the window (window bit 0 has weight 2**(pexp - G)); z's
        # complemented when the signs differ.
        sub = s4.z.sign ^ s4.psign
        zw = Mux(s4.z.zero, 0, (za4.win << 1) | za4.sticky)
        s5 = stage(
            5,
            pw=(prod4 << _G)[:width],
            zx=(zw ^ Mux(sub, -1, 0))[: width + 1],
            sub=sub,
            psign=s4.psign,
            pzero=s4.pzero,
            pexp=za4.pexp,
            z=s4.z,
        )
        # Stage 6: t = |P| +- |z| in one carry chain (the complement's +1 as its carry in);
        # the exact sum is t, or -t for a negative product.
        t = (Cat(1, s5.pw, 0).as_signed() + Cat(s5.sub, s5.zx.as_signed()).as_signed())[1:]
        s6 = stage(6, t=t.as_signed(), psign=s5.psign, pzero=s5.pzero, pexp=s5.pexp, z=s5.z)
        # Stage 7: the sum's sign and magnitude (a zero sum's sign is don't-care).
        s7 = stage(
            7,
            mag=Mux(s6.t < 0, -s6.t, s6.t)[: width + 1],
            neg=(s6.t < 0) ^ s6.psign,
            pzero=s6.pzero,
            pexp=s6.pexp,
            z=s6.z,
        )
        # Stages 8-9: the magnitude's bit length, by bytes then whole.
        groups = [
            tuple(reg(v, f"{k}{g}_8") for k, v in zip(("nz", "len"), pair))
            for g, pair in enumerate(group_lengths(m, s7.mag, "glen"))
        ]
        s8 = stage(8, mag=s7.mag, neg=s7.neg, pzero=s7.pzero, pexp=s7.pexp, z=s7.z)
        length = combine_lengths(m, groups, "len_comb")
        s9 = stage(
            9,
            len=length,
            nz=Cat(nz for nz, _ in groups),
            mag=s8.mag,
            neg=s8.neg,
            pzero=s8.pzero,
            pexp=s8.pexp,
            z=s8.z,
        )
        # Stage 10: the shifts to 24 bits: right (keeping a guard bit) or exactly left.
        over = s9.len - _MANT  # bits below the 24 kept
        right = Mux(over > 0, over - 1, 0)
        s10 = stage(
            10,
            right=right[: (width + 1).bit_length()],
            left=Mux(over < 0, -over, 0)[:5],
            rnd=over > 0,
            exp=s9.pexp - _G + over,
            zero=s9.len == 0,
            nz=s9.nz,
            mag=s9.mag,
            neg=s9.neg,
            pzero=s9.pzero,
            z=s9.z,
        )
        # Stage 11: the right shift by whole bytes (the bytes shifted out are sticky: the
        # bit length's non-zero flags) and the left shift.
        hi, lo = s10.right[3:], s10.right[:3]
        coarse = (s10.mag >> Cat(Const(0, 3), hi))[: _MANT + 9]
        dropped = Signal(len(s10.nz), name="dropped")
        with m.Switch(hi):
            for k in range(min(len(s10.nz) + 1, 1 << len(hi))):
                with m.Case(k):
                    m.d.comb += dropped.eq((1 << k) - 1)
        s11 = stage(
            11,
            coarse=coarse,
            lo=lo,
            sticky=(s10.nz & dropped).any(),
            left=(s10.mag[:_MANT] << s10.left)[:_MANT],
            rnd=s10.rnd,
            exp=s10.exp,
            zero=s10.zero,
            neg=s10.neg,
            pzero=s10.pzero,
            z=s10.z,
        )
        # Stage 12: the rest of the right shift, its guard and sticky bits, the round-up.
        fine = s11.coarse >> s11.lo  # guard bit at fine[0]
        sticky = s11.sticky | (s11.coarse & ~(Const(-1, signed(9)) << s11.lo)[:8]).any()
        s12 = stage(
            12,
            q=Mux(s11.rnd, fine[1 : _MANT + 1], s11.left)[:_MANT],
            up=s11.rnd & fine[0] & (sticky | fine[1]),
            exp=s11.exp,
            zero=s11.zero,
            neg=s11.neg,
            pzero=s11.pzero,
            z=s11.z,
        )
        # Stage 13: the round-up; a carry out to 2**24 renormalizes (then q is exactly 2**23).
        mant, carry = round_up(s12.q, s12.up)
        res = Signal(Float, name="res_comb")
        m.d.comb += [
            res.zero.eq(s12.zero),
            res.sign.eq(s12.neg),
            res.mant.eq(mant),
            res.exp.eq(s12.exp + carry),
        ]
        r13 = reg(Mux(s12.pzero, s12.z.as_value(), res.as_value()), "r13", Float)
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.r.eq(r13), self.o.payload.tag.eq(tag)]
        return m
