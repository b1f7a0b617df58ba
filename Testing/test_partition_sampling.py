"""Partition-aware sampling: partitions by relative depth, full batches of real slices, tags, seeding, errors."""

import numpy as np
import pytest
import torch

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.sampling import PartitionSliceBank, TaggedBatch, partition_of

SLICE_COUNTS = (10, 7, 4, 9, 13)
SIDE = 6


def numbered_volumes(counts=SLICE_COUNTS, side=SIDE) -> list[np.ndarray]:
    """Volumes whose every slice is filled with (its global index in the bank + 1): no slice is all zero."""
    volumes, first = [], 0
    for count in counts:
        values = np.arange(first + 1, first + count + 1, dtype=np.float32)
        volumes.append(np.broadcast_to(values[:, None, None], (count, side, side)).copy())
        first += count
    return volumes


def make_bank(partitions=4, counts=SLICE_COUNTS) -> PartitionSliceBank:
    names = [f"case{i:02d}.nii.gz" for i in range(len(counts))]
    return PartitionSliceBank(numbered_volumes(counts), partitions, torch.device("cpu"), names=names)


def test_partition_of_by_hand():
    assert list(partition_of(np.arange(10), 10, 4)) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert list(partition_of(np.arange(7), 7, 3)) == [0, 0, 0, 1, 1, 2, 2]
    assert partition_of(9, 10, 4) == 3 and isinstance(partition_of(9, 10, 4), int)
    for n in range(1, 40):
        for s in range(1, n + 1):
            parts = partition_of(np.arange(n), n, s)
            assert list(parts) == [k * s // n for k in range(n)]
            assert (np.diff(parts) >= 0).all()  # contiguous by relative position
            sizes = np.bincount(parts, minlength=s)
            assert len(sizes) == s and sizes.min() >= 1 and sizes.max() - sizes.min() <= 1


def check_batch(bank: PartitionSliceBank, batch: TaggedBatch) -> None:
    """Every image is the bank slice its id names, and the tags agree with partition_of."""
    assert batch.images.dtype == torch.float32 and batch.images.shape[1:] == (1, SIDE, SIDE)
    for tag in (batch.image_ids, batch.volume_ids, batch.partition_ids):
        assert tag.dtype == torch.long and tag.shape == (batch.images.shape[0],)
    assert (batch.images > 0).all()  # no empty slots
    expected = (batch.image_ids + 1).float()[:, None, None, None].expand_as(batch.images)
    assert torch.equal(batch.images, expected)
    starts = np.concatenate([[0], np.cumsum(SLICE_COUNTS)])
    for image_id, volume, part in zip(batch.image_ids.tolist(), batch.volume_ids.tolist(),
                                      batch.partition_ids.tolist()):
        assert starts[volume] <= image_id < starts[volume + 1]
        assert part == partition_of(image_id - starts[volume], SLICE_COUNTS[volume], bank.partitions)


def test_batch_has_one_slice_per_partition_of_distinct_volumes():
    bank = make_bank(partitions=4)
    assert (bank.num_volumes, bank.num_slices, bank.partitions) == (5, sum(SLICE_COUNTS), 4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        batch = bank.sample(3, generator)
        assert batch.images.shape[0] == 3 * 4
        check_batch(bank, batch)
        volumes = batch.volume_ids.view(3, 4)
        assert (volumes == volumes[:, :1]).all()  # volume-major
        assert len(set(volumes[:, 0].tolist())) == 3  # distinct volumes
        assert torch.equal(batch.partition_ids.view(3, 4), torch.arange(4).expand(3, 4))  # partition-minor
        assert len(set(batch.image_ids.tolist())) == 12


def test_every_slice_gets_sampled_and_volumes_vary():
    bank = make_bank(partitions=4)
    generator = torch.Generator().manual_seed(1)
    seen_slices, seen_volume_sets = set(), set()
    for _ in range(300):
        batch = bank.sample(2, generator)
        seen_slices.update(batch.image_ids.tolist())
        seen_volume_sets.add(tuple(sorted(set(batch.volume_ids.tolist()))))
    assert seen_slices == set(range(bank.num_slices))
    assert len(seen_volume_sets) == 10  # all C(5, 2) pairs of volumes


def test_all_volumes_in_one_batch():
    bank = make_bank(partitions=4)
    batch = bank.sample(5, torch.Generator().manual_seed(2))
    check_batch(bank, batch)
    assert sorted(batch.volume_ids.view(5, 4)[:, 0].tolist()) == [0, 1, 2, 3, 4]


def test_sampling_is_seeded():
    bank = make_bank()
    first = bank.sample(3, torch.Generator().manual_seed(7))
    again = bank.sample(3, torch.Generator().manual_seed(7))
    other = bank.sample(3, torch.Generator().manual_seed(8))
    assert torch.equal(first.image_ids, again.image_ids) and torch.equal(first.images, again.images)
    assert not torch.equal(first.image_ids, other.image_ids)
    slices = bank.sample_slices(16, torch.Generator().manual_seed(7))
    assert torch.equal(slices.image_ids, bank.sample_slices(16, torch.Generator().manual_seed(7)).image_ids)


def test_sample_slices_tags():
    bank = make_bank(partitions=3)
    generator = torch.Generator().manual_seed(3)
    seen = set()
    for _ in range(40):
        batch = bank.sample_slices(8, generator)
        assert batch.images.shape[0] == 8
        check_batch(bank, batch)
        seen.update(batch.image_ids.tolist())
    assert seen == set(range(bank.num_slices))


def test_too_few_slices_names_the_volume():
    with pytest.raises(ContrastSegError, match=r"case02\.nii\.gz.*4 slices.*--partitions"):
        make_bank(partitions=5)
    make_bank(partitions=4)  # the shortest volume has exactly 4 slices: accepted


def test_too_many_volumes_per_batch():
    bank = make_bank()
    with pytest.raises(ContrastSegError, match="6 distinct volumes.*5"):
        bank.sample(6, torch.Generator().manual_seed(0))
    with pytest.raises(ContrastSegError):
        bank.sample(0, torch.Generator().manual_seed(0))


def test_fewer_than_two_volumes():
    with pytest.raises(ContrastSegError, match=r"at least 2.*only.*solo\.nii\.gz"):
        PartitionSliceBank(numbered_volumes((8,)), 4, torch.device("cpu"), names=["solo.nii.gz"])
    with pytest.raises(ContrastSegError, match="at least 2"):
        PartitionSliceBank([], 4, torch.device("cpu"))


def test_mismatched_plane_names_the_volume():
    volumes = numbered_volumes((5, 5))
    volumes[1] = volumes[1][:, :4]
    with pytest.raises(ContrastSegError, match="volume 1"):
        PartitionSliceBank(volumes, 2, torch.device("cpu"))
