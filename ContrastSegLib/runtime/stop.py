"""Stop and keep: SIGINT, SIGTERM (and SIGBREAK on Windows) ask a training loop to stop after its current step, so
that the job writes the weights reached as a valid checkpoint and exits normally.

The CLI runs every command inside :func:`stop_on_signals`. Until a loop calls :func:`keep_on_stop`, a signal
interrupts as ``KeyboardInterrupt`` (nothing is worth keeping yet). After it, the first signal only sets the request
that :func:`stop_requested` returns and the loop polls each step; a further signal interrupts, except inside
:func:`shielded` (a checkpoint being written), which it cannot break. Where no signal reaches the process (a GUI's
child without a console on Windows), the file named by ``$CONTRASTSEG_STOP_FILE`` appearing asks the same; one that
was there before the process started is stale (an earlier run's request) and is removed, with a line on stderr, when
the loop starts. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterator

from ..errors import ContrastSegError
from .process_start import process_age_s

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name))
STOP_FILE_VARIABLE = "CONTRASTSEG_STOP_FILE"
STOP_FILE = "stop file"  # what asked to stop, when the stop file did
STALE_MARGIN_S = 0.1  # a stop file this close to the process start counts as meant for it (clock granularity)


@dataclass(frozen=True)
class Stopped:
    """A run that stopped early: after ``step`` of ``planned`` steps, asked by ``signal`` (e.g. "SIGTERM")."""

    step: int
    planned: int
    signal: str

    def to_json(self) -> dict:
        return asdict(self)


class _State:
    """What the handler knows: whether a loop keeps its weights on a stop, the request, open shields."""

    def __init__(self, installed: bool = False):
        self.installed, self.keeping, self.requested = installed, False, None
        self.shields, self.deferred = 0, False


_state = _State()


def _handle(signum: int, frame) -> None:
    if _state.keeping and _state.requested is None:
        _state.requested = signal.Signals(signum).name
    elif _state.shields:
        _state.deferred = _state.deferred or not _state.keeping
    else:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Handle the stop signals inside the block (main thread only; elsewhere a no-op); the previous handlers come
    back afterwards."""
    global _state
    if _state.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    _state = _State(installed=True)
    for number in SIGNALS:
        signal.signal(number, _handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        _state = _State()


def keep_on_stop() -> None:
    """Called by a training loop as it starts: from now on a signal asks it to stop and keep its weights. A stale
    stop file goes first (:func:`remove_stale_stop_file`)."""
    remove_stale_stop_file()
    _state.keeping = True


def remove_stale_stop_file() -> None:
    """Remove the stop file if it is older than this process: an earlier run's request, which would otherwise end
    this run, and every later one, after its first step. A file that appears after the start is honoured, even
    before training has started (the Slicer module removes it before each launch, and a click on Stop may come
    while the process is still reading its data)."""
    path = os.environ.get(STOP_FILE_VARIABLE)
    try:
        if not path or os.stat(path).st_mtime >= process_started() - STALE_MARGIN_S:
            return
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise ContrastSegError(f"{path}: a stop file left by an earlier run, which would stop this one, cannot be "
                               f"removed ({error.strerror}); delete it, or set ${STOP_FILE_VARIABLE} to another path")
    print(f"contrastseg: warning: removed the stop file {path}: it was there before this run started (left by an "
          "earlier run), so it does not stop this one", file=sys.stderr, flush=True)


def process_started() -> float:
    """When this process started, in seconds since the epoch (``process_start``)."""
    return time.time() - process_age_s()


def end_if_stopped() -> None:
    """For jobs made of several trainings (benchmark, compare, demo): after a stop request, the stopped training's
    weights are not a finished result, and later trainings would stop at once; so end the whole job here as an
    interruption (``KeyboardInterrupt``: exit status 130), keeping only what had finished."""
    if stop_requested() is not None:
        raise KeyboardInterrupt


def stop_requested() -> str | None:
    """What asked the training loop to stop: a signal's name ("SIGTERM"), :data:`STOP_FILE`, or None."""
    if _state.requested is None and _state.keeping:
        path = os.environ.get(STOP_FILE_VARIABLE)
        if path and os.path.exists(path):
            _state.requested = STOP_FILE
    return _state.requested


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A block no signal interrupts (writing a checkpoint); one that would have interrupted outside a training
    loop does so when the block ends."""
    _state.shields += 1
    try:
        yield
    finally:
        _state.shields -= 1
    if not _state.shields and _state.deferred:
        _state.deferred = False
        raise KeyboardInterrupt
