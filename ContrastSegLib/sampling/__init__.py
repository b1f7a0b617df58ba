"""Batch sampling: labeled slices for fine-tuning (partition-aware sampling arrives with pre-training)."""

from .labeled import LabeledSliceBank

__all__ = ["LabeledSliceBank"]
