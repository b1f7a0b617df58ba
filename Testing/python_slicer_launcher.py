"""A stand-in for ``PythonSlicer``, Slicer's launcher of its Python: a parent process that starts the real
interpreter (``python-real``) as its child, forwards no signal to it and waits for it.

It mirrors CTK's launcher, commontk/AppLauncher ``Base/ctkAppLauncher.cpp`` (v0.1.34-15-gdcb7a7e):
``runProcess`` (lines 668-726) starts the child with ``QProcess::start`` in ``ForwardedChannels`` mode (line 679: the
child writes straight onto the launcher's own stdout and stderr) with ``ForwardedInputChannel`` (line 684); Qt 5's
``QProcessPrivate::execChild`` (qtbase ``src/corelib/io/qprocess_unix.cpp``) calls neither ``setsid`` nor
``setpgid``, so the child stays in the launcher's process group; ``applicationFinished`` (lines 735-750) exits with
the child's code, or ``EXIT_FAILURE`` when it crashed. The launcher installs no signal handler (the repository has no
``signal``/``sigaction`` call): SIGTERM or SIGINT ends it by the default action, and the child runs on, orphaned.

    python python_slicer_launcher.py PROGRAM ARGS...   # runs PROGRAM ARGS... as its child
    install(folder)                                    # folder/PythonSlicer: ``PythonSlicer ARGS`` runs ``python ARGS``

``python_real_of(launcher_pid)`` and ``running(pid)`` let a test follow the child (Linux: they read ``/proc``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def main(command: list[str]) -> int:
    """Run ``command`` as a child sharing this process's group and standard streams; its exit code."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)  # as a C++ program that installs no handler
    code = subprocess.Popen(command).wait()
    return code if code >= 0 else 1  # a child ended by a signal: QProcess::CrashExit -> EXIT_FAILURE


def install(folder: Path) -> Path:
    """Write an executable ``PythonSlicer`` into ``folder`` that runs this interpreter's Python through
    :func:`main`, as Slicer's ``PythonSlicer`` runs ``python-real``; put ``folder`` first on PATH to use it."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "PythonSlicer"
    script.write_text(f"#!{sys.executable}\n"
                      "import sys\n"
                      f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
                      "from python_slicer_launcher import main\n"
                      "sys.exit(main([sys.executable, *sys.argv[1:]]))\n", encoding="utf-8")
    script.chmod(0o755)
    return script


def _stat(pid: int | str) -> list[str]:
    """Fields of ``/proc/<pid>/stat`` after the command name: state, parent, group, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def python_real_of(launcher_pid: int) -> int:
    """The pid of the (one) child of ``launcher_pid``."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(_stat(entry.name)[1]) == launcher_pid:
                return int(entry.name)
        except (OSError, IndexError):
            continue  # ended meanwhile
    raise LookupError(f"process {launcher_pid} has no child")


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is no zombie (an orphan's exit that no parent has collected yet: some
    containers' init process never does)."""
    try:
        return _stat(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
