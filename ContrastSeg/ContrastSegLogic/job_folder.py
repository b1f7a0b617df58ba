"""The folder of one background job: ``inputs/`` (volumes and label maps exported from the scene, a ``labeled.json``
manifest), ``outputs/`` (what the processes write), ``log.txt`` (their stderr) and ``job.json`` (what was asked, the
commands, the state: running / succeeded / failed / cancelled)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from .classes import SegmentClass, manifest_labels

STATES = ("created", "running", "succeeded", "failed", "cancelled")


class JobFolder:
    """``JobFolder.create(base, "finetune")`` -> ``base/20261122-101500-finetune-1a2b3c/``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.inputs = self.root / "inputs"
        self.outputs = self.root / "outputs"
        self.log = self.root / "log.txt"
        self.record_path = self.root / "job.json"

    @classmethod
    def create(cls, base: str | os.PathLike, kind: str) -> "JobFolder":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = cls(Path(base) / f"{stamp}-{kind}-{uuid.uuid4().hex[:6]}")
        folder.inputs.mkdir(parents=True)
        folder.outputs.mkdir()
        folder.log.touch()
        folder.update(kind=kind, state="created", created=stamp)
        return folder

    def record(self) -> dict[str, Any]:
        return json.loads(self.record_path.read_text(encoding="utf-8")) if self.record_path.exists() else {}

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` into ``job.json`` (written whole: a reader never sees half a file)."""
        data = {**self.record(), **fields}
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".job.", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, default=str)
        os.replace(temporary, self.record_path)

    def write_manifest(self, cases: Sequence[dict[str, str]], classes: Sequence[SegmentClass] | None = None,
                       name: str = "labeled.json") -> Path:
        """A ContrastSeg manifest of ``cases`` ({"id", "image", optional "label"}, paths relative to ``inputs/``)
        with the class names and colours."""
        data: dict[str, Any] = {"cases": list(cases)}
        if classes:
            data["labels"], data["colors"] = manifest_labels(classes)
        path = self.inputs / name
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path

    @contextmanager
    def removed_on_error(self) -> Iterator[None]:
        """Export into this folder; if anything fails, the folder goes away (the scene was only read)."""
        try:
            yield
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def finish(self, state: str, message: str = "", remove_files: bool = True) -> None:
        """Record the final ``state`` and delete the inputs (copies of the user's scans) and outputs, whatever the
        outcome: a succeeded job has delivered its results by now. The record and the log stay. ``remove_files``
        False keeps them (a process that did not end may still write there)."""
        assert state in STATES
        self.update(state=state, message=message, finished=time.strftime("%Y%m%d-%H%M%S"))
        if remove_files:
            shutil.rmtree(self.inputs, ignore_errors=True)
            shutil.rmtree(self.outputs, ignore_errors=True)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])
