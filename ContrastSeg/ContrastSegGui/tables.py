"""Filling the panel's tables and lists: the labeled pairs, Dice / HD95 per segment, the segments to learn, the
verdict of "Evaluate on my labeled volumes", the suggested volumes to annotate and the review of a segmentation."""

from __future__ import annotations

import math

import qt

from ContrastSegLogic.review_table import structure_names

MISSING = "(deleted)"


def show_pairs(table, pairs) -> None:
    """One row per labeled pair; a node deleted from the scene shows as "(deleted)" in its own pair's row."""
    table.setRowCount(len(pairs))
    for row, pair in enumerate(pairs):
        for column, node in enumerate(pair):
            table.setItem(row, column, qt.QTableWidgetItem(node.GetName() if node is not None else MISSING))


def show_metrics(table, rows) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate((row["structure"], f"{row['dice']:.3f}", f"{row['hd95_mm']:.1f}")):
            table.setItem(r, c, qt.QTableWidgetItem(text))


VERDICT_COLUMNS = ("method", "mean Dice", "Dice − random", "higher on")
SUGGESTION_COLUMNS = ("rank", "volume", "score", "reason")


def show_verdict(table, verdict: dict) -> None:
    """One row per compared method (random first): its mean Dice over the folds and the paired comparison."""
    folds, cells = verdict["folds"], []
    for method, mean in verdict["means"].items():
        paired = verdict["paired"].get(method)
        cells.append((method, f"{mean:.3f}", f"{paired['difference']:+.3f}" if paired else "",
                      f"{paired['higher_on']}/{folds} folds" if paired else ""))
    _fill(table, VERDICT_COLUMNS, cells)


def show_suggestions(table, rows) -> None:
    """One row per suggestion of ``suggest``, best first: the scene volume or scan file, its score and reason."""
    _fill(table, SUGGESTION_COLUMNS, [(str(r["rank"]), r["name"], f"{r['score']:.2f}", r["reason"]) for r in rows])


def show_review(table, rows) -> None:
    """One row per segmented volume, the most likely wrong first: score, each structure's volume z-score, flags."""
    names = structure_names(rows)
    cells = [(str(r["rank"]), r["volume"].GetName(), f"{r['score']:.2f}", *(_signed(r[f"{n}_z"]) for n in names),
              r["flags"]) for r in rows]
    _fill(table, ("rank", "volume", "score", *(f"{n} z" for n in names), "flags"), cells)


def _signed(value) -> str:
    return "" if value is None or math.isnan(value) else f"{value:+.1f}"


def _fill(table, columns, cells) -> None:
    """``table`` with the header ``columns`` and one row of texts per entry of ``cells`` (each text also its
    tooltip, for the long ones); every column but the last (the long texts) as wide as its contents."""
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setRowCount(len(cells))
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            item = qt.QTableWidgetItem(text)
            item.setToolTip(text)
            table.setItem(r, c, item)
    for c in range(len(columns) - 1):
        table.resizeColumnToContents(c)


def show_segment_names(widget, names) -> None:
    """Checkable items for ``names`` (ticked; the binding then applies the stored choice)."""
    current = [widget.item(i).text() for i in range(widget.count)]
    if current == list(names):
        return
    widget.blockSignals(True)
    widget.clear()
    for name in names:
        item = qt.QListWidgetItem(name)
        item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
        item.setCheckState(qt.Qt.Checked)
        widget.addItem(item)
    widget.blockSignals(False)
