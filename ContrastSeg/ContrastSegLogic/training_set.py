"""The labeled pairs a model learns from, and the review of a prediction: which (volume, segmentation) pairs are
usable and which classes they define, adding a corrected prediction to the set, and Dice / HD95 per segment."""

from __future__ import annotations

from typing import Any, Sequence

from . import scene_io
from .classes import SegmentClass, check_same_classes, classes_of, segment_ids
from .errors import SceneInputError


class TrainingSet:
    """Mixed into the workflow: needs ``self.scene``."""

    def check_labeled(self, labeled: Sequence[tuple[Any, Any]], segments: Sequence[str] | None = None
                      ) -> tuple[list[tuple[Any, Any, list[str]]], list[SegmentClass]]:
        """Validated (volume, segmentation, segment ids) triples and the classes they define."""
        if not labeled:
            raise SceneInputError("add at least one labeled pair (a volume and its segmentation)")
        pairs, classes = [], None
        for volume, segmentation in labeled:
            if volume is None:
                raise SceneInputError(f"a labeled pair lost its volume (deleted from the scene); remove the pair "
                                      f"'{segmentation.GetName() if segmentation else '?'}' or add it again")
            scene_io.checked_scalar_volume(volume)
            if segmentation is None:
                raise SceneInputError(f"volume '{volume.GetName()}' has no segmentation; pick its segmentation node "
                                      "or segment it in the Segment Editor first")
            scene_io.check_same_geometry(segmentation, volume)
            ids = segment_ids(segmentation, segments if segments is not None else (
                None if classes is None else [c.name for c in classes]))
            if not ids:
                raise SceneInputError(f"segmentation '{segmentation.GetName()}' has no segments; paint at least one "
                                      "structure in the Segment Editor")
            found = classes_of(segmentation, ids)
            if classes is None:
                classes = found
            check_same_classes(classes, found, f"segmentation '{segmentation.GetName()}'")
            pairs.append((volume, segmentation, ids))
        return pairs, classes

    def add_to_training_set(self, labeled: Sequence[tuple[Any, Any]], volume, segmentation) -> list[tuple[Any, Any]]:
        """``labeled`` plus (volume, segmentation) — e.g. a corrected prediction — after the same checks."""
        if volume is None or segmentation is None:
            raise SceneInputError("select a volume and its segmentation first")
        if any(v is volume for v, _ in labeled):
            raise SceneInputError(f"volume '{volume.GetName()}' is already in the training set; remove its pair first")
        extended = [*labeled, (volume, segmentation)]
        self.check_labeled([(v, s) for v, s in extended if v is not None and s is not None])
        return extended

    def compare(self, prediction, reference, volume) -> list[dict]:
        """Dice and HD95 (mm) per segment name found in both segmentations, on ``volume``'s grid."""
        for node, what in ((prediction, "a prediction"), (reference, "a reference segmentation"),
                           (volume, "the volume they segment")):
            if node is None:
                raise SceneInputError(f"select {what} in the Review section first")
        from ContrastSegLib.evaluation import structure_metrics
        from ContrastSegLib.io import Volume
        names = [c.name for c in classes_of(reference, segment_ids(reference))]
        shared = [n for n in names if prediction.GetSegmentation().GetSegmentIdBySegmentName(n)]
        if not shared:
            raise SceneInputError(f"segmentations '{prediction.GetName()}' and '{reference.GetName()}' share no "
                                  "segment name; rename the segments so they match")
        arrays = [scene_io.labelmap_array(self.scene, node, segment_ids(node, shared), volume)
                  for node in (prediction, reference)]
        spacing = tuple(float(s) for s in volume.GetSpacing())
        grid = dict(spacing=spacing, origin=(0.0, 0.0, 0.0), direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
        labels = {value: name for value, name in enumerate(shared, 1)}
        return structure_metrics(Volume(arrays[0], **grid), Volume(arrays[1], **grid), labels)
