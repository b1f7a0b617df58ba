"""Checkpoints: tensors + JSON metadata, loaded with weights_only=True, atomic, and refusing what is not ours."""

import json
from pathlib import Path

import pytest
import torch

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint


def small_checkpoint() -> Checkpoint:
    model = UNet2D(UNetConfig(num_classes=3, channels=(4, 8)))
    return Checkpoint(model.state_dict(), {"stage": "finetune", "architecture": model.config.to_json()})


def test_round_trip_and_plain_torch_load(tmp_path):
    original = small_checkpoint()
    path = save_checkpoint(original, tmp_path / "m.pt")
    loaded = load_checkpoint(path)
    assert loaded.metadata["stage"] == "finetune"
    assert "library_version" in loaded.metadata and "created" in loaded.metadata
    for key, value in original.model.items():
        assert torch.equal(loaded.model[key], value)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "contrastseg-checkpoint"
    assert json.loads(raw["metadata"])["architecture"]["channels"] == [4, 8]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary left behind


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"precious")
    with pytest.raises(ContrastSegError, match="exists"):
        save_checkpoint(small_checkpoint(), path, overwrite=False)
    assert path.read_bytes() == b"precious"
    save_checkpoint(small_checkpoint(), path, overwrite=True)
    assert load_checkpoint(path).metadata["stage"] == "finetune"


def test_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ContrastSegError, match="not a ContrastSeg checkpoint"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(small_checkpoint(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ContrastSegError, match="truncated or corrupt"):
        load_checkpoint(path)


class Payload:
    """Unpickling this would create the sentinel file."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


def test_pickled_code_is_refused_and_never_run(tmp_path):
    sentinel = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "contrastseg-checkpoint", "payload": Payload(sentinel)}, path)
    with pytest.raises(ContrastSegError, match="refused"):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_newer_format_is_refused(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": "contrastseg-checkpoint", "format_version": 99, "metadata": "{}", "model": {}}, path)
    with pytest.raises(ContrastSegError, match="upgrade"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ContrastSegError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
