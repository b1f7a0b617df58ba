"""Pre-training while the user annotates, as the panel shows it. With "Pre-train in the background" chosen, a change
of the unlabeled volumes or folder (or of the pre-training settings) starts the background job once the choice has
settled for ``SETTLE_MS``; a ``QTimer`` polls it on the main thread and its status line says what runs and what is
kept. Any other job of the panel pauses it first (the weights reached are kept, the job gets the whole machine) and
it goes on when that job has ended. Nothing here blocks the GUI but a stop, which waits for the current step while
Slicer keeps processing events.

    view = BackgroundView(ui, logic)
    view.follow(parameters)   # after every change of the parameter node
    view.pause(); init = view.checkpoint(); ...; view.resume()
"""

from __future__ import annotations

import qt

from ContrastSegLogic.background_pretraining import STOP_WAIT_S

SETTLE_MS = 1500  # a selection still being ticked does not start (and stop) a job at every click
POLL_MS = 500
SHUTDOWN_WAIT_S = 10.0  # Slicer quitting waits this long for the weights reached, then ends the job
NOT_INSTALLED = ("Pre-training in the background starts once ContrastSeg's packages are installed: press "
                 "Fine-tune or Suggest once to install them")


class BackgroundView:
    """``ui``: the panel's widgets (``backgroundStatusLabel``); ``logic``: the module's logic (its workflow's
    ``background``)."""

    def __init__(self, ui, logic, settle_ms: int = SETTLE_MS, poll_ms: int = POLL_MS):
        self.ui, self.logic = ui, logic
        self.request: dict | None = None  # what the parameters ask to pre-train on, or None
        self.paused = False
        self.settle = qt.QTimer()
        self.settle.setSingleShot(True)
        self.settle.setInterval(settle_ms)
        self.settle.connect("timeout()", self.start)
        self.timer = qt.QTimer()
        self.timer.setInterval(poll_ms)
        self.timer.connect("timeout()", self.poll)

    @property
    def background(self):
        return self.logic.workflow.background

    @property
    def kept(self) -> str:
        """What the background pre-training has kept, e.g. "global GD stopped at step 40 of 10000; ..."."""
        return self.background.kept

    def follow(self, parameters) -> None:
        """The parameters changed: start (after they settle) what they ask for; stop, keeping its weights, what
        they no longer ask for."""
        request = parameters.background_request() if parameters is not None else None
        if request is None:
            self.settle.stop()
            if self.request is not None:
                self.request = None
                self._stop()
            self.show()
            return
        if self.request is None:  # chosen anew: a run that failed before may be tried again
            self.background.failures.clear()
        self.request = request
        if not self.paused:
            self.settle.start()

    def start(self) -> None:
        if self.paused or self.request is None:
            return
        try:
            self.logic.ensure_dependencies(install=False)
        except Exception:  # noqa: BLE001 - not installed yet: nobody asked to install now
            self.ui.backgroundStatusLabel.text = NOT_INSTALLED
            return
        try:
            self.logic.workflow.pretrain_in_background(**self.request)
        except Exception as error:  # noqa: BLE001 - a bad input is said on the status line, not in a dialog
            self.ui.backgroundStatusLabel.text = f"Pre-training in the background cannot start: {error}"
            return
        if self.background.running:
            self.timer.start()
        self.show()

    def poll(self) -> None:
        self.background.poll()
        if not self.background.running:
            self.timer.stop()
        self.show()

    def show(self) -> None:
        wanted = self.request is not None or self.background.running
        self.ui.backgroundStatusLabel.text = self.background.status() if wanted else ""
        self.ui.backgroundStatusLabel.visible = wanted

    def pause(self) -> None:
        """Before another job: the background job stops and keeps its weights, and waits for ``resume``."""
        self.paused = True
        self.settle.stop()
        self._stop()

    def resume(self) -> None:
        self.paused = False
        if self.request is not None:
            self.settle.start()

    def checkpoint(self) -> str | None:
        """The weights kept for what the parameters ask (a running job stopped first), or None."""
        if self.request is None:
            return None
        return self.logic.workflow.background_checkpoint(**self.request)

    def shutdown(self) -> None:
        """The panel goes away (Slicer quits): stop and keep, ended if that takes more than ``SHUTDOWN_WAIT_S``."""
        self.paused = True
        self.settle.stop()
        self._stop(SHUTDOWN_WAIT_S)

    def _stop(self, timeout_s: float = STOP_WAIT_S) -> None:
        if self.background.running:
            self.ui.backgroundStatusLabel.text = "Stopping the background pre-training; its weights are kept..."
            self.background.stop(timeout_s)
        self.timer.stop()
        self.show()
