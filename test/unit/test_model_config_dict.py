"""``ModelConfig.from_dict`` reads back what ``to_dict`` wrote into a sidecar (JSON lists -> tuples)."""

from __future__ import annotations

import json

import pytest

from qdbev_core.checkpoint import CheckpointError
from qdbev_core.model import ModelConfig, get_config


@pytest.mark.parametrize("name", ["nano", "tiny"])
def test_round_trip_through_json(name: str) -> None:
    cfg = get_config(name)
    back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert isinstance(back.image_size, tuple) and isinstance(back.out_stages, tuple)


def test_unknown_field_is_a_checkpoint_error() -> None:
    d = get_config("nano").to_dict() | {"added_in_a_later_version": 1}
    with pytest.raises(CheckpointError, match="added_in_a_later_version"):
        ModelConfig.from_dict(d)


def test_inconsistent_values_are_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        ModelConfig.from_dict(get_config("nano").to_dict() | {"depth": 7})
