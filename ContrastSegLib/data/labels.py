"""The classes a model segments: label values, names and colours, in class-index order (index 0 = background)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..errors import ContrastSegError

MAX_CLASSES = 255  # class indices 0..254: index 255 marks ignored pixels (training.self_training.IGNORE)

# A colour per structure, cycled: red, green, blue, yellow, cyan, magenta, orange, purple.
DEFAULT_COLORS = ((230, 60, 60), (60, 200, 80), (70, 110, 235), (240, 210, 60), (60, 210, 220), (220, 80, 210),
                  (245, 140, 40), (150, 90, 220))


def clean_name(name: str) -> str:
    """A label name as it may reach a terminal, a log line or a table: control and other unprintable characters
    (escape sequences, line breaks, bidirectional overrides) removed — whitespace among them becomes a space —
    and runs of spaces collapsed. Every name read from a file passes through here."""
    text = "".join(c if c.isprintable() else " " if c.isspace() else "" for c in str(name))
    return " ".join(text.split())


@dataclass(frozen=True)
class LabelSet:
    """values[i] is the label value of class i; names and colours (RGB 0..255) likewise; values[0] == 0."""

    values: tuple[int, ...]
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    @classmethod
    def build(cls, values: Iterable[int], names: dict[int, str] | None = None,
              colors: dict[int, tuple[int, int, int]] | None = None) -> "LabelSet":
        ordered = sorted(set(int(v) for v in values) | {0})
        names = names or {}
        colors = colors or {}
        return cls(
            values=tuple(ordered),
            names=tuple(clean_name(names.get(v, "")) or ("background" if v == 0 else f"label_{v}") for v in ordered),
            colors=tuple(tuple(colors.get(v, (0, 0, 0) if v == 0 else DEFAULT_COLORS[(i - 1) % len(DEFAULT_COLORS)]))
                         for i, v in enumerate(ordered)),
        )

    @property
    def num_classes(self) -> int:
        return len(self.values)

    @property
    def foreground(self) -> dict[int, str]:
        """{value: name} of the structures (background left out)."""
        return {v: n for v, n in zip(self.values, self.names) if v != 0}

    def to_json(self) -> dict:
        return {"values": list(self.values), "names": list(self.names), "colors": [list(c) for c in self.colors]}

    @classmethod
    def from_json(cls, data: dict, source: str = "checkpoint") -> "LabelSet":
        try:
            return cls(tuple(int(v) for v in data["values"]), tuple(clean_name(n) for n in data["names"]),
                       tuple(tuple(int(x) for x in c) for c in data["colors"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ContrastSegError(f"{source}: label description is damaged ({error}); train the model again") from None
