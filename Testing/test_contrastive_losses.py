"""The global and local contrastive losses equal loops written straight from their definitions, in value and gradient;
hand-checkable cases, numerical stability, precision and argument errors.

The loop versions ``naive_global_contrastive`` and ``naive_local_contrastive`` are also the baselines of
``benchmarks/bench_contrastive_losses.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from ContrastSegLib.losses import global_contrastive_loss, local_contrastive_loss


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / torch.sqrt((vector * vector).sum())


def _ell(s_positive: torch.Tensor, s_negatives: list[torch.Tensor]) -> torch.Tensor:
    """−log( e^{s_ab} / (e^{s_ab} + Σ_n e^{s_an}) ), term by term."""
    numerator = torch.exp(s_positive)
    denominator = numerator
    for s_negative in s_negatives:
        denominator = denominator + torch.exp(s_negative)
    return -torch.log(numerator / denominator)


def _mean_or_zero(terms: list[torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    return torch.stack(terms).mean() if terms else sum(t.sum() for t in inputs) * 0.0


def naive_global_contrastive(z, image_ids, volume_ids, partition_ids, strategy, temperature, max_pairs=None):
    """Loops over anchors a, positives b and negatives n; stops after ``max_pairs`` ordered pairs if given."""
    image, partition = image_ids.tolist(), partition_ids.tolist()
    units = [_unit(row) for row in z]

    def positive(a, b):
        if b == a:
            return False
        return partition[b] == partition[a] if strategy == "GD" else image[b] == image[a]

    def negative(a, n):
        return image[n] != image[a] if strategy == "GR" else partition[n] != partition[a]

    def s(a, b):
        return (units[a] * units[b]).sum() / temperature

    terms = []
    for a in range(len(units)):
        for b in range(len(units)):
            if positive(a, b):
                terms.append(_ell(s(a, b), [s(a, n) for n in range(len(units)) if negative(a, n)]))
                if max_pairs is not None and len(terms) == max_pairs:
                    return torch.stack(terms).mean()
    return _mean_or_zero(terms, z)


def naive_local_contrastive(f1, f2, region_size, temperature, strategy, volume_ids=None, partition_ids=None,
                            max_pairs=None):
    """Loops over views, images, regions, positives and negatives; stops after ``max_pairs`` (anchor, positive)
    pairs if given."""
    batch, _, height, width = f1.shape
    k = region_size
    corners = [(i * k, j * k) for i in range(height // k) for j in range(width // k)]
    x = {(view, image, region): _unit(f[image, :, top:top + k, left:left + k].reshape(-1))
         for view, f in enumerate((f1, f2)) for image in range(batch) for region, (top, left) in enumerate(corners)}

    def s(p, q):
        return (x[p] * x[q]).sum() / temperature

    terms = []
    for view in (0, 1):
        for image in range(batch):
            for region in range(len(corners)):
                anchor = (view, image, region)
                negatives = [s(anchor, (w, image, u)) for w in (0, 1) for u in range(len(corners)) if u != region]
                positives = [(1 - view, image, region)]
                if strategy == "LD":
                    positives += [(w, other, region) for other in range(batch) for w in (0, 1)
                                  if volume_ids[other] != volume_ids[image]
                                  and partition_ids[other] == partition_ids[image]]
                for positive in positives:
                    terms.append(_ell(s(anchor, positive), negatives))
                    if max_pairs is not None and len(terms) == max_pairs:
                        return torch.stack(terms).mean()
    return _mean_or_zero(terms, f1, f2)


def ids(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


def global_case(name: str, seed: int = 0, dim: int = 5):
    """(z, image, volume, partition) of 12 rows in shuffled order.

    "balanced": 4 slices × 3 views, slices from 2 volumes × 2 partitions.
    "uneven": 5 slices with 3, 2, 4, 1 and 2 views; partition 1 holds two slices of one volume (one with a single
    view), partition 2 one slice of a third volume.
    """
    slices = {"balanced": [(7, 0, 0, 3), (3, 0, 1, 3), (11, 1, 0, 3), (5, 1, 1, 3)],
              "uneven": [(7, 0, 0, 3), (3, 1, 0, 2), (11, 0, 1, 4), (5, 0, 1, 1), (2, 2, 2, 2)]}[name]
    rows = [(image, volume, partition) for image, volume, partition, views in slices for _ in range(views)]
    generator = torch.Generator().manual_seed(seed)
    rows = [rows[i] for i in torch.randperm(len(rows), generator=generator)]
    z = torch.randn(len(rows), dim, generator=generator, dtype=torch.float64)
    return (z,) + tuple(ids([row[i] for row in rows]) for i in range(3))


def local_case(seed: int = 0, shape=(4, 3, 7, 7)):
    generator = torch.Generator().manual_seed(seed)
    f1 = torch.randn(*shape, generator=generator, dtype=torch.float64)
    return f1, f1 + 0.7 * torch.randn(*shape, generator=generator, dtype=torch.float64)


def value_and_grads(loss_fn, *inputs):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    value = loss_fn(*leaves)
    grads = torch.autograd.grad(value, leaves)
    return value.detach(), grads


@pytest.mark.parametrize("case", ["balanced", "uneven"])
@pytest.mark.parametrize("strategy", ["GR", "GD-", "GD"])
def test_global_loss_equals_loops(case, strategy):
    z, image, volume, partition = global_case(case)
    value, (grad,) = value_and_grads(lambda t: global_contrastive_loss(t, image, volume, partition, strategy, 0.1), z)
    naive_value, (naive_grad,) = value_and_grads(
        lambda t: naive_global_contrastive(t, image, volume, partition, strategy, 0.1), z)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, naive_value, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad, naive_grad, atol=1e-5, rtol=0)
    assert grad.abs().max() > 1e-3


@pytest.mark.parametrize("shape, region_size", [((4, 3, 7, 7), 3), ((4, 2, 5, 8), 2), ((3, 2, 4, 4), 1)])
@pytest.mark.parametrize("strategy, volumes, partitions",
                         [("LR", None, None), ("LD", [0, 0, 1, 1], [0, 1, 0, 1]), ("LD", [0, 1, 2, 0], [0, 0, 0, 1]),
                          ("LD", [0, 0, 1, 1], [0, 0, 0, 1])])
def test_local_loss_equals_loops(shape, region_size, strategy, volumes, partitions):
    volume = None if volumes is None else ids(volumes[:shape[0]])
    partition = None if partitions is None else ids(partitions[:shape[0]])
    f1, f2 = local_case(shape=shape)

    def vectorised(a, b):
        return local_contrastive_loss(a, b, region_size, 0.1, strategy, volume, partition)

    def loops(a, b):
        return naive_local_contrastive(a, b, region_size, 0.1, strategy, volume, partition)

    value, grads = value_and_grads(vectorised, f1, f2)
    naive_value, naive_grads = value_and_grads(loops, f1, f2)
    torch.testing.assert_close(value, naive_value, atol=1e-5, rtol=0)
    for grad, naive_grad in zip(grads, naive_grads):
        torch.testing.assert_close(grad, naive_grad, atol=1e-5, rtol=0)


def test_identical_views_give_closed_form():
    tau = 0.1
    # Image 0 has two identical views (one scaled), image 1 one view at cosine 0.6 from them.
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    loss = global_contrastive_loss(z, ids([0, 0, 1]), ids([0, 0, 1]), ids([0, 0, 1]), "GR", tau)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0.6 / tau)))
    assert loss.item() == pytest.approx(expected, abs=1e-9)

    # One image, 1×1 regions of one channel: region 0 is +1, region 1 is −1 in both views; every anchor has its
    # positive at cosine 1 and two negatives at cosine −1.
    tau = 0.5
    f = torch.tensor([[[[3.0, -2.0]]]], dtype=torch.float64)
    loss = local_contrastive_loss(f, f.clone(), region_size=1, temperature=tau)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2 * math.exp(-1 / tau)))
    assert loss.item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("tau", [0.05, 0.005])
def test_low_temperature_is_finite_and_accurate(tau):
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(1, 16, generator=generator)
    z = base + 1e-3 * torch.randn(12, 16, generator=generator)
    _, image, volume, partition = global_case("balanced")
    value, (grad,) = value_and_grads(lambda t: global_contrastive_loss(t, image, volume, partition, "GD", tau), z)
    reference = naive_global_contrastive(z.double(), image, volume, partition, "GD", tau)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert value.item() == pytest.approx(reference.item(), rel=1e-3, abs=1e-4)

    f1 = torch.randn(2, 4, 1, 1, generator=generator) + 1e-3 * torch.randn(2, 4, 6, 6, generator=generator)
    f2 = f1 + 1e-4 * torch.randn(f1.shape, generator=generator)
    value, grads = value_and_grads(lambda a, b: local_contrastive_loss(a, b, 3, tau), f1, f2)
    reference = naive_local_contrastive(f1.double(), f2.double(), 3, tau, "LR")
    assert torch.isfinite(value) and all(torch.isfinite(g).all() for g in grads)
    assert value.item() == pytest.approx(reference.item(), rel=1e-3, abs=1e-4)


def test_bf16_autocast_stays_close_to_fp32():
    generator = torch.Generator().manual_seed(2)
    projection, conv = torch.nn.Linear(32, 16), torch.nn.Conv2d(8, 8, 1)
    inputs = torch.randn(12, 32, generator=generator)
    features = torch.randn(4, 8, 9, 9, generator=generator), torch.randn(4, 8, 9, 9, generator=generator)
    _, image, volume, partition = global_case("balanced")

    def losses(z, a, b):
        return global_contrastive_loss(z, image, volume, partition, "GD"), local_contrastive_loss(a, b, 3)

    def network_outputs():
        return projection(inputs), conv(features[0]), conv(features[1])

    fp32_outputs = network_outputs()
    fp32 = losses(*fp32_outputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_outputs = network_outputs()
        mixed = losses(*bf16_outputs)
        same_inputs = losses(*fp32_outputs)
    assert all(t.dtype == torch.bfloat16 for t in bf16_outputs)
    for reference, low, same in zip(fp32, mixed, same_inputs):
        assert low.dtype == torch.float32 and torch.isfinite(low)
        assert low.item() == pytest.approx(reference.item(), rel=2e-2)
        # fp32 inputs under autocast: nothing may be computed in bf16.
        assert same.item() == pytest.approx(reference.item(), abs=1e-6)
        low.backward()
    assert torch.isfinite(projection.weight.grad).all() and torch.isfinite(conv.weight.grad).all()


def test_strategies_differ_and_scale_does_not_matter():
    z, image, volume, partition = global_case("balanced")
    values = {s: global_contrastive_loss(z, image, volume, partition, s).item() for s in ("GR", "GD-", "GD")}
    assert abs(values["GD-"] - values["GD"]) > 1e-3 and abs(values["GR"] - values["GD-"]) > 1e-3
    for strategy, value in values.items():
        assert global_contrastive_loss(7.5 * z, image, volume, partition, strategy).item() == pytest.approx(value)

    f1, f2 = local_case()
    volumes, partitions = ids([0, 0, 1, 1]), ids([0, 1, 0, 1])
    lr = local_contrastive_loss(f1, f2, 3, 0.1, "LR", volumes, partitions).item()
    ld = local_contrastive_loss(f1, f2, 3, 0.1, "LD", volumes, partitions).item()
    assert abs(lr - ld) > 1e-3
    assert local_contrastive_loss(0.2 * f1, 0.2 * f2, 3, 0.1, "LD", volumes, partitions).item() == pytest.approx(ld)
    # Ids are ignored by L^R.
    assert local_contrastive_loss(f1, f2, 3, 0.1, "LR").item() == pytest.approx(lr)


def test_degenerate_batches_keep_a_graph():
    z = torch.randn(3, 4, requires_grad=True)
    distinct, same = ids([0, 1, 2]), ids([0, 0, 0])
    loss = global_contrastive_loss(z, distinct, distinct, distinct, "GR")  # no positive pair at all
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))
    z.grad = None
    loss = global_contrastive_loss(z, same, same, same, "GR")  # positives but no negatives: ℓ = 0
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(z.grad).all()

    f = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = local_contrastive_loss(f, f * 2, region_size=4)  # one region per map: no negatives
    loss.backward()
    assert loss.item() == pytest.approx(0.0) and torch.isfinite(f.grad).all()


def test_bad_arguments_raise_value_error():
    z, image, volume, partition = global_case("balanced")
    with pytest.raises(ValueError, match="strategy"):
        global_contrastive_loss(z, image, volume, partition, "LR")
    with pytest.raises(ValueError, match="strategy"):
        global_contrastive_loss(z, image, volume, partition, "gd")
    with pytest.raises(ValueError, match="partition_ids must have shape"):
        global_contrastive_loss(z, image, volume, partition[:-1])
    with pytest.raises(ValueError, match="image_ids must have shape"):
        global_contrastive_loss(z, image[:, None], volume, partition)
    with pytest.raises(ValueError, match="integers"):
        global_contrastive_loss(z, image.float(), volume, partition)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        global_contrastive_loss(z[0], image, volume, partition)
    with pytest.raises(ValueError, match="same image_id"):
        global_contrastive_loss(z, image, volume, torch.arange(len(image)))
    for tau in (0, -0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(ValueError, match="temperature"):
            global_contrastive_loss(z, image, volume, partition, "GD", tau)

    f1, f2 = local_case()
    with pytest.raises(ValueError, match="strategy"):
        local_contrastive_loss(f1, f2, strategy="GD")
    with pytest.raises(ValueError, match="same shape"):
        local_contrastive_loss(f1, f2[:, :, :6])
    with pytest.raises(ValueError, match="B, C, H, W"):
        local_contrastive_loss(f1[0], f2[0])
    with pytest.raises(ValueError, match="needs volume_ids and partition_ids"):
        local_contrastive_loss(f1, f2, strategy="LD")
    with pytest.raises(ValueError, match="needs volume_ids and partition_ids"):
        local_contrastive_loss(f1, f2, strategy="LD", volume_ids=ids([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="volume_ids must have shape"):
        local_contrastive_loss(f1, f2, strategy="LD", volume_ids=ids([0, 1]), partition_ids=ids([0, 1, 0, 1]))
    for size in (0, 8, 2.0, True):
        with pytest.raises(ValueError, match="region_size"):
            local_contrastive_loss(f1, f2, region_size=size)
    with pytest.raises(ValueError, match="temperature"):
        local_contrastive_loss(f1, f2, temperature=0.0)
