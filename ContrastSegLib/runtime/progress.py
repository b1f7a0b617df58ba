"""Progress of long jobs: JSON lines on stdout when it is not a terminal (for the Slicer module and scripts),
a tqdm bar on a terminal.

Events: ``started``, ``progress`` (stage, step, total, loss, eta_s), ``checkpoint`` (path, step), ``log``
(message; and ``level`` "warning" on a result the user must act on), ``stopped`` (step, total, signal: a stop request
ended the run early), ``finished`` and ``error`` (message). One JSON object per line, nothing else on that line.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm


class ProgressReporter:
    """Report one stage of ``total`` steps; ``update`` is cheap enough for every training step."""

    def __init__(self, stage: str, total: int, stream: TextIO | None = None, json_lines: bool | None = None,
                 min_interval_s: float = 0.5, enabled: bool = True):
        self.stage, self.total = stage, total
        self.stream = stream if stream is not None else sys.stdout
        self.json_lines = (not _is_tty(self.stream)) if json_lines is None else json_lines
        self.min_interval_s = min_interval_s
        self.enabled = enabled
        self._bar: tqdm | None = None
        self._start = self._last = 0.0
        self._first_step = 0

    def emit(self, event: str, **fields: Any) -> None:
        if self.enabled and self.json_lines:
            record = {"event": event, "stage": self.stage, **{k: _plain(v) for k, v in fields.items()}}
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()

    def started(self, first_step: int = 0, **info: Any) -> None:
        self._start = self._last = time.perf_counter()
        self._first_step = first_step
        self.emit("started", total=self.total, step=first_step, **info)
        if self.enabled and not self.json_lines:
            self._bar = tqdm(total=self.total, initial=first_step, desc=self.stage, file=sys.stderr,
                             dynamic_ncols=True)

    def update(self, step: int, loss: float | None = None, **extra: Any) -> None:
        """``step`` steps of ``total`` are done; events are throttled to one per ``min_interval_s`` (and the last)."""
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", **{k: _short(v) for k, v in extra.items()}, refresh=False)
        if now - self._last < self.min_interval_s and step < self.total:
            return
        self._last = now
        done = step - self._first_step
        eta = (now - self._start) / done * (self.total - step) if done > 0 else None
        self.emit("progress", step=step, total=self.total, loss=loss, eta_s=eta, **extra)

    def log(self, message: str) -> None:
        self._say(message)

    def warning(self, message: str) -> None:
        """A result the user must act on: a ``log`` event with ``level`` "warning"; on a terminal, a ``warning:``
        line."""
        self._say(message, level="warning")

    def _say(self, message: str, level: str | None = None) -> None:
        if not self.enabled:
            return
        if self.json_lines:
            self.emit("log", message=message, **({"level": level} if level else {}))
            return
        line = f"{level}: {message}" if level else message
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def stopped(self, step: int, signal: str) -> None:
        """The run stops early, after ``step`` of ``total`` steps, because ``signal`` asked it to."""
        self.emit("stopped", step=step, total=self.total, signal=signal)

    def checkpoint(self, path: str, step: int) -> None:
        self.emit("checkpoint", path=str(path), step=step)

    def finished(self, **info: Any) -> None:
        self.close()
        self.emit("finished", seconds=time.perf_counter() - self._start, **info)

    def error(self, message: str) -> None:
        self.close()
        self.emit("error", message=message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """JSON-safe value: floats rounded, NaN/Inf as null."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if hasattr(value, "item"):
        return _plain(value.item())
    return value


def _short(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
