"""Triage: how sure a model is of each structure it predicted, and which predictions a reader should check first."""

from .review import REVIEW_NAME, read_review, review_row, sorted_review, spearman, write_review
from .uncertainty import UNCERTAIN_ENTROPY, StructureUncertainty, foreground_uncertainty, structure_uncertainty
from .volumes import SD_FLOOR, VolumeNorms, structure_volumes_ml

__all__ = ["REVIEW_NAME", "SD_FLOOR", "UNCERTAIN_ENTROPY", "StructureUncertainty", "VolumeNorms",
           "foreground_uncertainty", "read_review", "review_row", "sorted_review", "spearman",
           "structure_uncertainty", "structure_volumes_ml", "write_review"]
