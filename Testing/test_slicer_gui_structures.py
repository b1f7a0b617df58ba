"""No structure silently dropped, in the panel: a fine-tuning too short to learn a tiny segment ends with a warning
that names it under the status line and in the job log, and the model's description says it was not learned; a
real ``contrastseg finetune`` job clicked through in the Qt event loop (see ``test_slicer_gui`` for the harness)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from test_slicer_gui import add_pair, run_job, session, tiny_settings  # noqa: E402,F401  (session: the fixture)

from slicer_app import click  # noqa: E402
from slicer_scene import add_segmentation, phantom_node, phantom_segments, slicer  # noqa: E402


def scans_with_a_speck(count=2):
    """Phantom scans whose segmentations add a 3×3 "speck" (value 4) inside the LV of the middle slice."""
    scans = []
    for index in range(count):
        volume, label = phantom_node(slicer.mrmlScene, index, f"scan{index}")
        middle = label.shape[0] // 2
        rows, columns = np.nonzero(label[middle] == 1)
        row, column = int(np.median(rows)), int(np.median(columns))
        label = label.copy()
        label[middle, row - 1:row + 2, column - 1:column + 2] = 4
        names = {**phantom_segments(), 4: "speck"}
        scans.append((volume, add_segmentation(slicer.mrmlScene, volume, label, names, name=f"scan{index} labels")))
    return scans


def test_a_segment_not_learned_is_named_after_fine_tuning(session):
    ui = session.widget.panel.ui
    for volume, segmentation in scans_with_a_speck():
        add_pair(ui, volume, segmentation)
    click(ui.randomInitRadio)
    tiny_settings(ui, iterations=2)
    run_job(session, ui.finetuneButton, "a fine-tuning too short to learn the speck")
    status = ui.statusLabel.text
    assert status.startswith("Model saved: "), status
    assert 'Warning: structure 4 "speck" was not learned (Dice ' in status
    assert 'warning: structure 4 "speck" was not learned' in ui.logView.toPlainText()
    description = ui.modelClassesLabel.text
    assert description.startswith("Segments LV, myocardium, RV, speck (fine-tuned, 2 steps)"), description
    assert "Not learned on the training volumes: " in description and "speck (Dice 0." in description
    assert session.dialogs.errors == []
