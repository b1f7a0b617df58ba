"""Masked-image pre-training: the mask and the loss against their definitions, a stage whose reconstruction loss
falls, a checkpoint with encoder + decoder that fine-tuning starts from, a later stage that keeps its decoder, and
the methods and CLI that name it."""

import doctest

import numpy as np
import pytest
import torch

from cli_helpers import assert_refused, run_cli
from ContrastSegLib.benchmark.pipeline import pretraining_steps
from ContrastSegLib.data.phantom import write_phantom_dataset
from ContrastSegLib.losses import masked_image, masked_image_loss, patch_mask
from ContrastSegLib.runtime.checkpoint import load_checkpoint
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig, PretrainConfig
from ContrastSegLib.training.finetune_job import run_finetune
from ContrastSegLib.training.methods import parse_method
from ContrastSegLib.training.pretrain_job import run_pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = PreprocessConfig(target_spacing=3.0, crop_size=32)
CHANNELS = (8, 16, 32)


def test_the_module_example_runs():
    assert doctest.testmod(masked_image).failed == 0


@pytest.mark.parametrize("patch, ratio, hidden", [(8, 0.5, 8), (8, 0.6, 10), (16, 0.01, 1), (16, 0.99, 3)])
def test_the_mask_hides_whole_patches_in_the_asked_share(patch, ratio, hidden):
    mask = patch_mask(torch.Size([5, 1, 32, 32]), patch, ratio, torch.Generator().manual_seed(1))
    assert mask.shape == (5, 1, 32, 32) and set(mask.unique().tolist()) <= {0.0, 1.0}
    blocks = mask.view(5, 32 // patch, patch, 32 // patch, patch)
    assert (blocks.amin((2, 4)) == blocks.amax((2, 4))).all()  # each patch entirely hidden or entirely visible
    assert (blocks.amax((2, 4)).flatten(1).sum(1) == hidden).all()  # at least one hidden, at least one visible
    assert not torch.equal(mask[0], mask[1])  # drawn per slice


def test_the_loss_is_the_mean_squared_error_over_the_hidden_pixels_only():
    generator = torch.Generator().manual_seed(0)
    target, reconstruction = torch.rand(3, 1, 16, 16, generator=generator), torch.rand(3, 1, 16, 16,
                                                                                       generator=generator)
    mask = patch_mask(target.shape, 4, 0.5, generator)
    hidden = mask.bool()
    expected = ((reconstruction[hidden] - target[hidden]) ** 2).mean()
    assert masked_image_loss(reconstruction, target, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    visible_changed = torch.where(hidden, reconstruction, reconstruction + 5)
    assert masked_image_loss(visible_changed, target, mask).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("masked")
    phantoms = write_phantom_dataset(folder / "phantoms", 4, seed=2)
    config = PretrainConfig(stage="masked", iterations=60, volumes_per_batch=2, mask_patch=8, precision="fp32",
                            checkpoint_every=30)
    path, state = run_pretrain([phantoms], folder / "mim.pt", config, TINY, channels=CHANNELS)
    return phantoms, path, state


def test_the_masked_stage_lowers_its_reconstruction_loss(masked):
    _, _, state = masked
    assert len(state.losses) == 60
    assert np.mean(state.losses[-10:]) < 0.7 * np.mean(state.losses[:10])


def test_the_checkpoint_keeps_encoder_and_decoder_and_fine_tuning_starts_from_both(masked, tmp_path):
    phantoms, path, _ = masked
    saved = load_checkpoint(path)
    assert saved.metadata["stage"] == "pretrain-masked"
    assert {k.split(".")[0] for k in saved.model} == {"encoder", "decoder", "heads"}
    out, _ = run_finetune(phantoms, tmp_path / "model.pt", FinetuneConfig(iterations=1, batch_size=2,
                                                                          learning_rate=1e-12),
                          channels=CHANNELS, init=path)
    tuned = load_checkpoint(out).model
    for key in ("encoder.0.0.weight", "decoder.1.convs.0.weight"):
        assert torch.allclose(tuned[key], saved.model[key], atol=1e-6), key  # taken, (almost) not moved


def test_a_local_stage_after_the_masked_one_keeps_its_decoder(masked, tmp_path):
    phantoms, path, _ = masked
    local = PretrainConfig(stage="local", strategy="LR", iterations=3, volumes_per_batch=2, partitions=2,
                           decoder_blocks=1, region_size=2, precision="fp32")
    out, _ = run_pretrain([phantoms], tmp_path / "mim_lr.pt", local, init=path)
    after, before = load_checkpoint(out).model, load_checkpoint(path).model
    assert torch.equal(after["decoder.1.convs.0.weight"], before["decoder.1.convs.0.weight"])  # untrained, kept
    assert not torch.equal(after["decoder.0.convs.0.weight"], before["decoder.0.convs.0.weight"])  # trained


def test_methods_and_chains_name_the_masked_stage():
    assert [s.chain for s in pretraining_steps(parse_method("MIM+LR"))] == ["MIM", "MIM+LR"]
    assert parse_method("MIM").pretraining == (("masked", "patches"),)
    assert [s.chain for s in pretraining_steps(parse_method("MIM+GD+LR"))] == ["MIM", "MIM+GD", "MIM+GD+LR"]


def test_a_patch_that_does_not_tile_the_crop_is_one_error_line(masked, capsys, tmp_path):
    phantoms, _, _ = masked
    code, stdout, err = run_cli(capsys, "pretrain", "--unlabeled", phantoms, "--out", tmp_path / "m.pt",
                                "--stage", "masked", "--mask-patch", "12", "--crop-size", "32", "--spacing", "3",
                                "--channels", "8,16,32")
    assert_refused(code, stdout, err, "--mask-patch 12", "divisor of 32")
    assert not (tmp_path / "m.pt").exists()
