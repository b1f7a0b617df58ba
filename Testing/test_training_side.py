"""No compute on padding: the training side comes from the data, larger slices train in patches (mostly around the
labeled structures) and are predicted whole; the batch's structure share draws a rare structure as often as a
common one."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from cli_helpers import FAST_PREDICT, events, named, run_cli
from ContrastSegLib.io import Volume
from ContrastSegLib.preprocess import PreparedVolume, preprocess_volume, resolve_preprocessing, whole_slice_side
from ContrastSegLib.preprocess.resolve import covering_side, resampled_plane_shape
from ContrastSegLib.runtime.checkpoint import load_checkpoint
from ContrastSegLib.sampling import LabeledSliceBank
from ContrastSegLib.sampling.labeled import FOREGROUND_PATCHES
from ContrastSegLib.settings import MAX_AUTO_CROP, PreprocessConfig

CHANNELS = (8, 16, 32)  # sides are multiples of 4


def volume(shape=(6, 40, 50), spacing=(1.5, 1.5, 4.0), value=None) -> Volume:
    """(K, J, I) array, (i, j, k) spacing, identity direction."""
    array = np.random.default_rng(0).random(shape).astype(np.float32) if value is None else value
    return Volume(array, spacing, (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), "scan.nii.gz")


def test_the_side_covers_the_resampled_slices_of_every_training_volume():
    # 40 x 50 px at 1.5 mm = 60 x 75 mm; at 1.0 mm 60 x 75 px -> 76, the smallest multiple of 4 covering 75
    assert resampled_plane_shape(volume(), 1.0, None) == (60, 75)
    resolved = resolve_preprocessing(PreprocessConfig(target_spacing=1.0), [volume(), volume((4, 30, 30))], CHANNELS)
    assert resolved.crop_size == 76
    assert resolve_preprocessing(PreprocessConfig(), [volume()], CHANNELS).crop_size == 52  # 1.5 mm: 50 px -> 52
    assert resolve_preprocessing(PreprocessConfig(crop_size=32), [volume()], CHANNELS).crop_size == 32  # as asked
    # capped at the papers' crop: larger slices are cut into patches of it
    assert covering_side([(600, 512)], divisor=32) == MAX_AUTO_CROP == 192
    assert covering_side([(600, 512)], divisor=32, largest=4096) == 608


def test_the_slicing_axis_decides_which_extent_counts():
    # sagittal slices (axis 2) of a (6, 40, 50) volume are 6 x 40 px at (4.0, 1.5) mm -> 24 x 60 at 1.0 mm
    assert resampled_plane_shape(volume(), 1.0, 2) == (24, 60)
    assert resolve_preprocessing(PreprocessConfig(target_spacing=1.0, slice_axis=2), [volume()], CHANNELS
                                 ).crop_size == 60


def prepared(labels: np.ndarray, image: np.ndarray | None = None) -> PreparedVolume:
    image = np.random.default_rng(1).random(labels.shape).astype(np.float32) if image is None else image
    return PreparedVolume(image, labels.astype(np.uint8), record=None)


def test_patches_of_larger_slices_centre_mostly_on_the_labeled_structures():
    labels = np.zeros((4, 64, 64), np.uint8)
    labels[:, 40:44, 50:54] = 1  # a small structure far from the centre
    image = np.broadcast_to(np.arange(64 * 64, dtype=np.float32).reshape(64, 64), labels.shape).copy()
    bank = LabeledSliceBank([prepared(labels, image)], torch.device("cpu"), patch=16)
    generator = torch.Generator().manual_seed(0)
    images, patch_labels = bank.sample(3000, generator)
    assert images.shape == (3000, 1, 16, 16) and patch_labels.shape == (3000, 16, 16)
    corner = images[:, 0, 0, 0].long()  # the image holds each pixel's index: the window's top-left pixel
    rows, cols = corner // 64, corner % 64
    assert torch.equal(images[:, 0], (rows[:, None, None] + torch.arange(16)[:, None]) * 64
                       + cols[:, None, None] + torch.arange(16)[None, :])  # a contiguous window, in the slice
    assert rows.max() <= 48 and cols.max() <= 48
    holding = (patch_labels == 1).flatten(1).any(1).float().mean().item()
    random_share = (16 + 3) ** 2 / 49 ** 2  # a uniform window holds some of the 4 x 4 structure this often
    assert holding == pytest.approx(FOREGROUND_PATCHES + (1 - FOREGROUND_PATCHES) * random_share, abs=0.04)


def test_whole_slices_no_larger_than_the_patch_are_drawn_whole():
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[1, 4:8, 4:8] = 2
    bank = LabeledSliceBank([prepared(labels)], torch.device("cpu"), patch=32)
    images, drawn = bank.sample(8, torch.Generator().manual_seed(0))
    assert images.shape == (8, 1, 16, 16) and bank.patch == 16


def test_the_structure_share_draws_a_rare_structure_as_often_as_a_common_one():
    labels = np.zeros((100, 8, 8), np.uint8)
    labels[:90, 2:4, 2:4] = 1  # in 90 slices
    labels[99, 5:7, 5:7] = 2  # in one slice
    bank = LabeledSliceBank([prepared(labels)], torch.device("cpu"), structure_share=0.5, num_classes=3)
    plain = LabeledSliceBank([prepared(labels)], torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    rare = np.mean([(bank.sample(16, generator)[1] == 2).flatten(1).any(1).float().mean().item()
                    for _ in range(300)])
    rare_plain = np.mean([(plain.sample(16, generator)[1] == 2).flatten(1).any(1).float().mean().item()
                          for _ in range(300)])
    # half of each batch from a structure's slices, structure 2 chosen half of those times: 1/4 (+ 1/100 of the rest)
    assert rare == pytest.approx(0.25 + 0.5 * 0.01, abs=0.03) and rare_plain == pytest.approx(0.01, abs=0.01)


def write_pair(folder, name, shape, spacing, box):
    """A scan with a bright structure in ``box`` (k, j, i slices) and its label map."""
    image = np.random.default_rng(2).normal(0, 0.1, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    image[box] += 1.0
    label[box] = 1
    for array, suffix in ((image, ""), (label, "_seg")):
        written = sitk.GetImageFromArray(array)
        written.SetSpacing(spacing)
        sitk.WriteImage(written, str(folder / f"{name}{suffix}.nii.gz"))
    return folder / f"{name}.nii.gz"


def small_scans(tmp_path, count):
    """A folder of ``count`` labeled 24 x 24 px scans at 2 mm, the structure in the middle."""
    data = tmp_path / "data"
    data.mkdir()
    for index in range(count):
        write_pair(data, f"case{index}", (4, 24, 24), (2.0, 2.0, 4.0), np.s_[:, 8:16, 8:16])
    return data


def far_structure_dice(capsys, tmp_path, model) -> float:
    """Dice of ``model``'s prediction of a 64 x 64 px scan whose structure lies far from the centre, outside any
    centred 24-px window."""
    scans = tmp_path / "scans"
    scans.mkdir()
    far = write_pair(scans, "wide", (4, 64, 64), (2.0, 2.0, 4.0), np.s_[:, 48:56, 4:12])
    code, _, err = run_cli(capsys, "predict", "--model", model, "--input", far, "--output",
                           tmp_path / "wide_seg.nii.gz", *FAST_PREDICT)
    assert code == 0, err
    predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "wide_seg.nii.gz")))
    truth = np.zeros_like(predicted)
    truth[:, 48:56, 4:12] = 1
    return float(2 * (predicted * truth).sum() / (predicted.sum() + truth.sum()))


def test_a_model_from_the_cli_trains_at_the_data_side_and_predicts_whole_slices(capsys, tmp_path):
    """Training scans of 24 x 24 px get a 24-px side (not the former 192); a 64 x 64 px scan to predict is covered
    whole: its structure far from the centre, outside any centred 24-px window, is found."""
    data, out = small_scans(tmp_path, 2), tmp_path / "model.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", data, "--out", out, "--channels", "8,16,32",
                                "--iterations", "150", "--batch-size", "4", "--precision", "fp32", "--device", "cpu")
    assert code == 0, err
    metadata = load_checkpoint(out).metadata
    assert metadata["preprocessing"]["crop_size"] == 24 and metadata["whole_slices"] is True
    assert any("training side 24 px" in e["message"] for e in named(events(stdout), "log"))
    assert far_structure_dice(capsys, tmp_path, out) > 0.8


def test_whole_slice_side_is_at_least_the_crop_and_covers_each_scan():
    config = PreprocessConfig(target_spacing=1.5, crop_size=32)
    assert whole_slice_side([volume()], config, CHANNELS) == 52
    assert whole_slice_side([volume((3, 10, 10))], config, CHANNELS) == 32
    wide = preprocess_volume(volume(), config, side=52)
    assert wide.image.shape == (6, 52, 52) and wide.record.crop_size == 52


def test_a_model_fine_tuned_from_pre_trained_weights_predicts_whole_slices_too(capsys, tmp_path):
    """The side pre-training chose from its own volumes is not passed on as a centre window: fine-tuned from that
    checkpoint, the model trains at the side of its labeled volumes and, like one from random weights, finds a
    structure far from the centre of a larger scan (a pre-trained start once trained and predicted only inside
    the pre-training's window, so whatever lay outside it was never learned nor segmented)."""
    data, pretrained, out = small_scans(tmp_path, 3), tmp_path / "GD.pt", tmp_path / "model.pt"
    code, _, err = run_cli(capsys, "pretrain", "--unlabeled", data, "--out", pretrained, "--channels", "8,16,32",
                           "--iterations", "2", "--volumes-per-batch", "2", "--precision", "fp32", "--device", "cpu")
    assert code == 0, err
    assert load_checkpoint(pretrained).metadata["crop_from_data"] is True
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", data, "--init", pretrained, "--out", out,
                                "--iterations", "150", "--batch-size", "4", "--precision", "fp32", "--device", "cpu")
    assert code == 0, err
    metadata = load_checkpoint(out).metadata
    assert metadata["whole_slices"] is True and metadata["preprocessing"]["target_spacing"] == 2.0
    assert far_structure_dice(capsys, tmp_path, out) > 0.8

    asked = tmp_path / "asked.pt"  # a side the user asked for stays a centre window, as it always was
    code, _, err = run_cli(capsys, "pretrain", "--unlabeled", data, "--out", asked, "--channels", "8,16,32",
                           "--crop-size", "16", "--iterations", "2", "--volumes-per-batch", "2", "--precision",
                           "fp32", "--device", "cpu")
    assert code == 0, err
    assert load_checkpoint(asked).metadata["crop_from_data"] is False
    code, _, err = run_cli(capsys, "finetune", "--labeled", data, "--init", asked, "--out", tmp_path / "window.pt",
                           "--iterations", "2", "--batch-size", "4", "--precision", "fp32", "--device", "cpu")
    assert code == 0, err
    window = load_checkpoint(tmp_path / "window.pt").metadata
    assert window["whole_slices"] is False and window["preprocessing"]["crop_size"] == 16
    assert window["architecture"]["channels"] == [8, 16, 32]  # the widths of --init, not the default
