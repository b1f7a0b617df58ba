"""The review table of a segmentation job: ``contrastseg predict``'s ``review.csv`` (one row per volume, the
predictions most likely wrong first) with each row's scene nodes, and one row shown in the slice views.

    rows = workflow.segment([scan1, scan2, scan3], model, review=True)
    show_in_views(rows[0]["volume"], rows[0]["segmentation"], rows[0]["uncertainty"])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from .errors import SceneInputError

FILE_COLUMNS = ("image", "prediction", "uncertainty")  # the job's own files, deleted when it ends
UNCERTAINTY_OPACITY = 0.4


def review_rows(predictions: str | os.PathLike, nodes: Mapping[str, tuple]) -> list[dict]:
    """The rows of the review table in the folder ``predictions``, worst first; ``nodes``: case -> (volume,
    segmentation, uncertainty volume or None). Each row keeps review.csv's columns (rank, case, score,
    mean_uncertainty, uncertain_fraction, ``<structure>_ml``, ``<structure>_z``, flags), its file paths replaced by
    the nodes "volume", "segmentation" and "uncertainty"."""
    from ContrastSegLib.errors import ContrastSegError
    from ContrastSegLib.triage import REVIEW_NAME, read_review
    path = Path(predictions) / REVIEW_NAME
    try:
        table = read_review(path)  # written worst first
    except ContrastSegError as error:
        raise SceneInputError(str(error)) from None
    rows = []
    for row in table:
        if row["case"] not in nodes:
            raise SceneInputError(f"{path}: case {row['case']!r} is none of the segmented volumes; segment again")
        volume, segmentation, uncertainty = nodes[row["case"]]
        rows.append({**{k: v for k, v in row.items() if k not in FILE_COLUMNS},
                     "volume": volume, "segmentation": segmentation, "uncertainty": uncertainty})
    return rows


def structure_names(rows: Sequence[dict]) -> list[str]:
    """The structures that have a z-score column, in the table's order."""
    return [key[:-2] for key in rows[0] if key.endswith("_z")] if rows else []


def show_in_views(volume, segmentation, uncertainty=None, hidden: Sequence = ()) -> None:
    """The slice views show ``volume`` with ``segmentation`` (and ``uncertainty`` as a translucent foreground, when
    given); the segmentations ``hidden`` (the other rows' predictions) are hidden, so only this one is seen."""
    import slicer
    slicer.util.setSliceViewerLayers(background=volume, foreground=uncertainty,
                                     foregroundOpacity=UNCERTAINTY_OPACITY if uncertainty is not None else None,
                                     fit=getattr(slicer, "app", None) is not None)  # views to fit: Slicer's own
    for node in [*hidden, segmentation]:
        display = node.GetDisplayNode()
        if display is not None:
            display.SetVisibility(node is segmentation)
