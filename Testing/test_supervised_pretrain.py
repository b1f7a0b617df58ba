"""The supervised-local pre-training stage (Hu et al. 2021): learns from training-split labels only, lowers its
loss, and hands encoder + whole decoder to fine-tuning."""

import json

import pytest

from ContrastSegLib.data.discovery import discover
from ContrastSegLib.data.phantom import write_phantom_dataset
from ContrastSegLib.data.splits import make_split, save_split
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.runtime.checkpoint import load_checkpoint
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig, PretrainConfig
from ContrastSegLib.training.finetune_job import run_finetune
from ContrastSegLib.training.pretrain_job import run_pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = PreprocessConfig(target_spacing=3.0, crop_size=32)
CHANNELS = (8, 16, 32)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("supervised")
    data = write_phantom_dataset(folder / "phantoms", 6, seed=2)
    split = make_split(discover(data), n_labeled=2, n_test=2, seed=0)
    save_split(split, folder / "split.json")
    global_config = PretrainConfig(stage="global", strategy="GR", iterations=5, volumes_per_batch=2, partitions=2,
                                   precision="fp32")
    global_path, _ = run_pretrain([data], folder / "global.pt", global_config, TINY, channels=CHANNELS,
                                  split=folder / "split.json")
    return folder, data, split, global_path


@pytest.fixture(scope="module")
def supervised(workspace):
    folder, data, _, global_path = workspace
    config = PretrainConfig(stage="supervised-local", strategy="stride", stride=2, iterations=30, partitions=2,
                            volumes_per_batch=2, precision="fp32", checkpoint_every=15)
    return run_pretrain([], folder / "supervised.pt", config, init=global_path, split=folder / "split.json",
                        labeled=data)


def test_loss_falls(supervised):
    _, state = supervised
    assert len(state.losses) == 30
    assert sum(state.losses[-10:]) < sum(state.losses[:10])


def test_only_training_labels_are_used(supervised, workspace):
    _, _, split, _ = workspace
    meta = load_checkpoint(supervised[0]).metadata
    assert meta["data"]["cases"] == list(split.groups["train_labeled"])
    assert not set(meta["data"]["cases"]) & set(split.groups["test"] + split.groups["validation"])
    assert meta["labels"]["names"] == ["background", "LV", "myocardium", "RV"]


def test_a_test_volume_cannot_get_in(workspace, tmp_path):
    folder, data, split, global_path = workspace
    edited = json.loads((folder / "split.json").read_text())
    leaked = split.groups["test"][0]
    edited["groups"]["train_labeled"].append(leaked)
    (tmp_path / "leaky.json").write_text(json.dumps(edited))
    config = PretrainConfig(stage="supervised-local", strategy="stride", iterations=2, precision="fp32")
    with pytest.raises(ContrastSegError, match=leaked):
        run_pretrain([], tmp_path / "s.pt", config, init=global_path, split=tmp_path / "leaky.json", labeled=data)
    assert not (tmp_path / "s.pt").exists()


def test_checkpoint_holds_encoder_and_whole_decoder(supervised):
    model = load_checkpoint(supervised[0]).model
    prefixes = {".".join(k.split(".")[:2]) for k in model}
    assert {"decoder.0", "decoder.1"} <= prefixes and "heads.gs" in prefixes
    assert not any(k.startswith(("segmentation_head", "heads.g1")) for k in model)


def test_finetuning_starts_from_it(supervised, workspace, tmp_path):
    folder, data, _, _ = workspace
    out, result = run_finetune(data, tmp_path / "model.pt", FinetuneConfig(iterations=3, batch_size=4),
                               channels=CHANNELS, split=folder / "split.json", init=supervised[0])
    meta = load_checkpoint(out).metadata
    assert [entry["stage"] for entry in meta["lineage"]] == ["pretrain-global", "pretrain-supervised-local"]
    assert len(result.losses) == 3


def test_supervised_stage_needs_labels_and_a_global_checkpoint(workspace, tmp_path):
    folder, data, _, global_path = workspace
    config = PretrainConfig(stage="supervised-local", strategy="stride", iterations=2)
    with pytest.raises(ContrastSegError, match="--labeled"):
        run_pretrain([], tmp_path / "a.pt", config, init=global_path)
    with pytest.raises(ContrastSegError, match="--init"):
        run_pretrain([], tmp_path / "b.pt", config, TINY, labeled=data)
