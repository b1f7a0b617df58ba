"""A background job: one or more ``contrastseg`` processes run one after the other, their JSON progress events read on
a worker thread and handed to the caller on its own (main) thread by ``poll()``, a cancel that ends the whole process
tree, and ``wait()`` for scripts.

The worker thread only reads lines; every callback (progress display, importing results into the scene) runs inside
``poll()``/``wait()``, i.e. on the thread that owns the MRML scene. ``stop()`` asks the running training process to
end early and keep the weights it reached (the job then goes on with its next step, or, with ``rest=False``, ends
there and succeeds); ``cancel()`` ends everything and keeps nothing. Whatever the outcome, the job's inputs (copies of the user's scans) and outputs are deleted when it
ends; its record and log stay.

    job = Job("finetune", folder, [step_a, step_b], SubprocessLauncher(), on_success=import_results)
    job.start()
    ...  # GUI: a QTimer calls job.poll(); scripts: job.wait()
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import JobFailedError
from .job_folder import JobFolder
from .process import ProcessHandle, ProcessLauncher

_END = object()  # the reader thread's "stdout closed" marker


@dataclass(frozen=True)
class JobStep:
    """One process of a job: what it does (shown to the user), its command line, and what to do with its output as
    soon as it succeeded (``after(job)``; e.g. keep a checkpoint that a later step's failure must not take away)."""

    title: str
    command: Sequence[str]
    after: Callable[["Job"], None] | None = None


@dataclass
class JobProgress:
    """What the progress bar shows: step i of n steps, the current stage's step/total, loss and ETA."""

    step_index: int = 0
    step_count: int = 1
    title: str = ""
    step: int = 0
    total: int = 0
    loss: float | None = None
    eta_s: float | None = None
    messages: list[str] = field(default_factory=list)
    stopping: bool = False

    @property
    def fraction(self) -> float:
        """0..1 over the whole job."""
        inner = self.step / self.total if self.total else 0.0
        return min(1.0, (self.step_index + inner) / max(self.step_count, 1))

    def text(self) -> str:
        parts = [f"{self.title} ({self.step_index + 1}/{self.step_count})"]
        if self.total:
            parts.append(f"step {self.step}/{self.total}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.eta_s is not None:
            parts.append(f"ETA {_duration(self.eta_s)}")
        if self.stopping:
            parts.append("stopping and keeping the weights reached")
        return ", ".join(parts)


class Job:
    """States: created -> running -> succeeded | failed | cancelled. ``result`` is what ``on_success`` returned;
    ``warnings`` the messages of the ``log`` events with ``level`` "warning" (e.g. a structure not learned)."""

    def __init__(self, kind: str, folder: JobFolder, steps: Sequence[JobStep], launcher: ProcessLauncher,
                 env: dict[str, str], on_success: Callable[["Job"], Any] | None = None,
                 on_event: Callable[["Job", dict], None] | None = None):
        self.kind, self.folder, self.steps = kind, folder, list(steps)
        self.launcher, self.env = launcher, env
        self.on_success, self.on_event = on_success, on_event
        self.state = "created"
        self.result: Any = None
        self.error: str | None = None
        self.warnings: list[str] = []
        self.progress = JobProgress(step_count=len(self.steps))
        self._events: queue.Queue = queue.Queue()
        self._handle: ProcessHandle | None = None
        self._index = -1
        self._last_error_event: str | None = None
        self._skip_rest = False

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    def start(self) -> "Job":
        self.folder.update(state="running", steps=[{"title": s.title, "command": list(s.command)} for s in self.steps])
        self.state = "running"
        self._start_next()
        return self

    def poll(self) -> list[dict]:
        """Hand over the events that arrived (callbacks run here), start the next step when one ends, and finish the
        job after the last; returns the events handled."""
        handled = []
        while not self.done:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event is _END:
                self._step_ended()
                continue
            self._handle_event(event)
            handled.append(event)
        return handled

    def wait(self, timeout: float | None = None, interval: float = 0.05,
             process_events: Callable[[], None] | None = None) -> Any:
        """Run until the job ends, polling on this thread; its result, or ``JobFailedError``/``TimeoutError``.
        ``process_events`` (Slicer: ``slicer.app.processEvents``) runs between polls, so a GUI waiting here stays
        responsive."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            self.poll()
            if process_events is not None:
                process_events()
            if deadline is not None and time.monotonic() > deadline and not self.done:
                self.cancel()
                raise TimeoutError(f"{self.kind} job did not finish within {timeout} s; it was cancelled")
            time.sleep(interval)
        if self.state != "succeeded":
            raise JobFailedError(self.error or f"{self.kind} job was {self.state}")
        return self.result

    def stop(self, rest: bool = True) -> None:
        """Ask the running process to finish its training stage now and keep the weights it reached; ``rest``
        False: the steps after it are not run, and the job succeeds when it has ended."""
        if self.done or self._handle is None:
            return
        self._skip_rest = self._skip_rest or not rest
        self.progress.stopping = True
        self._handle.interrupt()

    def cancel(self) -> None:
        """End the running process tree; nothing is imported, inputs and partial outputs are removed once every
        process of it has ended."""
        if self.done:
            return
        self.state = "cancelled"
        ended = self._handle is None or self._handle.kill_tree() is not False  # None: a handle that cannot tell
        self.error = f"{self.kind} job was cancelled"
        if ended:
            self.folder.finish("cancelled", self.error)
        else:  # a process that may still write there: its files stay, the record says so
            self.folder.finish("cancelled", f"{self.error}; a process of it did not end, so {self.folder.root} "
                               "was kept: delete it once that process is gone", remove_files=False)

    def _start_next(self) -> None:
        self._index += 1
        step = self.steps[self._index]
        self.progress.step_index, self.progress.title = self._index, step.title
        self.progress.step = self.progress.total = 0
        self.progress.loss = self.progress.eta_s = None
        self.progress.stopping = False
        self._handle = self.launcher.launch(step.command, self.folder.root, self.env, self.folder.log)
        threading.Thread(target=self._read, args=(self._handle,), daemon=True, name=f"contrastseg-{self.kind}").start()

    def _read(self, handle: ProcessHandle) -> None:
        try:
            for line in handle.lines():
                line = line.strip()
                if line:
                    self._events.put(_parse(line))
        finally:
            self._events.put(_END)

    def _handle_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind in ("progress", "started"):
            self.progress.step = int(event.get("step") or 0)
            self.progress.total = int(event.get("total") or self.progress.total)
            if event.get("loss") is not None:
                self.progress.loss = float(event["loss"])
            self.progress.eta_s = event.get("eta_s")
        elif kind == "log" and event.get("level") == "warning":
            self.warnings.append(str(event.get("message")))
            self.progress.messages.append(f"warning: {event.get('message')}")
        elif kind == "log":
            self.progress.messages.append(str(event.get("message")))
        elif kind == "stopped":
            self.progress.messages.append(f"{self.steps[self._index].title}: stopped early at step "
                                          f"{event.get('step')} of {event.get('total')}; its weights are kept")
        elif kind == "error":
            self._last_error_event = str(event.get("message"))
        if self.on_event is not None:
            self.on_event(self, event)

    def _step_ended(self) -> None:
        code = self._handle.wait() if self._handle is not None else 1
        if self.done:
            return
        if code != 0:
            detail = self._last_error_event or self.folder.log_tail(3) or "no message"
            self._fail(f"{self.steps[self._index].title} failed (exit {code}): {detail}")
            return
        after = self.steps[self._index].after
        if after is not None:
            try:
                after(self)
            except Exception as error:  # noqa: BLE001 - becomes the job's error
                self._fail(str(error) or type(error).__name__)
                return
        if self._index + 1 < len(self.steps) and not self._skip_rest:
            self._start_next()
        else:
            try:
                self.result = self.on_success(self) if self.on_success is not None else None
            except Exception as error:  # noqa: BLE001 - the importer's error becomes the job's error
                self._fail(str(error) or type(error).__name__)
                return
            self.state = "succeeded"
            self.folder.finish("succeeded")

    def _fail(self, message: str) -> None:
        self.state, self.error = "failed", message
        self.folder.finish("failed", message)


def _parse(line: str) -> dict:
    """A JSON event, or a plain line of output wrapped as a ``log`` event."""
    try:
        event = json.loads(line)
    except ValueError:
        return {"event": "log", "message": line}
    return event if isinstance(event, dict) else {"event": "log", "message": line}


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
