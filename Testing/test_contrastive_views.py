"""Contrastive views: crop-resize magnifies per image, intensity views keep the geometry, all seeded."""

import torch

from ContrastSegLib.augment import CropResize, GlobalViews, IntensityAugmentation, IntensityViews

SIDE = 32


def ramp_images(batch: int) -> torch.Tensor:
    """(B, 1, SIDE, SIDE): value = 0.01·column + 0.001·row, linear in both pixel coordinates."""
    rows = torch.arange(SIDE, dtype=torch.float32)[:, None]
    columns = torch.arange(SIDE, dtype=torch.float32)[None, :]
    return (0.01 * columns + 0.001 * rows).expand(batch, 1, SIDE, SIDE).clone()


def checkerboard(batch: int, block: int = 2) -> torch.Tensor:
    """(B, 1, SIDE, SIDE) of 0/1 squares of ``block`` pixels."""
    index = torch.arange(SIDE) // block
    return ((index[:, None] + index[None, :]) % 2).float().expand(batch, 1, SIDE, SIDE).clone()


def sign_changes_per_row(images: torch.Tensor) -> torch.Tensor:
    """(B,) mean count of crossings of 0.5 along the rows."""
    above = images[:, 0] > 0.5
    return (above[:, :, 1:] != above[:, :, :-1]).float().sum(-1).mean(-1)


def test_full_scale_crop_is_identity():
    images = torch.rand(4, 2, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    out = CropResize(scale=(1.0, 1.0))(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape
    assert torch.allclose(out, images, atol=1e-5)


def test_half_crop_magnifies_twice():
    images = ramp_images(6)
    out = CropResize(scale=(0.5, 0.5))(images, torch.Generator().manual_seed(2))
    inner = out[:, 0, 1:-1, 1:-1]  # away from the border clamp
    assert torch.allclose(inner[:, :, 1:] - inner[:, :, :-1], torch.full_like(inner[:, :, 1:], 0.005), atol=1e-5)
    assert torch.allclose(inner[:, 1:] - inner[:, :-1], torch.full_like(inner[:, 1:], 0.0005), atol=1e-5)
    assert out.min() >= images.min() - 1e-6 and out.max() <= images.max() + 1e-6
    in_range = images.amax((1, 2, 3)) - images.amin((1, 2, 3))
    out_range = out.amax((1, 2, 3)) - out.amin((1, 2, 3))
    assert (out_range < 0.55 * in_range).all()

    board = checkerboard(6)
    magnified = CropResize(scale=(0.5, 0.5))(board, torch.Generator().manual_seed(3))
    before, after = sign_changes_per_row(board), sign_changes_per_row(magnified)
    assert (after <= before / 2 + 1).all() and (after >= before / 2 - 1).all()  # the period doubles


def test_crops_differ_per_image_and_are_seeded():
    images = ramp_images(8)
    crop = CropResize(scale=(0.6, 0.9))
    first = crop(images, torch.Generator().manual_seed(4))
    again = crop(images, torch.Generator().manual_seed(4))
    other = crop(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    differences = (first[1:] - first[:1]).abs().amax((1, 2, 3))
    assert (differences > 1e-3).all()  # the same input, cropped differently in every slot
    assert not torch.allclose(first, images)


def test_intensity_views_keep_geometry_and_rank_order():
    generator = torch.Generator().manual_seed(6)
    values = torch.linspace(0.05, 1.0, SIDE * SIDE)
    images = torch.stack([values[torch.randperm(SIDE * SIDE, generator=generator)] for _ in range(5)])
    images = images.view(5, 1, SIDE, SIDE)
    first, second = IntensityViews()(images, torch.Generator().manual_seed(7))
    assert first.shape == second.shape == images.shape
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, images)
    for view in (first, second):
        assert torch.equal(view.flatten(1).argsort(1), images.flatten(1).argsort(1))  # monotone per image

    spot = torch.zeros(3, 1, SIDE, SIDE)
    spot[0, 0, 5, 9], spot[1, 0, 20, 3], spot[2, 0, 31, 31] = 1.0, 0.8, 0.6
    for view in IntensityViews()(spot, torch.Generator().manual_seed(8)):
        assert torch.equal(view.flatten(1).argmax(1), spot.flatten(1).argmax(1))


def test_intensity_views_gamma_and_noise():
    images = torch.full((4, 1, 8, 8), 0.25)
    squaring = IntensityViews(gamma=(2.0, 2.0), intensity=IntensityAugmentation(brightness=0.0, contrast=(1.0, 1.0)))
    first, _ = squaring(images, torch.Generator().manual_seed(9))
    assert torch.allclose(first, torch.full_like(images, 0.0625))  # 0.25 ** 2
    negative = IntensityViews()(torch.full((2, 1, 4, 4), -0.5), torch.Generator().manual_seed(9))[0]
    assert torch.isfinite(negative).all()  # clamped before the power
    noisy_a, noisy_b = IntensityViews(noise_std=0.05)(images, torch.Generator().manual_seed(10))
    assert noisy_a.flatten(1).std(1).min() > 0.01  # noise varies within an image
    seeded = IntensityViews(noise_std=0.05)(images, torch.Generator().manual_seed(10))
    assert torch.equal(noisy_a, seeded[0]) and torch.equal(noisy_b, seeded[1])


def test_global_views_differ_with_same_shape_and_are_seeded():
    images = ramp_images(4) * 20
    first, second = GlobalViews()(images, torch.Generator().manual_seed(11))
    assert first.shape == second.shape == images.shape
    assert not torch.allclose(first, second)
    again = GlobalViews()(images, torch.Generator().manual_seed(11))
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])
