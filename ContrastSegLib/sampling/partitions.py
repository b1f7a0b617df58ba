"""Unlabeled slices tagged by volume and partition, sampled on the device for the contrastive stages.

Each volume's slices are split into S equal partitions by relative depth: slice k of n lies in partition
floor(k·S/n). A partition-aware batch takes m distinct volumes and one random slice from every partition of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import ContrastSegError


def partition_of(slice_index: int | np.ndarray, num_slices: int, partitions: int) -> int | np.ndarray:
    """Partition of slice k of a volume of n slices split into S equal parts by relative position: floor(k·S/n)."""
    if isinstance(slice_index, (int, np.integer)):
        return int(slice_index) * partitions // num_slices
    return np.asarray(slice_index, dtype=np.int64) * partitions // num_slices


def partition_starts(num_slices: int, partitions: int) -> np.ndarray:
    """(S + 1,) first slice of each partition, then n: partition s holds slices [starts[s], starts[s + 1])."""
    boundaries = np.arange(partitions + 1, dtype=np.int64) * num_slices
    return -(-boundaries // partitions)  # ceil(s·n/S): the smallest k with floor(k·S/n) >= s


@dataclass(frozen=True)
class TaggedBatch:
    """images (N, 1, P, P) float32; image_ids (N,) global slice index in the bank; volume_ids (N,) index of the
    volume in the bank; partition_ids (N,) partition 0..S-1. All on the bank's device, the tags as long."""

    images: torch.Tensor
    image_ids: torch.Tensor
    volume_ids: torch.Tensor
    partition_ids: torch.Tensor


class PartitionSliceBank:
    """All slices of the unlabeled volumes on the device, each tagged (volume, partition).

    ``volumes``: (S_i, P, P) float32 arrays of one (P, P) (a ``PreparedVolume`` is accepted too, its ``image`` used).
    Random draws happen on the generator's device and the indices move to the bank's device.
    """

    def __init__(self, volumes: Sequence[np.ndarray], partitions: int, device: torch.device,
                 names: Sequence[str] | None = None):
        arrays = [np.asarray(getattr(volume, "image", volume), dtype=np.float32) for volume in volumes]
        names = list(names) if names is not None else [_default_name(volume, i) for i, volume in enumerate(volumes)]
        if len(names) != len(arrays):
            raise ContrastSegError(f"got {len(names)} names for {len(arrays)} volumes; give one name per volume")
        if partitions < 1:
            raise ContrastSegError(f"--partitions must be at least 1, got {partitions}")
        if len(arrays) < 2:
            which = f" (only {names[0]})" if names else ""
            raise ContrastSegError(f"partition sampling needs at least 2 unlabeled volumes, got {len(arrays)}{which};"
                                   " add unlabeled volumes to the pre-training pool")
        _check_shapes(arrays, names, partitions)

        slice_counts = np.array([array.shape[0] for array in arrays], dtype=np.int64)
        volume_starts = np.concatenate([[0], np.cumsum(slice_counts)[:-1]])
        local_starts = np.stack([partition_starts(int(count), partitions) for count in slice_counts])  # (V, S+1)
        self.device = torch.device(device)
        self._partitions = partitions
        self.names = names
        self.images = torch.from_numpy(np.concatenate(arrays)).unsqueeze(1).to(self.device)  # (N, 1, P, P)
        self.volume_of_slice = torch.from_numpy(
            np.repeat(np.arange(len(arrays), dtype=np.int64), slice_counts)).to(self.device)  # (N,)
        self.partition_of_slice = torch.from_numpy(np.concatenate(
            [partition_of(np.arange(count), int(count), partitions) for count in slice_counts])).to(self.device)
        global_starts = volume_starts[:, None] + local_starts
        self.partition_first = torch.from_numpy(global_starts[:, :-1]).to(self.device)  # (V, S) first global slice
        self.partition_size = torch.from_numpy(np.diff(local_starts, axis=1)).to(self.device)  # (V, S), all >= 1

    @property
    def num_volumes(self) -> int:
        return self.partition_first.shape[0]

    @property
    def num_slices(self) -> int:
        return self.images.shape[0]

    @property
    def partitions(self) -> int:
        return self._partitions

    def sample(self, volumes_per_batch: int, generator: torch.Generator) -> TaggedBatch:
        """m distinct volumes, one random slice from each of their S partitions: m·S images ordered
        volume-major, partition-minor (slot i·S + s is partition s of the i-th drawn volume)."""
        if not 1 <= volumes_per_batch <= self.num_volumes:
            raise ContrastSegError(
                f"cannot draw {volumes_per_batch} distinct volumes per batch from a pool of {self.num_volumes} "
                f"unlabeled volumes; use between 1 and {self.num_volumes} volumes per batch")
        chosen = torch.randperm(self.num_volumes, generator=generator, device=generator.device)
        chosen = chosen[:volumes_per_batch].to(self.device)  # (m,)
        uniform = torch.rand((volumes_per_batch, self.partitions), generator=generator, device=generator.device)
        sizes = self.partition_size[chosen]  # (m, S)
        offset = torch.minimum((uniform.to(self.device) * sizes).long(), sizes - 1)
        image_ids = (self.partition_first[chosen] + offset).reshape(-1)  # (m·S,)
        return self._tagged(image_ids)

    def sample_slices(self, count: int, generator: torch.Generator) -> TaggedBatch:
        """``count`` slices drawn uniformly with replacement from the whole bank, tagged likewise."""
        if count < 1:
            raise ContrastSegError(f"a batch needs at least 1 slice, got {count}")
        image_ids = torch.randint(self.num_slices, (count,), generator=generator, device=generator.device)
        return self._tagged(image_ids.to(self.device))

    def _tagged(self, image_ids: torch.Tensor) -> TaggedBatch:
        return TaggedBatch(images=self.images[image_ids], image_ids=image_ids,
                           volume_ids=self.volume_of_slice[image_ids],
                           partition_ids=self.partition_of_slice[image_ids])


def _default_name(volume, index: int) -> str:
    return getattr(volume, "source", "") or f"volume {index}"


def _check_shapes(arrays: list[np.ndarray], names: list[str], partitions: int) -> None:
    plane = arrays[0].shape[1:]
    for array, name in zip(arrays, names):
        if array.ndim != 3 or array.shape[1:] != plane:
            raise ContrastSegError(f"volume {name} has shape {array.shape}, expected a (slices, P, P) stack of the "
                                   f"first volume's plane {plane}; preprocess all volumes to one in-plane size")
        if array.shape[0] < partitions:
            raise ContrastSegError(
                f"volume {name} has {array.shape[0]} slices, fewer than the {partitions} partitions; "
                f"use --partitions {array.shape[0]} or fewer, or drop this volume")
