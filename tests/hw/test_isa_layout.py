"""hw.isa_layout: the data layouts read every field exactly where arch.isa.encode put it."""

import random

import pytest
from bamboo.arch.isa import FORMATS, HEADER, INSN_BITS, Opcode, encode
from bamboo.hw.isa_layout import field_offsets, instruction_layout


@pytest.mark.parametrize("opcode", sorted(FORMATS))
def test_layout_decodes_encoded_words(opcode):
    rng = random.Random(opcode)
    layout = instruction_layout(opcode)
    assert layout.size <= INSN_BITS
    for _ in range(20):
        values = {f.name: rng.randint(f.min, f.max) for f in FORMATS[opcode]}
        word = encode(opcode, **values)
        view = layout.from_bits(word)
        assert view.opcode == opcode
        for name, value in values.items():
            assert getattr(view, name) == value, name


def test_offsets_are_consecutive_from_bit_zero():
    offsets = field_offsets(Opcode.CONV)
    pos = 0
    for f in HEADER + FORMATS[Opcode.CONV]:
        assert offsets[f.name] == (pos, f.width)
        pos += f.width
    assert instruction_layout(Opcode.CONV).size == pos


def test_bad_opcode():
    with pytest.raises(ValueError, match=r"opcode must be one of \[1, 2, 3, 4, 5\], not 9"):
        instruction_layout(9)


def test_param_lane_layout_reads_what_param_lane_packs():
    """hw's view of a PARAM word against arch.layout.param_lane's packing, lane by lane."""
    from bamboo.arch import PRESETS
    from bamboo.arch.layout import param_lane
    from bamboo.hw.isa_layout import param_word_layout

    cfg = PRESETS["tiny"]
    rng = random.Random(5)
    lanes = [
        (rng.randrange(-(1 << 31), 1 << 31), rng.randrange(1 << 24), rng.randrange(-128, 128))
        for _ in range(cfg.cols)
    ]
    word = sum(param_lane(*lane) << (64 * c) for c, lane in enumerate(lanes))
    layout = param_word_layout(cfg)
    assert layout.size == 64 * cfg.cols
    view = layout.from_bits(word)
    assert [(view[c].bias, view[c].m, view[c].e) for c in range(cfg.cols)] == lanes


def test_add_param_layout_reads_what_the_compiler_packs():
    """hw's view of VEC ADD's constants against compiler/backend/pack.py's add_params."""
    import numpy as np
    from bamboo.compiler.backend.pack import add_params
    from bamboo.hw.isa_layout import add_param_layout

    word = add_params(0.02, 0.05, 0.03, 3, -7, 11, lanes=4)
    bits = int.from_bytes(word.tobytes(), "little")
    layout = add_param_layout()
    view = layout.from_bits(bits & ((1 << layout.size) - 1))
    ra, rb, k = np.frombuffer(word.tobytes()[:12], "<u4")
    assert (view.ra, view.rb, view.k) == (ra, rb, k)
    assert len({view.ra, view.rb, view.k}) == 3  # three different constants, not one read thrice
