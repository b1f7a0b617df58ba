"""Filling the panel's tables and lists: the labeled pairs, Dice / HD95 per segment, the segments to learn, the
verdict of "Evaluate on my labeled volumes"."""

from __future__ import annotations

import qt

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


def show_verdict(table, verdict: dict) -> None:
    """One row per compared method (random first): its mean Dice over the folds and the paired comparison."""
    table.setColumnCount(len(VERDICT_COLUMNS))
    table.setHorizontalHeaderLabels(list(VERDICT_COLUMNS))
    table.setRowCount(len(verdict["means"]))
    folds = verdict["folds"]
    for r, (method, mean) in enumerate(verdict["means"].items()):
        paired = verdict["paired"].get(method)
        cells = (method, f"{mean:.3f}", f"{paired['difference']:+.3f}" if paired else "",
                 f"{paired['higher_on']}/{folds} folds" if paired else "")
        for c, text in enumerate(cells):
            table.setItem(r, c, qt.QTableWidgetItem(text))


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
