"""Evaluation output: plain-text tables, CSV/JSON row files and overlay PNGs of one slice.

Figures are drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas, so no display and no global
matplotlib backend is needed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from ..errors import ContrastSegError
from ..io.output_path import check_output_path
from ..io.write_file import write_bytes, write_text

MISSING = "—"
DEFAULT_COLORS: dict[int, tuple[int, int, int]] = {
    1: (230, 25, 75), 2: (60, 180, 75), 3: (255, 225, 25), 4: (0, 130, 200), 5: (245, 130, 48),
    6: (145, 30, 180), 7: (70, 240, 240), 8: (240, 50, 230), 9: (210, 245, 60), 10: (250, 190, 212),
}
OVERLAY_ALPHA = 0.45
FORMULA_STARTS = ("=", "+", "-", "@")  # a cell starting so is a formula to Excel, LibreOffice and Google Sheets


def format_table(rows: list[dict], columns: list[str], title: str | None = None) -> str:
    """Aligned plain-text table of ``columns`` (header, dashes, one line per row).

    Floats have 3 decimals, NaN shows as ``—``, None or a missing key as an empty cell; numeric columns are
    right-aligned, text columns left-aligned.
    """
    cells = [[_format_cell(row.get(column)) for column in columns] for row in rows]
    numeric = [
        all(_is_number(row.get(column)) for row in rows if row.get(column) is not None) for column in columns
    ]
    widths = [max([len(column)] + [len(line[index]) for line in cells]) for index, column in enumerate(columns)]

    def render(values: list[str]) -> str:
        parts = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    lines = [title] if title else []
    lines.append(render(list(columns)))
    lines.append("  ".join("-" * width for width in widths))
    lines.extend(render(line) for line in cells)
    return "\n".join(lines)


def write_rows(rows: list[dict], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``rows`` to ``path`` atomically: ``.csv`` (columns in order of first appearance, NaN/None as an empty
    cell) or ``.json`` (a list of objects, NaN as null). Any other suffix raises :class:`ContrastSegError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ContrastSegError(f"{path}: unknown table format '{path.suffix}'; use a .csv or .json file name")
    check_output_path(path, overwrite, kind="file")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    plain_rows = [{key: _plain_value(value) for key, value in row.items()} for row in rows]
    if suffix == ".csv":
        return write_text(csv_text(plain_rows, columns), path, overwrite)
    handle = io.StringIO(newline="")
    json.dump(plain_rows, handle, indent=2, allow_nan=False)
    handle.write("\n")
    return write_text(handle.getvalue(), path, overwrite)


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """``rows`` as CSV text under a header of ``columns`` (keys not among them left out, None or missing as an
    empty cell), every cell and column name through :func:`csv_cell`. Every CSV file the library writes is made
    here."""
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow([csv_cell(column) for column in columns])
    writer.writerows([csv_cell("" if row.get(name) is None else row[name]) for name in columns] for row in rows)
    return handle.getvalue()


def csv_cell(value):
    """``value`` safe to open in a spreadsheet: text starting with ``= + - @`` that is not a number (a formula such
    as ``=HYPERLINK(...)``) gets a leading ``'``; numbers, ``-0.5`` included, are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number_text(value):
        return "'" + value
    return value


def plain_cell(text: str) -> str:
    """The text :func:`csv_cell` was given (its leading ``'`` removed)."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def read_rows(path: str | os.PathLike, text_columns: set[str], required: set[str], fix: str) -> list[dict]:
    """The rows of a CSV table this library wrote: the ``text_columns`` as text, ``rank`` as int, every other cell
    a float (an empty cell NaN). A file that cannot be read or lacks a ``required`` column is refused in one line
    ending with ``fix``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [{plain_cell(k): plain_cell(v or "") for k, v in row.items() if k is not None}
                    for row in csv.DictReader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ContrastSegError(f"{path}: not a readable table ({error}); {fix}") from None
    if rows and not required <= set(rows[0]):
        raise ContrastSegError(f"{path}: no {'/'.join(sorted(required))} columns; {fix}")
    return [{key: value if key in text_columns else _number_cell(value, key, row, number, path, fix)
             for key, value in row.items()} for number, row in enumerate(rows, start=1)]


def _number_cell(value: str, key: str, row: dict, number: int, path: Path, fix: str):
    """A number cell of a table: a float (NaN when empty; ``rank`` an int); anything else is refused, naming the
    row (``number``, from 1 after the header) and its case."""
    try:
        parsed = float(value) if value != "" else math.nan
    except ValueError:
        case = f" (case {row['case']!r})" if isinstance(row.get("case"), str) else ""
        raise ContrastSegError(f"{path}: row {number}{case}, column {key}: {value[:40]!r} is not a number; put a "
                               f"number there or leave the cell empty, or {fix}") from None
    return int(parsed) if key == "rank" and not math.isnan(parsed) else parsed


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def pick_overlay_slice(reference_or_prediction: np.ndarray) -> int:
    """Index along axis 0 of a (K, J, I) label map with the most foreground voxels (the first on ties; the middle
    slice when the map is empty)."""
    array = np.asarray(reference_or_prediction)
    if array.ndim != 3:
        raise ContrastSegError(f"overlay slice: expected a 3-D (K, J, I) label map, got shape {array.shape}")
    counts = np.count_nonzero(array.reshape(array.shape[0], -1), axis=1)
    return int(np.argmax(counts)) if counts.any() else array.shape[0] // 2


def save_overlay_png(
    image: np.ndarray,
    reference: np.ndarray | None,
    prediction: np.ndarray,
    path: str | os.PathLike,
    colors: dict[int, tuple[int, int, int]] | None = None,
    title: str = "",
    overwrite: bool = False,
    pixel_spacing: tuple[float, float] | None = None,
) -> Path:
    """Save one 2-D slice as a PNG with panels image | reference overlay | prediction overlay.

    ``image``, ``reference``, ``prediction``: (J, I) arrays of one slice (``reference`` None: two panels).
    The prediction panel also outlines the reference in white. ``colors``: label value -> RGB 0..255 (defaults
    to a 10-colour palette). ``pixel_spacing``: (row, column) mm, to draw anisotropic pixels to scale.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ContrastSegError(f"{path}: overlay images are PNG files; use a .png file name")
    image = np.asarray(image, dtype=float)
    masks = {"reference": reference, "prediction": prediction}
    if image.ndim != 2:
        raise ContrastSegError(
            f"{path}: overlay needs one 2-D slice, got an image of shape {image.shape}; "
            "select a slice, e.g. volume[pick_overlay_slice(labels)]"
        )
    for name, mask in masks.items():
        if mask is not None and np.shape(mask) != image.shape:
            raise ContrastSegError(f"{path}: {name} slice shape {np.shape(mask)} differs from the image's {image.shape}")
    check_output_path(path, overwrite, kind="file")

    values = sorted(set().union(*(np.unique(m).tolist() for m in masks.values() if m is not None)) - {0})
    palette = {v: (colors or {}).get(v, DEFAULT_COLORS.get(v, _fallback_color(v))) for v in values}
    low, high = _display_window(image)
    aspect = pixel_spacing[0] / pixel_spacing[1] if pixel_spacing else 1.0
    panels = [("image", None)] + [(name, np.asarray(m)) for name, m in masks.items() if m is not None]

    panel_width = 4.0
    panel_height = max(1.5, min(panel_width * image.shape[0] * aspect / image.shape[1], 8.0))
    figure = Figure(figsize=(panel_width * len(panels), panel_height + (0.5 if title else 0.3)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, mask) in zip(axes, panels):
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest", aspect=aspect)
        if mask is not None:
            ax.imshow(_rgba_overlay(mask, palette), interpolation="nearest", aspect=aspect)
            _draw_contours(ax, mask, palette)
        if name == "prediction" and reference is not None:
            _draw_contours(ax, np.asarray(reference), {v: (255, 255, 255) for v in values}, width=0.6)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return write_bytes(buffer.getvalue(), path, overwrite)


def _rgba_overlay(mask: np.ndarray, palette: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """(J, I) label slice -> (J, I, 4) RGBA floats: label colours at OVERLAY_ALPHA, background transparent."""
    rgba = np.zeros(mask.shape + (4,), dtype=float)
    for value, color in palette.items():
        selected = mask == value
        rgba[selected, :3] = np.asarray(color, dtype=float) / 255.0
        rgba[selected, 3] = OVERLAY_ALPHA
    return rgba


def _draw_contours(ax, mask: np.ndarray, palette: dict[int, tuple[int, int, int]], width: float = 1.0) -> None:
    for value, color in palette.items():
        selected = (mask == value).astype(float)
        if selected.any() and not selected.all():
            ax.contour(selected, levels=[0.5], colors=[tuple(c / 255.0 for c in color)], linewidths=width)


def _display_window(image: np.ndarray) -> tuple[float, float]:
    """Grey-level window from the 1st to the 99th percentile of the finite voxels."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [1, 99]))
    return (low, high) if high > low else (low, low + 1.0)


def _fallback_color(value: int) -> tuple[int, int, int]:
    base = DEFAULT_COLORS[(value - 1) % len(DEFAULT_COLORS) + 1]
    return tuple(int(c * 0.6) for c in base)


def _is_number(value) -> bool:
    return isinstance(value, (Real, np.number)) and not isinstance(value, bool)


def _format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (Integral, np.integer)):
        return str(int(value))
    if isinstance(value, (Real, np.floating)):
        return MISSING if math.isnan(float(value)) else f"{float(value):.3f}"
    return str(value)


def _plain_value(value):
    """JSON/CSV-ready scalar: numpy scalars -> Python, NaN -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
