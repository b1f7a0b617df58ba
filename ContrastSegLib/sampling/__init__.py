"""Batch sampling: labeled slices for fine-tuning, partition-tagged unlabeled slices for contrastive pre-training."""

from .labeled import LabeledSliceBank
from .partitions import PartitionSliceBank, TaggedBatch, partition_of

__all__ = ["LabeledSliceBank", "PartitionSliceBank", "TaggedBatch", "partition_of"]
