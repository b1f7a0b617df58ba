"""Annotation suggestion: which unlabeled volumes to annotate, from the pre-trained (or fine-tuned) embedding."""

from ..settings import SuggestConfig
from .embedding import SliceEmbedder, VolumeEmbedding
from .k_center import Pick, greedy_k_center
from .suggest_job import candidate_cases, choose, read_suggestions, run_suggest, suggest_among

__all__ = ["Pick", "SliceEmbedder", "SuggestConfig", "VolumeEmbedding", "candidate_cases", "choose",
           "greedy_k_center", "read_suggestions", "run_suggest", "suggest_among"]
