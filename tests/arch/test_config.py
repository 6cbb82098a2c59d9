import dataclasses

import pytest
from bamboo.arch import PRESETS, AcceleratorConfig, ConfigError, preset


def test_presets_validate_and_differ():
    ids = {cfg.config_id for cfg in PRESETS.values()}
    assert len(ids) == len(PRESETS)


def test_config_id_ignores_name_but_not_fields():
    base = preset("tiny")
    assert dataclasses.replace(base, name="other").config_id == base.config_id
    assert dataclasses.replace(base, lut_slots=4).config_id != base.config_id


def test_config_id_stable_across_dict_round_trip():
    cfg = preset("ultra96")
    assert AcceleratorConfig.from_dict(cfg.to_dict()) == cfg
    assert 0 <= cfg.config_id < 2**32


def test_ultra96_dsp_budget():
    cfg = preset("ultra96")
    assert cfg.dsp_count <= 300


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rows": 6}, "rows must be a power of two, not 6"),
        ({"axi_data_width": 96}, "axi_data_width must be 32, 64 or 128, not 96"),
        ({"clock_mhz": 0}, "clock_mhz must be positive, not 0"),
    ],
)
def test_invalid_config_messages(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AcceleratorConfig(**kwargs)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown configuration 'zcu999'"):
        preset("zcu999")
