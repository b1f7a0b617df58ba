"""Supervised local (per-pixel) contrastive loss of Hu et al. 2021, with the paper's two cheap approximations and an
exact full-resolution evaluation that never holds the pixel × pixel similarity matrix.

Features f (N, C, H, W) hold the per-pixel features of all views stacked; u_i is pixel i's feature vector
L2-normalised along C and s_ij = u_i · u_j / τ. Over a set of M pixels with labels y (0 = background):

    P(i) = { j ≠ i : y_j == y_i },   A(i) = { j ≠ i },   Z_i = log Σ_{a∈A(i)} e^{s_ia}
    Ω    = { i : y_i ≠ 0 and P(i) ≠ ∅ }            (background pixels are negatives only; a class seen once is skipped)
    L    = −(1/|Ω|) Σ_{i∈Ω} (1/|P(i)|) Σ_{p∈P(i)} log( e^{s_ip} / e^{Z_i} )
         = (1/|Ω|) Σ_{i∈Ω} ( Z_i − mean_{p∈P(i)} s_ip )

and L = 0 (still connected to ``features``) when Ω = ∅. Modes, i.e. which pixel sets the formula is applied to:

    "dense"   all M = N·H·W pixels, through the M × M matrix of s_ij (reference; small inputs only).
    "exact"   all M pixels, the same value as "dense": Z_i is streamed over chunks of anchors (c × M similarities at a
              time, c·M ≤ 2^24 elements unless ``chunk_size`` is given) inside a custom autograd Function that keeps
              only the unit vectors and Z for backward and recomputes each chunk there, so the peak extra memory is
              O(c·M + M·C). The positive term needs no matrix: Σ_{p∈P(i)} s_ip = u_i · (Σ_{j: y_j = y_i} u_j − u_i) / τ.
    "stride"  the pixels f[..., ::stride, ::stride] (labels likewise): the formula over N·⌈H/stride⌉·⌈W/stride⌉ pixels.
    "block"   rows and columns are cut into runs of ``block_size`` starting at 0; when block_size does not divide H
              (or W) the last run is the shorter remainder, kept as a smaller block (e.g. H = 20, block_size = 16:
              rows 0–15 and 16–19). Each block b holds its pixels in all N images; L_b is the formula over them, blocks
              with Ω_b = ∅ are skipped and L is the unweighted mean of L_b over the remaining blocks (0 if none).

"stride" and "block" evaluate the formula on their pixel sets with the same streaming code as "exact" (equal value
to the dense matrix, less memory). Everything runs in fp32 with autocast off; fp64 inputs stay fp64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..settings import SupervisedLocalMode
from .global_contrastive import check_temperature, masked_logsumexp, working_dtype

SUPERVISED_LOCAL_MODES = SupervisedLocalMode.values()
CHUNK_BUDGET = 2 ** 24  # elements of one chunk's (anchors × pixels) similarity block of the streaming modes


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    return value


class _StreamedLogSumExp(torch.autograd.Function):
    """Z_k = log Σ_{j ≠ anchors[k]} exp(u_{anchors[k]} · u_j / τ) for unit rows u (M, C), ``chunk`` anchors at a
    time in one reused (chunk × M) buffer. Backward recomputes each chunk's softmax weights w_kj = exp(s_kj − Z_k)
    (w = 0 on the diagonal) and adds ∂Z_k/∂u_{anchors[k]} = Σ_j w_kj u_j / τ and ∂Z_k/∂u_j = w_kj u_{anchors[k]} / τ."""

    @staticmethod
    def _scores(units, anchors, tau, start, chunk, buffer):
        """(anchors, rows u_a / τ, s = u_a · u_j / τ with −inf at j = a) of the chunk starting at ``start``."""
        rows = anchors[start:start + chunk]
        scaled = units[rows] / tau
        s = torch.mm(scaled, units.T, out=buffer[:rows.shape[0]])
        s[torch.arange(rows.shape[0], device=s.device), rows] = float("-inf")  # A(i) excludes i
        return rows, scaled, s

    @staticmethod
    def forward(ctx, units: torch.Tensor, anchors: torch.Tensor, tau: float, chunk: int) -> torch.Tensor:
        lse = units.new_empty(anchors.shape[0])
        buffer = units.new_empty(min(chunk, anchors.shape[0]), units.shape[0])
        for start in range(0, anchors.shape[0], chunk):
            _, _, s = _StreamedLogSumExp._scores(units, anchors, tau, start, chunk, buffer)
            peak = s.amax(dim=1, keepdim=True)
            lse[start:start + chunk] = s.sub_(peak).exp_().sum(dim=1).log_().add_(peak.squeeze(1))
        ctx.save_for_backward(units, anchors, lse)
        ctx.tau, ctx.chunk = tau, chunk
        return lse

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lse: torch.Tensor):
        units, anchors, lse = ctx.saved_tensors
        tau, chunk = ctx.tau, ctx.chunk
        grad_units = torch.zeros_like(units)
        buffer = units.new_empty(min(chunk, anchors.shape[0]), units.shape[0])
        with torch.autocast(device_type=units.device.type, enabled=False):
            for start in range(0, anchors.shape[0], chunk):
                rows, scaled, w = _StreamedLogSumExp._scores(units, anchors, tau, start, chunk, buffer)
                w.sub_(lse[start:start + chunk, None]).exp_()
                weight = grad_lse[start:start + chunk, None]
                grad_units.index_add_(0, rows, (w @ units) * (weight / tau))
                grad_units.addmm_(w.T, scaled * weight)
        return grad_units, None, None, None


def _streamed_terms(units: torch.Tensor, labels: torch.Tensor, tau: float, chunk_size: int | None
                    ) -> tuple[torch.Tensor, int]:
    """(Σ_{i∈Ω} (Z_i − mean_{p∈P(i)} s_ip), |Ω|) over the pixels u (M, C), y (M,) without an M × M matrix."""
    classes, counts = torch.unique(labels, return_inverse=True, return_counts=True)[1:]
    positives = counts[classes] - 1  # |P(i)|
    anchors = ((labels != 0) & (positives > 0)).nonzero().squeeze(1)
    if anchors.numel() == 0:
        return units.sum() * 0.0, 0
    m = units.shape[0]
    chunk = chunk_size if chunk_size is not None else max(1, CHUNK_BUDGET // m)
    class_sums = units.new_zeros(counts.shape[0], units.shape[1]).index_add(0, classes, units)
    anchor_units = units[anchors]
    positive_sum = (anchor_units * (class_sums[classes[anchors]] - anchor_units)).sum(dim=1) / tau  # Σ_p s_ip
    lse = _StreamedLogSumExp.apply(units, anchors, tau, chunk)
    return (lse - positive_sum / positives[anchors]).sum(), anchors.numel()


def _dense_terms(units: torch.Tensor, labels: torch.Tensor, tau: float) -> tuple[torch.Tensor, int]:
    """The same pair as ``_streamed_terms`` straight from the formula, with the M × M matrix."""
    m = units.shape[0]
    s = units @ units.T / tau
    not_self = ~torch.eye(m, dtype=torch.bool, device=units.device)
    positives = (labels[:, None] == labels[None, :]) & not_self
    log_prob = s - masked_logsumexp(s, not_self)[:, None]  # log( e^{s_ip} / Σ_{a∈A(i)} e^{s_ia} )
    count = positives.sum(dim=1)
    anchors = (labels != 0) & (count > 0)
    if not anchors.any():
        return units.sum() * 0.0, 0
    terms = -torch.where(positives, log_prob, 0.0).sum(dim=1) / count.clamp(min=1)
    return terms[anchors].sum(), int(anchors.sum())


def _pixels(features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, h, w), (N, h, w) → unit rows (N·h·w, C) and labels (N·h·w,)."""
    return F.normalize(features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]), dim=1), labels.reshape(-1)


def supervised_local_contrastive_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1,
                                      mode: str = SupervisedLocalMode.EXACT, stride: int = 4, block_size: int = 16, *,
                                      chunk_size: int | None = None) -> torch.Tensor:
    """Supervised per-pixel contrastive loss L over the pixels chosen by ``mode`` (see the module docstring).

    Args:
        features: (N, C, H, W) per-pixel features of all views stacked; any float dtype, L2-normalised along C here,
            computed in fp32 (fp64 stays fp64) with autocast off.
        labels: (N, H, W) integer class per pixel, 0 = background (never an anchor, always a negative).
        temperature: τ > 0.
        mode: "exact", "dense", "stride" or "block".
        stride: step of mode "stride" (≥ 1; checked in every mode).
        block_size: block side of mode "block" (≥ 1; checked in every mode).
        chunk_size: anchors per chunk of the streaming evaluation ("exact", "stride", "block"); None chooses
            ⌊2^24 / pixels⌋ (at least 1). Ignored by "dense".

    Returns:
        0-d tensor; 0 connected to ``features`` when no pixel is a valid anchor.
    """
    if mode not in SUPERVISED_LOCAL_MODES:
        raise ValueError(f"mode must be one of {SUPERVISED_LOCAL_MODES}, got {mode!r}")
    tau = check_temperature(temperature)
    stride = _check_positive_int("stride", stride)
    block_size = _check_positive_int("block_size", block_size)
    if chunk_size is not None:
        chunk_size = _check_positive_int("chunk_size", chunk_size)
    if not isinstance(features, torch.Tensor) or features.ndim != 4 or not features.is_floating_point():
        raise ValueError("features must be a floating-point tensor of shape (N, C, H, W), "
                         f"got {getattr(features, 'shape', type(features))}")
    if features.numel() == 0:
        raise ValueError(f"features must not be empty, got shape {tuple(features.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype == torch.bool or labels.is_floating_point() \
            or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, got {getattr(labels, 'dtype', type(labels))}")
    n, _, h, w = features.shape
    if tuple(labels.shape) != (n, h, w):
        raise ValueError(f"labels must have shape (N, H, W) = {(n, h, w)}, got {tuple(labels.shape)}")
    labels = labels.to(features.device)
    with torch.autocast(device_type=features.device.type, enabled=False):
        features = features.to(working_dtype(features))
        if mode == SupervisedLocalMode.DENSE:
            total, count = _dense_terms(*_pixels(features, labels), tau)
            return total / count if count else total
        if mode in (SupervisedLocalMode.EXACT, SupervisedLocalMode.STRIDE):
            step = stride if mode == SupervisedLocalMode.STRIDE else 1
            total, count = _streamed_terms(*_pixels(features[..., ::step, ::step], labels[..., ::step, ::step]),
                                           tau, chunk_size)
            return total / count if count else total
        block_losses = []
        for top in range(0, h, block_size):
            for left in range(0, w, block_size):
                window = (..., slice(top, top + block_size), slice(left, left + block_size))
                total, count = _streamed_terms(*_pixels(features[window], labels[window]), tau, chunk_size)
                if count:
                    block_losses.append(total / count)
        return torch.stack(block_losses).mean() if block_losses else features.sum() * 0.0
