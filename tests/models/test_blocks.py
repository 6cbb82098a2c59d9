"""models/blocks.py: each block behind its stem, shapes and the residual where the papers put it."""

import pytest

torch = pytest.importorskip("torch", reason="the blocks are built with torch")
from bamboo.models.blocks import BLOCKS, make_block  # noqa: E402


@pytest.mark.parametrize(
    "name,out,residual",
    [
        ("block_mbv2_residual", (1, 24, 16, 16), True),
        ("block_mbv2_stride2", (1, 32, 8, 8), False),
        ("block_mbconv_se", (1, 24, 16, 16), True),
    ],
)
def test_block_shapes(name, out, residual):
    net = make_block(name).eval()
    assert tuple(net(torch.zeros(1, 3, 32, 32)).shape) == out
    assert net[1].residual is residual


def test_width_scales_channels_and_names_are_checked():
    assert set(BLOCKS) == {"block_mbv2_residual", "block_mbv2_stride2", "block_mbconv_se"}
    net = make_block("block_mbv2_stride2", width=0.5).eval()
    assert tuple(net(torch.zeros(1, 3, 32, 32)).shape) == (1, 16, 8, 8)
    with pytest.raises(ValueError, match="block must be one of"):
        make_block("resnet")
