"""Pre-training while the user annotates: the chain of pre-training stages runs as a low-priority background job on
the unlabeled volumes, its checkpoints kept per set of volumes and settings (``pretraining_cache``). A fine-tune (or
any other job) first stops it: the running stage writes the weights it reached and the job gets the whole machine;
the next start goes on where it stopped (``pretrain --continue``), never from scratch.

    background = BackgroundPretraining(workflow)
    cache = background.plan(unlabeled=[scan2, scan3], stages=default_pretraining())
    background.start(cache)            # returns at once; poll() hands its events over on the caller's thread
    ...                                # the user annotates
    init = background.take(cache)      # stopped, its weights kept: the checkpoint to fine-tune from (or None)
"""

from __future__ import annotations

from typing import Callable, Sequence

from ContrastSegLib.runtime.priority import BACKGROUND, PRIORITY_VARIABLE
from ContrastSegLib.settings import DEFAULT_CHANNELS, FinetuneConfig, PreprocessConfig, PretrainConfig

from . import scene_io
from .errors import JobFailedError, SceneInputError
from .job import Job
from .job_folder import JobFolder
from .pretraining_cache import PretrainingCache

STOP_WAIT_S = 120.0  # a stop ends the current step and writes; a process still reading its volumes is ended after it
KIND = "pretrain-background"


class BackgroundPretraining:
    """``workflow``: the module's ``ContrastSegWorkflow`` (models and jobs folders, launcher, environment, checks,
    ``process_events`` while a stop is waited for)."""

    def __init__(self, workflow):
        self.workflow = workflow
        self.job: Job | None = None
        self.cache: PretrainingCache | None = None
        self.kept, self.ready = "", False  # what the cache holds, read when a run starts or ends (not at every poll)
        self.failures: dict[str, str] = {}  # cache key -> why its run failed: not started again by itself

    @property
    def running(self) -> bool:
        return self.job is not None and not self.job.done

    def plan(self, unlabeled: Sequence = (), folders: Sequence[str] = (), stages: Sequence[PretrainConfig] = (),
             preprocess: PreprocessConfig = PreprocessConfig(), channels: Sequence[int] = DEFAULT_CHANNELS,
             device: str = "auto") -> PretrainingCache:
        """The kept pre-training of these volumes and settings, every input checked as for "Pre-train now"."""
        volumes = [scene_io.checked_scalar_volume(v) for v in unlabeled]
        if not volumes and not folders:
            raise SceneInputError("pre-training needs unlabeled volumes: select scene volumes or a folder of scans")
        device = self.workflow._device(device, FinetuneConfig.batch_size, preprocess, channels)
        stages = self.workflow._checked_stages(stages, preprocess, channels, device,
                                               None if folders else len(volumes))
        return PretrainingCache.of(self.workflow.models_dir, volumes, folders, stages, preprocess, channels)

    def start(self, cache: PretrainingCache, on_event: Callable[[Job, dict], None] | None = None) -> Job | None:
        """Pre-train ``cache`` in the background from where it got to (another running pre-training is stopped and
        kept first); None when every stage has finished, or when its last run failed (``failures``)."""
        if self.running and self.cache is not None and self.cache.key == cache.key:
            return self.job
        self.stop()
        self.cache, self.job = cache, None
        if cache.key in self.failures:
            return None
        states = cache.states()  # each stage's checkpoint read once
        steps = cache.steps(states)
        self._remember(cache, states)
        if not steps:
            cache.drop_inputs()
            return None
        env = {**self.workflow.env, PRIORITY_VARIABLE: BACKGROUND}

        def finished(job: Job) -> str | None:
            self._remember(cache)
            if self.ready:
                cache.drop_inputs()
            path = cache.checkpoint()
            return str(path) if path else None
        self.job = Job(KIND, JobFolder.create(self.workflow.jobs_dir, KIND), steps, self.workflow.launcher, env,
                       on_success=finished, on_event=on_event).start()
        return self.job

    def poll(self) -> list[dict]:
        """Hand over the running job's events (on this thread); a failure is remembered and not retried."""
        if self.job is None:
            return []
        events = self.job.poll()
        self._note_failure()
        return events

    def stop(self, timeout_s: float = STOP_WAIT_S) -> None:
        """Stop a running pre-training and keep its weights: the stage that runs writes what it reached, the later
        ones wait for the next start. Waits for it (the workflow's ``process_events`` meanwhile), at most
        ``timeout_s``, then ends it."""
        job = self.job
        if job is None or job.done:
            return
        job.stop(rest=False)
        try:
            job.wait(timeout=timeout_s, process_events=self.workflow.process_events)
        except (TimeoutError, JobFailedError):
            pass
        self._note_failure()
        if self.cache is not None:
            self._remember(self.cache)

    def take(self, cache: PretrainingCache) -> str | None:
        """The weights to start from for ``cache``'s volumes and settings, a running pre-training stopped (and kept)
        first; None when it has written nothing yet."""
        self.stop()
        path = cache.checkpoint()
        return str(path) if path else None

    def status(self) -> str:
        """One line for the panel: what runs now and what is kept."""
        if self.cache is None:
            return ""
        if self.running:
            return f"Pre-training in the background: {self.job.progress.text()}. Kept: {self.kept}"
        if self.cache.key in self.failures:
            return f"Pre-training in the background failed: {self.failures[self.cache.key]}"
        return f"Background pre-training {'ready' if self.ready else 'paused'}: {self.kept}"

    def _remember(self, cache: PretrainingCache, states: list | None = None) -> None:
        states = cache.states() if states is None else states
        self.kept = "; ".join(state.describe() for state in states)
        self.ready = all(state.state == "finished" for state in states)

    def _note_failure(self) -> None:
        if self.job is not None and self.job.state == "failed" and self.cache is not None:
            self.failures[self.cache.key] = self.job.error or "no message"
