"""How a job's processes are started: a ``typing.Protocol`` so tests (or another host) can inject their own, and the
real implementation on ``subprocess`` that runs ``contrastseg`` under Slicer's own Python.

A process writes one JSON event per line on stdout (see ``ContrastSegLib.training.progress``); stderr goes to the
job's log file, so a chatty process can never block on a full pipe.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence

KILL_GRACE_S = 5.0


class ProcessHandle(Protocol):
    """One started process."""

    def lines(self) -> Iterable[str]:
        """Its stdout, line by line, until it closes (read on a worker thread)."""

    def poll(self) -> int | None:
        """Exit code, or None while it runs."""

    def wait(self, timeout: float | None = None) -> int:
        """Block until it ends; its exit code."""

    def kill_tree(self) -> None:
        """End it and every process it started."""


class ProcessLauncher(Protocol):
    """Starts processes for jobs."""

    def launch(self, command: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> ProcessHandle:
        """Start ``command`` in ``cwd`` with ``env``; stderr appended to ``log_path``."""


class SubprocessHandle:
    """A ``subprocess.Popen`` in its own process group (session), so cancelling ends its children too."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def lines(self) -> Iterable[str]:
        assert self.process.stdout is not None
        yield from self.process.stdout

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def kill_tree(self) -> None:
        if self.process.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.process.pid)], capture_output=True, check=False)
        else:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()


class SubprocessLauncher:
    """The real launcher (``ProcessLauncher``)."""

    def launch(self, command: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> SubprocessHandle:
        with open(log_path, "ab") as log:
            options: dict = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {
                "start_new_session": True}
            process = subprocess.Popen(list(command), cwd=str(cwd), env=dict(env), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8",
                                       errors="replace", bufsize=1, **options)
        return SubprocessHandle(process)


def python_executable() -> str:
    """Slicer's own Python (``PythonSlicer``) inside Slicer, else the running interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def library_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``ContrastSegLib``'s folder first on PYTHONPATH and
    unbuffered output, so the child imports the same library the module uses and reports progress at once."""
    import ContrastSegLib
    env = dict(os.environ if base is None else base)
    library_parent = str(Path(ContrastSegLib.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([library_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def contrastseg_command(*arguments: str) -> list[str]:
    """``[python, -m, ContrastSegLib, *arguments]``."""
    return [python_executable(), "-m", "ContrastSegLib", *arguments]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
