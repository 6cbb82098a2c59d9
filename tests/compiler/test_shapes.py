"""``--input-shape NAME=D1xD2x...`` parsing (``bamboo.compiler.shapes``)."""

import pytest
from bamboo.compiler.errors import CompilerError
from bamboo.compiler.shapes import parse_input_shapes


def test_parses_each_name_and_shape():
    assert parse_input_shapes(["input=1x3x224x224", " mask = 2X7 "]) == {
        "input": (1, 3, 224, 224), "mask": (2, 7)}
    assert parse_input_shapes([]) == {} and parse_input_shapes(None) == {}


@pytest.mark.parametrize("spec, message", [
    ("1x3x224x224", "expected NAME=D1xD2x"),
    ("input=", "expected NAME=D1xD2x"),
    ("=1x3", "expected NAME=D1xD2x"),
    ("input=1x3xHx224", "must be integers"),
    ("input=1x-3x4", "must be integers"),
    ("input=1x3x2.5", "must be integers"),
    ("input=1x0x4", "must be positive"),
])
def test_bad_text_is_one_compiler_error(spec, message):
    with pytest.raises(CompilerError, match=message) as info:
        parse_input_shapes([spec])
    assert "\n" not in str(info.value)


def test_a_name_twice_is_refused():
    with pytest.raises(CompilerError, match="twice"):
        parse_input_shapes(["input=1x3", "input=1x4"])
