"""Local contrastive loss of pre-training stage 2 (Chaitanya et al. 2020), strategies L^R and L^D.

f1, f2 (B, C, H, W) are two intensity-only views of the same B images, so location u means the same anatomy in both.
Each map is cut into R = ⌊H/K⌋·⌊W/K⌋ non-overlapping K×K windows (the last H mod K rows and W mod K columns are
dropped); x(v, b, u) is window u of view v ∈ {1, 2} of image b flattened to C·K·K values and L2-normalised, and
s(p, q) = x_p · x_q / τ. For an anchor a = (v, b, u), with v' the other view:

    Λ⁻(a)           = { (w, b, u') : w ∈ {1, 2}, u' ≠ u }        (every other region of both views of image b)
    Λ⁺(a), "LR"     = { (v', b, u) }
    Λ⁺(a), "LD"     = { (v', b, u) } ∪ { (w, c, u) : w ∈ {1, 2}, volume_id[c] ≠ volume_id[b],
                                                     partition_id[c] == partition_id[b] }
    ℓ(a, p)         = −log( e^{s(a,p)} / (e^{s(a,p)} + Σ_{n ∈ Λ⁻(a)} e^{s(a,n)}) )

The loss is the mean of ℓ(a, p) over every (anchor, positive) pair, anchors taken in both views, all images and all
regions: for L^R the mean over 2·B·R anchors with one positive each; for L^D an anchor with more positives counts
more. Same-partition images of the same volume are neither positives nor negatives, as under G^D-.

Cost: the within-image similarities are a (B, 2R, 2R) tensor and the same-region similarities across the batch an
(R, 2B, 2B) one (for 48×48 maps and K = 3: R = 256).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..settings import LocalStrategy
from .global_contrastive import check_ids, check_temperature, masked_logsumexp, nt_xent, working_dtype

LOCAL_STRATEGIES = LocalStrategy.values()


def local_contrastive_loss(f1: torch.Tensor, f2: torch.Tensor, region_size: int = 3, temperature: float = 0.1,
                           strategy: str = LocalStrategy.LR, volume_ids: torch.Tensor | None = None,
                           partition_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Mean NT-Xent loss over the (anchor, positive) region pairs of ``strategy`` (see the module docstring).

    Args:
        f1, f2: (B, C, H, W) feature maps of two intensity-only views; row b of both is the same image. Any float
            dtype; computed in fp32 (fp64 stays fp64) with autocast off.
        region_size: K, the side of the square regions, 1 ≤ K ≤ min(H, W).
        temperature: τ > 0.
        strategy: "LR" or "LD".
        volume_ids, partition_ids: (B,) integer tensors; required by "LD", checked but unused by "LR".

    Returns:
        0-d tensor.
    """
    if strategy not in LOCAL_STRATEGIES:
        raise ValueError(f"strategy must be one of {LOCAL_STRATEGIES}, got {strategy!r}")
    tau = check_temperature(temperature)
    for name, f in (("f1", f1), ("f2", f2)):
        if not isinstance(f, torch.Tensor) or f.ndim != 4 or not f.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor of shape (B, C, H, W), "
                             f"got {getattr(f, 'shape', type(f))}")
    if f1.shape != f2.shape:
        raise ValueError(f"f1 and f2 must have the same shape, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    b, c, h, w = f1.shape
    if f1.numel() == 0:
        raise ValueError(f"f1 and f2 must not be empty, got shape {tuple(f1.shape)}")
    if isinstance(region_size, bool) or not isinstance(region_size, int) or not 1 <= region_size <= min(h, w):
        raise ValueError(f"region_size must be an integer in [1, min(H, W) = {min(h, w)}], got {region_size!r}")
    if strategy == LocalStrategy.LD and (volume_ids is None or partition_ids is None):
        raise ValueError("strategy 'LD' needs volume_ids and partition_ids")
    volume, partition = (None if ids is None else check_ids(name, ids, b, f1.device)
                         for name, ids in (("volume_ids", volume_ids), ("partition_ids", partition_ids)))
    k = region_size
    with torch.autocast(device_type=f1.device.type, enabled=False):
        dtype = torch.promote_types(working_dtype(f1), working_dtype(f2))
        views = torch.stack((f1.to(dtype), f2.to(dtype)), dim=1)  # (B, 2, C, H, W)
        windows = views.unfold(3, k, k).unfold(4, k, k)  # (B, 2, C, ⌊H/K⌋, ⌊W/K⌋, K, K): the remainder is dropped
        x = F.normalize(windows.permute(0, 1, 3, 4, 2, 5, 6).reshape(b, 2, -1, c * k * k), dim=-1)  # (B, 2, R, CKK)
        r = x.shape[2]

        # Negatives: per image, rows/columns indexed view * R + region; other regions of both views.
        per_image = x.reshape(b, 2 * r, -1)
        region = torch.arange(r, device=f1.device).repeat(2)
        negatives_lse = masked_logsumexp(per_image @ per_image.transpose(1, 2) / tau,
                                         region[:, None] != region[None, :])  # (B, 2R)
        negatives_lse = negatives_lse.view(b, 2, r).permute(2, 1, 0).reshape(r, 2 * b, 1)  # (R, 2B: view * B + image)

        # Positives: the same region u across views and images, pairs indexed view * B + image.
        per_region = x.permute(2, 1, 0, 3).reshape(r, 2 * b, -1)
        s = per_region @ per_region.transpose(1, 2) / tau  # (R, 2B, 2B)
        image = torch.arange(b, device=f1.device).repeat(2)
        view = torch.arange(2, device=f1.device).repeat_interleave(b)
        positives = (image[:, None] == image[None, :]) & (view[:, None] != view[None, :])
        if strategy == LocalStrategy.LD:
            volume, partition = volume[image], partition[image]
            positives |= (volume[:, None] != volume[None, :]) & (partition[:, None] == partition[None, :])
        return nt_xent(s, negatives_lse)[:, positives].mean()
