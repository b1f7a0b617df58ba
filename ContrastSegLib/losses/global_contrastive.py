"""Global contrastive loss of pre-training stage 1 (Chaitanya et al. 2020), strategies G^R, G^D- and G^D.

With the embeddings L2-normalised and s_ab = cos(z_a, z_b) / τ, every ordered positive pair (a, b), b ∈ Λ⁺(a), costs

    ℓ(a, b) = −log( e^{s_ab} / (e^{s_ab} + Σ_{n ∈ Λ⁻(a)} e^{s_an}) ) = logsumexp({s_ab} ∪ {s_an : n ∈ Λ⁻(a)}) − s_ab

and the loss is the mean of ℓ over all those pairs (both directions of a pair count, as two ordered pairs):

    strategy   positives Λ⁺(a)                                   negatives Λ⁻(a)
    "GR"       { b ≠ a : image_id[b] == image_id[a] }            { b : image_id[b] != image_id[a] }
    "GD-"      { b ≠ a : image_id[b] == image_id[a] }            { b : partition_id[b] != partition_id[a] }
    "GD"       { b ≠ a : partition_id[b] == partition_id[a] }    { b : partition_id[b] != partition_id[a] }

Under G^D- a same-partition image of another volume is neither positive nor negative; under G^D it is a positive, as
is a second slice of the same volume in the same partition (which the paper's batches, one slice per partition and
volume, never hold). ``volume_ids`` serves the check that the views of one image share volume and partition.
The helpers ``check_temperature``, ``check_ids``, ``masked_logsumexp`` and ``nt_xent`` are shared with the local loss.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from ..settings import GlobalStrategy

GLOBAL_STRATEGIES = GlobalStrategy.values()


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float, or ValueError unless it is a finite real number > 0."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def check_ids(name: str, ids: torch.Tensor, length: int, device: torch.device) -> torch.Tensor:
    """``ids`` moved to ``device``, or ValueError unless it is an integer tensor of shape (length,)."""
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape ({length},), got {type(ids).__name__}")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"{name} must hold integers, got dtype {ids.dtype}")
    if tuple(ids.shape) != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(ids.shape)}")
    return ids.to(device)


def working_dtype(tensor: torch.Tensor) -> torch.dtype:
    """fp32, or fp64 for fp64 inputs: half-precision inputs are promoted before any arithmetic."""
    return torch.promote_types(tensor.dtype, torch.float32)


def masked_logsumexp(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logsumexp of ``scores`` over the last dimension where ``mask`` (broadcastable) is True; −inf for rows without a
    True entry. Their NaN gradients fall on masked entries only, which ``masked_fill`` turns into zeros."""
    return torch.logsumexp(scores.masked_fill(~mask, float("-inf")), dim=-1)


def nt_xent(positive: torch.Tensor, negatives_lse: torch.Tensor) -> torch.Tensor:
    """Elementwise ℓ = −log(e^p / (e^p + e^L)) = logaddexp(p, L) − p for p = s_ab, L = logsumexp of the negatives
    (L = −inf, no negatives, gives 0)."""
    return torch.logaddexp(positive, negatives_lse) - positive


def global_contrastive_loss(z: torch.Tensor, image_ids: torch.Tensor, volume_ids: torch.Tensor,
                            partition_ids: torch.Tensor, strategy: str = GlobalStrategy.GD, temperature: float = 0.1
                            ) -> torch.Tensor:
    """Mean NT-Xent loss over the ordered positive pairs of ``strategy`` (see the module docstring).

    Args:
        z: (N, D) embeddings, any float dtype; L2-normalised here, computed in fp32 (fp64 stays fp64) with autocast
            off.
        image_ids, volume_ids, partition_ids: (N,) integer tensors. Rows with the same image id are views of one
            slice and must share its volume and partition ids.
        strategy: "GR", "GD-" or "GD".
        temperature: τ > 0.

    Returns:
        0-d tensor. Anchors without a positive contribute nothing; without any positive pair the result is a zero
        that is still connected to ``z``.
    """
    if strategy not in GLOBAL_STRATEGIES:
        raise ValueError(f"strategy must be one of {GLOBAL_STRATEGIES}, got {strategy!r}")
    tau = check_temperature(temperature)
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or not z.is_floating_point():
        raise ValueError(f"z must be a floating-point tensor of shape (N, D), got {getattr(z, 'shape', type(z))}")
    n = z.shape[0]
    image, volume, partition = (check_ids(name, ids, n, z.device) for name, ids in (
        ("image_ids", image_ids), ("volume_ids", volume_ids), ("partition_ids", partition_ids)))
    same_image = image[:, None] == image[None, :]
    same_partition = partition[:, None] == partition[None, :]
    if (same_image & ((volume[:, None] != volume[None, :]) | ~same_partition)).any():
        raise ValueError("rows with the same image_id must have the same volume_id and partition_id")
    not_self = ~torch.eye(n, dtype=torch.bool, device=z.device)
    positives = (same_partition if strategy == GlobalStrategy.GD else same_image) & not_self
    negatives = ~same_image if strategy == GlobalStrategy.GR else ~same_partition
    if not positives.any():
        return z.to(working_dtype(z)).sum() * 0.0
    with torch.autocast(device_type=z.device.type, enabled=False):
        unit = F.normalize(z.to(working_dtype(z)), dim=1)
        s = unit @ unit.T / tau  # (N, N): s[a, b] = cos(z_a, z_b) / τ
        loss = nt_xent(s, masked_logsumexp(s, negatives).unsqueeze(1))  # (N, N): ℓ(a, b)
        return loss[positives].mean()
