"""The supervised local contrastive loss: a loop written straight from the formula equals mode "dense"; "exact" equals
"dense" for every chunk size (values and gradients, float64) without saving any anchors × pixels matrix for backward;
"stride" and "block" equal "dense" on the strided inputs and on the blocks; skipped anchors, hand-checkable cases,
numerical stability, precision and argument errors."""

from __future__ import annotations

import math

import pytest
import torch

from ContrastSegLib.losses import supervised_local_contrastive_loss as loss_fn
from ContrastSegLib.losses.supervised_local_contrastive import _StreamedLogSumExp

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(n=2, c=5, h=6, w=6, classes=4, seed=0, dtype=torch.float64):
    """Random features and labels in 0..classes-1 with every class present, plus class 9 on exactly one pixel."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n, c, h, w, generator=generator, dtype=dtype)
    labels = torch.randint(0, classes, (n, h, w), generator=generator)
    labels.view(-1)[:classes] = torch.arange(classes)
    labels[-1, -1, -1] = 9
    return features, labels


def _value_and_grad(features, labels, **kwargs):
    leaf = features.detach().clone().requires_grad_(True)
    value = loss_fn(leaf, labels, **kwargs)
    value.backward()
    return value.detach(), leaf.grad


def naive_supervised_local(features, labels, temperature):
    """−(1/|Ω|) Σ_{i∈Ω} (1/|P(i)|) Σ_{p∈P(i)} log( e^{f_i·f_p/τ} / Σ_{a≠i} e^{f_i·f_a/τ} ), pixel by pixel."""
    c = features.shape[1]
    pixels = features.permute(0, 2, 3, 1).reshape(-1, c)
    units = [row / torch.sqrt((row * row).sum()) for row in pixels]
    y = labels.reshape(-1).tolist()
    terms = []
    for i in range(len(units)):
        positives = [j for j in range(len(units)) if j != i and y[j] == y[i]]
        if y[i] == 0 or not positives:
            continue
        denominator = sum(torch.exp(units[i] @ units[a] / temperature) for a in range(len(units)) if a != i)
        terms.append(sum(torch.log(torch.exp(units[i] @ units[p] / temperature) / denominator) for p in positives)
                     / len(positives))
    return -torch.stack(terms).mean() if terms else features.sum() * 0.0


def test_naive_loop_equals_dense():
    features, labels = _inputs(n=2, c=3, h=4, w=4)
    for mode in ("dense", "exact"):
        value, grad = _value_and_grad(features, labels, mode=mode, temperature=0.2)
        expected, expected_grad = _value_and_grad(features, labels, temperature=0.2, mode="dense")
        leaf = features.clone().requires_grad_(True)
        naive = naive_supervised_local(leaf, labels, 0.2)
        naive.backward()
        assert value.item() == pytest.approx(naive.item(), abs=1e-10)
        torch.testing.assert_close(grad, leaf.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 31, 1000, None])
def test_exact_equals_dense(chunk_size):
    features, labels = _inputs(n=3, c=6, h=5, w=7, classes=4, seed=1)
    expected, expected_grad = _value_and_grad(features, labels, mode="dense")
    value, grad = _value_and_grad(features, labels, mode="exact", chunk_size=chunk_size)
    assert value.item() == pytest.approx(expected.item(), abs=1e-5)
    torch.testing.assert_close(grad, expected_grad, atol=1e-5, rtol=0)
    assert grad.abs().max() > 1e-3


def test_streamed_logsumexp_gradient_on_raw_rows():
    """The streaming Function alone, on rows that are not unit vectors: through the loss, the normalisation would hide
    any error along u_i (such as a self term left in the backward weights)."""
    rows = torch.randn(9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).requires_grad_(True)
    anchors = torch.tensor([0, 2, 3, 7, 8])
    for chunk in (1, 2, 5):
        assert torch.autograd.gradcheck(lambda x: _StreamedLogSumExp.apply(x, anchors, 0.7, chunk), (rows,))
    s = rows.detach() @ rows.detach().T / 0.7
    expected = torch.logsumexp(s.masked_fill(torch.eye(9, dtype=torch.bool), float("-inf")), dim=1)[anchors]
    torch.testing.assert_close(_StreamedLogSumExp.apply(rows, anchors, 0.7, 2), expected, atol=1e-12, rtol=0)


def test_exact_saves_no_anchor_by_pixel_matrix():
    """Everything saved for backward together stays far below one chunk per anchor (what a plain chunk loop keeps),
    while "dense" saves at least one M × M matrix."""
    features, labels = _inputs(n=4, c=8, h=16, w=16, seed=2, dtype=torch.float32)
    m = labels.numel()
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes() // tensor.element_size()
        return tensor

    for mode, chunk_size in (("exact", 16), ("dense", None)):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss_fn(features.clone().requires_grad_(True), labels, mode=mode, chunk_size=chunk_size).backward()
        if mode == "exact":
            # Feature-sized tensors (C = 8 values per pixel) only; a plain chunk loop would keep |Ω|·M ≈ 770·M.
            assert sum(saved.values()) < 64 * m
        else:
            assert max(saved.values()) >= m * m


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_stride_equals_dense_on_strided_inputs(stride):
    features, labels = _inputs(n=2, c=4, h=9, w=8, seed=3)
    expected, expected_grad = _value_and_grad(features[..., ::stride, ::stride],
                                              labels[..., ::stride, ::stride], mode="dense")
    value, grad = _value_and_grad(features, labels, mode="stride", stride=stride, chunk_size=5)
    assert value.item() == pytest.approx(expected.item(), abs=1e-10)
    torch.testing.assert_close(grad[..., ::stride, ::stride], expected_grad, atol=1e-10, rtol=0)
    grad[..., ::stride, ::stride] = 0
    assert grad.abs().max() == 0


def test_block_equals_mean_of_dense_over_non_empty_blocks():
    features, labels = _inputs(n=2, c=4, h=10, w=7, seed=4)
    labels[:, 4:8, 0:4] = 0  # an all-background block
    labels[:, 0:4, 4:7] = 0
    labels[0, 0, 4] = 5  # a block whose only foreground pixel is of a class seen once in it
    labels[-1, -1, -1] = 9
    leaf = features.clone().requires_grad_(True)
    block_values, skipped = [], 0
    for top in (0, 4, 8):  # block_size 4: rows 0-3, 4-7, 8-9; columns 0-3, 4-6
        for left in (0, 4):
            block = labels[:, top:top + 4, left:left + 4].reshape(-1)
            if any(y != 0 and (block == y).sum() > 1 for y in block.tolist()):
                block_values.append(loss_fn(leaf[:, :, top:top + 4, left:left + 4],
                                            labels[:, top:top + 4, left:left + 4], mode="dense"))
            else:
                skipped += 1
    assert skipped == 2 and len(block_values) == 4
    expected = torch.stack(block_values).mean()
    expected.backward()
    value, grad = _value_and_grad(features, labels, mode="block", block_size=4, chunk_size=3)
    assert value.item() == pytest.approx(expected.item(), abs=1e-10)
    torch.testing.assert_close(grad, leaf.grad, atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", ["exact", "dense", "stride", "block"])
def test_no_anchor_gives_zero_with_graph(mode):
    features, labels = _inputs(n=2, c=3, h=4, w=4)
    for no_anchor in (torch.zeros_like(labels), torch.arange(labels.numel()).view_as(labels)):  # each class once
        leaf = features.clone().requires_grad_(True)
        value = loss_fn(leaf, no_anchor, mode=mode, stride=2, block_size=3)
        value.backward()
        assert value.item() == 0.0 and value.requires_grad
        assert leaf.grad is not None and leaf.grad.abs().max() == 0


@pytest.mark.parametrize("mode", ["exact", "dense"])
def test_hand_checkable_three_pixels(mode):
    """f = (1, 0), (1, 0), (0, 1), τ = 1: the two class-1 pixels each have s = 1 with their positive, 0 with the third
    pixel, so ℓ = log(1 + e^{-1}); the third pixel is background or a class seen once, never an anchor."""
    features = torch.tensor([[[[1.0, 3.0, 0.0]], [[0.0, 0.0, 2.0]]]], dtype=torch.float64)  # (1, 2, 1, 3)
    expected = math.log(1 + math.exp(-1))
    for third in (0, 2):
        labels = torch.tensor([[[1, 1, third]]])
        assert loss_fn(features, labels, 1.0, mode).item() == pytest.approx(expected, abs=1e-12)
    # Labels 1, 2, 2: pixel 1 skipped, anchors 2 and 3 have s = 0 with each other and s = 1 or 0 with pixel 1.
    labels = torch.tensor([[[1, 2, 2]]])
    expected = (math.log(math.e + 1) + math.log(2)) / 2
    assert loss_fn(features, labels, 1.0, mode).item() == pytest.approx(expected, abs=1e-12)


def test_anchors_of_a_class_seen_once_are_skipped():
    """A pixel whose class occurs once counts exactly like a background pixel: a negative, never in |Ω|."""
    features, labels = _inputs(seed=5)
    assert labels[0, 0, 1] == 1
    singleton = labels.clone()
    singleton[0, 0, 1] = 7  # class 7 occurs once
    as_background = labels.clone()
    as_background[0, 0, 1] = 0
    for mode in ("exact", "dense"):
        assert loss_fn(features, singleton, mode=mode).item() == pytest.approx(
            loss_fn(features, as_background, mode=mode).item(), abs=1e-12)
        assert loss_fn(features, singleton, mode=mode).item() != pytest.approx(
            loss_fn(features, labels, mode=mode).item(), abs=1e-6)


@pytest.mark.parametrize("temperature", [0.05, 0.01])
def test_small_temperature_is_stable(temperature):
    """Nearly parallel features give s ≈ 1/τ = 100 at τ = 0.01, where e^s overflows fp32."""
    features, labels = _inputs(n=2, c=4, h=6, w=6, seed=6)
    features = features * 0.05 + torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=torch.float64).view(1, 4, 1, 1)
    expected, expected_grad = _value_and_grad(features, labels, mode="dense", temperature=temperature)
    for mode in ("exact", "dense"):
        value, grad = _value_and_grad(features.float(), labels, mode=mode, temperature=temperature)
        assert value.dtype == torch.float32 and torch.isfinite(value) and torch.isfinite(grad).all()
        assert value.item() == pytest.approx(expected.item(), rel=1e-4)
        torch.testing.assert_close(grad.double(), expected_grad, atol=1e-3, rtol=1e-3)


def test_precision_fp32_for_half_inputs_and_fp64_kept():
    features, labels = _inputs(seed=7)
    assert loss_fn(features, labels).dtype == torch.float64
    half = loss_fn(features.to(torch.bfloat16), labels)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(loss_fn(features.to(torch.bfloat16).double(), labels).item(), abs=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert loss_fn(features.float(), labels).item() == pytest.approx(loss_fn(features, labels).item(), abs=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "full"}, "mode"),
    ({"stride": 0}, "stride"),
    ({"stride": 1.5}, "stride"),
    ({"block_size": 0}, "block_size"),
    ({"block_size": True}, "block_size"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_bad_arguments(kwargs, message):
    features, labels = _inputs(n=1, c=2, h=3, w=3)
    with pytest.raises(ValueError, match=message):
        loss_fn(features, labels, **kwargs)


def test_bad_tensors():
    features, labels = _inputs(n=2, c=2, h=3, w=3)
    for bad_features in (features[0], features.long(), features[:, :, :0], features.numpy()):
        with pytest.raises(ValueError, match="features"):
            loss_fn(bad_features, labels)
    for bad_labels in (labels.double(), labels > 0, labels[0], labels[:, :2], labels.numpy()):
        with pytest.raises(ValueError, match="labels"):
            loss_fn(features, bad_labels)
