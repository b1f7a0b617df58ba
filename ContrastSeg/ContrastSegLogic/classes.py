"""Segments <-> classes: which segments of a segmentation node are trained, under which label value, name and
colour, and how a checkpoint's classes become segments again.

Label value ``i + 1`` is the i-th selected segment (0 is background); names and colours travel with the job
(``labeled.json``) into the checkpoint, and back into the segments of every prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ContrastSegLib.data.labels import clean_name

from .errors import SceneInputError


@dataclass(frozen=True)
class SegmentClass:
    """One foreground class: label value, segment name, colour as RGB floats in 0..1 (MRML's convention)."""

    value: int
    name: str
    color: tuple[float, float, float]

    @property
    def color_255(self) -> list[int]:
        return [int(round(min(max(c, 0.0), 1.0) * 255)) for c in self.color]


def segment_ids(segmentation_node, names: Sequence[str] | None = None) -> list[str]:
    """Ids of the segments called ``names`` (all segments, in order, when None); unknown names are refused."""
    segmentation = segmentation_node.GetSegmentation()
    if names is None:
        return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    ids = []
    for name in names:
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        if not segment_id:
            raise SceneInputError(f"segmentation '{segmentation_node.GetName()}' has no segment '{name}'; add it in "
                                  "the Segment Editor or deselect it")
        ids.append(segment_id)
    return ids


def classes_of(segmentation_node, ids: Sequence[str]) -> list[SegmentClass]:
    """The classes that exporting ``ids`` of ``segmentation_node`` as a label map gives (values 1, 2, ...)."""
    segmentation = segmentation_node.GetSegmentation()
    classes = []
    for value, segment_id in enumerate(ids, start=1):
        segment = segmentation.GetSegment(segment_id)
        classes.append(SegmentClass(value, segment.GetName(), tuple(float(c) for c in segment.GetColor())))
    return classes


def classes_from_labels(labels: dict) -> list[SegmentClass]:
    """Foreground classes of a checkpoint's ``labels`` metadata ({"values", "names", "colors" 0..255}); names
    cleaned of control characters."""
    return [SegmentClass(int(value), clean_name(name), tuple(c / 255.0 for c in color))
            for value, name, color in zip(labels["values"], labels["names"], labels["colors"]) if int(value) != 0]


def manifest_labels(classes: Sequence[SegmentClass]) -> tuple[dict[str, str], dict[str, list[int]]]:
    """(``labels``, ``colors``) entries of a ContrastSeg manifest for ``classes``."""
    labels = {"0": "background", **{str(c.value): c.name for c in classes}}
    colors = {str(c.value): c.color_255 for c in classes}
    return labels, colors


def check_same_classes(expected: Sequence[SegmentClass], found: Sequence[SegmentClass], where: str) -> None:
    """Refuse ``found`` unless it has the names of ``expected`` in the same order."""
    want, got = [c.name for c in expected], [c.name for c in found]
    if want != got:
        raise SceneInputError(f"{where} has segments {got}, the other labeled pairs have {want}; give every "
                              "segmentation the same segment names in the same order")
