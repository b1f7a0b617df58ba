"""How a job's processes are started: a ``typing.Protocol`` so tests (or another host) can inject their own, and the
real implementation on ``subprocess`` that runs ``contrastseg`` under Slicer's own Python.

A process writes one JSON event per line on stdout (see ``ContrastSegLib.runtime.progress``); stderr goes to the
job's log file, so a chatty process can never block on a full pipe. On Windows the process gets no console window
(closing one would kill the job) and a process group of its own, as ``slicer.util.launchConsoleProcess`` hides its
consoles. "Stop and keep" reaches the process through a stop file (``$CONTRASTSEG_STOP_FILE``), on every platform:
a GUI program has no console to send CTRL+BREAK to, and a file asked for before training has started is honoured
at its first step, where a signal would have interrupted the process.

Cancel ends the whole process group, not only the process started: in Slicer that is ``PythonSlicer``, CTK's
launcher, which runs ``python-real`` as its child in the launcher's process group and forwards no signal to it
(commontk/AppLauncher ``Base/ctkAppLauncher.cpp`` v0.1.34-15-gdcb7a7e, ``runProcess`` lines 668-726; no signal
handler anywhere). The launcher dies at the first SIGTERM while python-real, which takes SIGTERM as "stop and keep",
still finishes its step and writes; so the grace time is waited out on every process of the group, SIGKILL follows
for those still running, and only then does the job's folder go.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence

from ContrastSegLib.runtime.stop import STOP_FILE_VARIABLE

KILL_GRACE_S = 5.0


class ProcessHandle(Protocol):
    """One started process."""

    def lines(self) -> Iterable[str]:
        """Its stdout, line by line, until it closes (read on a worker thread)."""

    def poll(self) -> int | None:
        """Exit code, or None while it runs."""

    def wait(self, timeout: float | None = None) -> int:
        """Block until it ends; its exit code."""

    def interrupt(self) -> None:
        """Ask it to stop early and keep its results."""

    def kill_tree(self) -> bool:
        """End it and every process it started; False if one may still be running (its files must stay)."""


class ProcessLauncher(Protocol):
    """Starts processes for jobs."""

    def launch(self, command: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> ProcessHandle:
        """Start ``command`` in ``cwd`` with ``env``; stderr appended to ``log_path``."""


class SubprocessHandle:
    """A ``subprocess.Popen`` in its own process group (session), so cancelling ends its children too."""

    def __init__(self, process: subprocess.Popen, stop_file: Path | None = None):
        self.process, self.stop_file = process, stop_file

    def lines(self) -> Iterable[str]:
        assert self.process.stdout is not None
        yield from self.process.stdout

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self._remove_stop_file()
        return code

    def interrupt(self) -> None:
        if self.process.poll() is None and self.stop_file is not None:
            self.stop_file.touch()

    def kill_tree(self) -> bool:
        """SIGTERM to the process group, SIGKILL to what still runs after ``KILL_GRACE_S``; on Windows ``taskkill``
        of the tree, without a console window of its own."""
        if os.name == "nt":
            ended = self._kill_windows_tree()
        else:
            ended = _signal_group(self.process, signal.SIGTERM) or _signal_group(self.process, signal.SIGKILL)
        if self.process.poll() is not None:
            self.wait()
        return ended

    def _kill_windows_tree(self) -> bool:
        if self.process.poll() is None:  # taskkill is a console program: without CREATE_NO_WINDOW one flashes up
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.process.pid)], capture_output=True, check=False,
                           creationflags=getattr(subprocess, "CREATE_NO_WINDOW", CREATE_NO_WINDOW))
        try:
            self.process.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
        return self.process.poll() is not None

    def _remove_stop_file(self) -> None:
        """The process has ended: its stop file (if a stop was asked) is of no more use in the job's folder."""
        if self.stop_file is not None:
            self.stop_file.unlink(missing_ok=True)


class SubprocessLauncher:
    """The real launcher (``ProcessLauncher``)."""

    def launch(self, command: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> SubprocessHandle:
        stop_file = Path(cwd) / STOP_FILE_NAME
        stop_file.unlink(missing_ok=True)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(list(command), cwd=str(cwd), env={**env, STOP_FILE_VARIABLE: str(stop_file)},
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
                                       encoding="utf-8", errors="replace", bufsize=1, **popen_options(os.name))
        return SubprocessHandle(process, stop_file)


STOP_FILE_NAME = "stop-requested"


def popen_options(os_name: str) -> dict:
    """``Popen`` keywords: a session of its own on POSIX (cancel ends the whole tree); on Windows no console window
    (CREATE_NO_WINDOW, and a hidden window as Slicer's launchConsoleProcess asks) and a new process group."""
    if os_name != "nt":
        return {"start_new_session": True}
    options = {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", CREATE_NO_WINDOW) |
               getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", CREATE_NEW_PROCESS_GROUP)}
    if hasattr(subprocess, "STARTUPINFO"):  # only on Windows
        info = subprocess.STARTUPINFO()
        info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        info.wShowWindow = subprocess.SW_HIDE
        options["startupinfo"] = info
    return options


CREATE_NO_WINDOW, CREATE_NEW_PROCESS_GROUP = 0x08000000, 0x00000200  # winbase.h, for reading flags elsewhere


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


def _signal_group(process: subprocess.Popen, sig: int) -> bool:
    """Send ``sig`` to the group that ``process`` leads (``start_new_session``: its id is the process's) and wait
    up to ``KILL_GRACE_S`` for every process of the group to end; whether they did."""
    group = process.pid
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # a member that is no longer ours to signal
        return False
    deadline = time.monotonic() + KILL_GRACE_S
    while process.poll() is None or _group_running(group):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _group_running(group: int) -> bool:
    """Whether a process of ``group`` still runs. On Linux a zombie does not count: an orphaned python-real that has
    ended stays one until the init process collects it, which some containers' init never does."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _parent, member_group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        if int(member_group) == group and state != "Z":
            return True
    return False
