"""torchvision and timm next to the CPU torch (``bamboo.models.vision``)."""

import pytest

torch = pytest.importorskip("torch")

from bamboo.models import vision  # noqa: E402


def test_torchvision_imports_with_its_operator_schemas():
    tv = vision.torchvision()
    assert tv.__version__.startswith("0.28")
    assert hasattr(torch.ops.torchvision, "nms") and hasattr(torch.ops.torchvision, "qnms")
    model = tv.models.mobilenet_v2(weights=None).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)


def test_timm_builds_a_model_without_weights():
    timm = vision.timm()
    model = timm.create_model("tinynet_e", pretrained=False).eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)
