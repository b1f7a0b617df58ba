"""The running job as the panel shows it: one job at a time; the button that started it becomes Cancel and the
other job buttons are disabled; the progress bar, the status line (stage, step, loss, ETA), the log and the Stop
button follow it; a ``QTimer`` polls it on the main thread, where its results are imported. The job's warnings (e.g.
a structure not learned) stay under the status line once it succeeded.

    view = JobView(ui, [ui.finetuneButton, ui.segmentButton], on_end=background.resume)
    view.start(ui.finetuneButton, job, on_success=lambda model: ...)
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import qt
import slicer

POLL_MS = 200
TRAINING_KINDS = ("finetune", "pretrain")


@contextmanager
def shown_errors(what: str) -> Iterator[None]:
    """Any failure of the block is shown in one error dialog (``slicer.util.tryWithErrorDisplay``) and logged,
    and goes no further: a button handler's exception never reaches the console alone."""
    try:
        with slicer.util.tryWithErrorDisplay(f"{what} failed."):
            yield
    except Exception:  # noqa: BLE001 - shown above
        logging.debug("ContrastSeg: %s failed", what, exc_info=True)


class JobView:
    """``buttons``: every button that starts a job (their own label is restored when the job ends); ``on_end``:
    called when a job has ended, whatever its outcome."""

    def __init__(self, ui, buttons, poll_ms: int = POLL_MS, on_end: Callable[[], None] | None = None):
        self.ui, self.buttons, self.on_end = ui, list(buttons), on_end
        self.labels = {button.objectName: button.text for button in self.buttons}
        self.job = None
        self._button = self._on_success = None
        self._shown_messages = 0
        self.timer = qt.QTimer()
        self.timer.setInterval(poll_ms)
        self.timer.connect("timeout()", self.poll)
        ui.stopButton.connect("clicked()", self.stop)

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.done

    def owns(self, button) -> bool:
        """Whether ``button`` started the running job (a click then cancels it)."""
        return self.running and self._button is button

    @contextmanager
    def busy(self, message: str) -> Iterator[None]:
        """Every job button disabled while the block runs (e.g. a package installation)."""
        self._set_enabled(False)
        self.ui.statusLabel.text = message
        slicer.app.processEvents()
        try:
            yield
        finally:
            self._set_enabled(True)
            self.ui.statusLabel.text = ""

    def start(self, button, job, on_success: Callable[[Any], None], message: str = "") -> None:
        self.job, self._button, self._on_success = job, button, on_success
        self._shown_messages = 0
        self.ui.logView.setPlainText("")
        self._log(f"{job.kind} job started ({job.folder.root})" + (f"; {message}" if message else ""))
        for other in self.buttons:
            other.enabled = other is button
        button.text = "Cancel"
        self.ui.stopButton.enabled = job.kind in TRAINING_KINDS
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = message or f"{job.progress.title}: started"
        self.timer.start()

    def cancel(self) -> None:
        if self.running:
            self.job.cancel()
            self.poll()

    def stop(self) -> None:
        if self.running:
            self.job.stop()
            self.ui.stopButton.enabled = False
            self.ui.statusLabel.text = self.job.progress.text()

    def poll(self) -> None:
        job = self.job
        if job is None:
            return
        for event in job.poll():
            if event.get("event") == "error":
                self._log(f"error: {event.get('message')}")
        for message in job.progress.messages[self._shown_messages:]:
            self._log(message)
        self._shown_messages = len(job.progress.messages)
        self.ui.progressBar.value = int(100 * job.progress.fraction)
        self.ui.statusLabel.text = job.progress.text()
        if not job.done:
            self.ui.stopButton.enabled = job.kind in TRAINING_KINDS and not job.progress.stopping
            return
        self._finish(job)

    def _finish(self, job) -> None:
        self.timer.stop()
        self._set_enabled(True)
        self._button.text = self.labels[self._button.objectName]
        self.ui.stopButton.enabled = False
        if job.state == "succeeded":
            self.ui.progressBar.value = 100
            self._log(f"{job.kind} job finished")
            with shown_errors("Showing the results"):
                self._on_success(job)
            if job.warnings:
                warnings = [f"Warning: {warning}" for warning in job.warnings]
                self.ui.statusLabel.text = "\n".join([self.ui.statusLabel.text, *warnings])
        else:
            self.ui.statusLabel.text = job.error
            self._log(job.error)
            if job.state == "failed":
                slicer.util.errorDisplay(job.error, windowTitle="ContrastSeg")
        if self.on_end is not None:
            self.on_end()

    def _set_enabled(self, enabled: bool) -> None:
        for button in self.buttons:
            button.enabled = enabled

    def _log(self, text: str) -> None:
        self.ui.logView.appendPlainText(text)
