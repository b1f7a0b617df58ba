"""Prediction lands on the input's own grid: shape, spacing, origin, direction; probabilities and uncertainty."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ContrastSegLib.data.phantom import make_phantom
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.inference.predictor import Predictor
from ContrastSegLib.io import Volume
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.runtime.checkpoint import Checkpoint
from ContrastSegLib.runtime.precision import plan_execution
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig


def oblique_direction() -> tuple[float, ...]:
    a, b = 0.4, -0.25
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return tuple((rz @ rx).ravel())


def predictor(preprocess: PreprocessConfig, values=(0, 1, 2, 5), config: dict | None = None) -> Predictor:
    torch.manual_seed(0)
    model = UNet2D(UNetConfig(num_classes=len(values), channels=(4, 8, 16)))
    metadata = {"stage": "finetune", "architecture": model.config.to_json(), "preprocessing": preprocess.to_json(),
                "labels": {"values": list(values), "names": [f"s{v}" for v in values],
                           "colors": [[v, v, v] for v in values]}}
    if config is not None:
        metadata["config"] = config
    return Predictor(Checkpoint(model.state_dict(), metadata), plan=plan_execution("cpu", "fp32"))


@pytest.mark.parametrize("preprocess", [
    PreprocessConfig(target_spacing=1.3, crop_size=48),
    PreprocessConfig(target_spacing=None, crop_size=32, slice_axis=2),
])
def test_prediction_keeps_exact_geometry(preprocess):
    image, _ = make_phantom(3)
    image = Volume(image.array[:, 5:70, 3:61], (0.9, 1.7, 6.5), (-12.5, 40.25, 7.0), oblique_direction(), "scan")
    prediction = predictor(preprocess).predict(image, probabilities=True, uncertainty=True)
    label = prediction.label
    assert label.array.shape == image.array.shape
    assert label.spacing == image.spacing and label.origin == image.origin and label.direction == image.direction
    assert label.array.dtype == np.uint8
    assert set(np.unique(label.array)) <= {0, 1, 2, 5}
    assert prediction.probabilities.shape == (4,) + image.array.shape
    np.testing.assert_allclose(prediction.probabilities.sum(0), 1.0, atol=1e-4)
    assert np.array_equal(np.asarray([0, 1, 2, 5])[prediction.probabilities.argmax(0)], label.array)
    uncertainty = prediction.uncertainty.array
    assert uncertainty.shape == image.array.shape and 0.0 <= uncertainty.min() and uncertainty.max() <= 1.0 + 1e-6
    assert uncertainty.max() > 0.0
    probability_image = prediction.probability_image()
    assert probability_image.GetNumberOfComponentsPerPixel() == 4
    assert probability_image.GetSize() == image.to_sitk().GetSize()
    assert probability_image.GetDirection() == pytest.approx(image.direction)


@pytest.mark.parametrize("config, copies", [
    (FinetuneConfig().to_json(), 1),  # trained without flips: never asked to segment a flipped slice
    (FinetuneConfig(flips="horizontal").to_json(), 2),
    (FinetuneConfig(flips="both").to_json(), 4),
    ({"iterations": 10}, 4),  # a checkpoint from before the setting: trained with both flips
])
def test_uncertainty_averages_only_the_flips_the_model_was_trained_with(config, copies, monkeypatch):
    model = predictor(PreprocessConfig(target_spacing=2.0, crop_size=32), config=config)
    seen = []
    forward = model.model.forward
    monkeypatch.setattr(model.model, "forward", lambda x: seen.append(x.shape[0]) or forward(x))
    image, _ = make_phantom(0)
    model.predict(image)
    single = len(seen)
    model.predict(image, uncertainty=True)
    assert len(seen) - single == copies * single


def test_outside_the_crop_is_background():
    image, _ = make_phantom(0)
    prediction = predictor(PreprocessConfig(target_spacing=None, crop_size=16)).predict(image, probabilities=True)
    rows, cols = image.array.shape[1:]
    top = (rows - 16) // 2
    assert (prediction.label.array[:, : top - 1] == 0).all()
    assert (prediction.probabilities[0, :, : top - 1] == 1.0).all()
    left = (cols - 16) // 2
    assert prediction.probabilities[0, :, top + 1: top + 15, left + 1: left + 15].max() < 1.0  # the network's part


def test_pretraining_checkpoint_cannot_predict():
    model = UNet2D(UNetConfig(num_classes=2, channels=(4, 8)))
    with pytest.raises(ContrastSegError, match="fine-tune it first"):
        Predictor(Checkpoint(model.state_dict(), {"stage": "pretrain-global"}), source="global.pt")


def test_probability_image_writes_as_vector_nifti(tmp_path):
    image, _ = make_phantom(1)
    prediction = predictor(PreprocessConfig(target_spacing=2.0, crop_size=32)).predict(image, probabilities=True)
    path = tmp_path / "p.nii.gz"
    sitk.WriteImage(prediction.probability_image(), str(path))
    back = sitk.ReadImage(str(path))
    assert back.GetNumberOfComponentsPerPixel() == 4
    np.testing.assert_allclose(np.moveaxis(sitk.GetArrayFromImage(back), -1, 0), prediction.probabilities)
