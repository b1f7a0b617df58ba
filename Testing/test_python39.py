"""Slicer 5.6 and 5.8 run Python 3.9.10: every file of the library and the module must compile there, and the
torch-free modules the module imports first (settings, budgets, the parameter pack) must run there. torch cannot be
installed for Python 3.9 on the machines that run these tests, so the rest is checked by compiling only."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON39 = next(iter(sorted(Path("~/.pyenv/versions").expanduser().glob("3.9*/bin/python3.9"))),
                None) or shutil.which("python3.9")  # pyenv's shim answers only where 3.9 is activated
pytestmark = pytest.mark.skipif(PYTHON39 is None, reason="no Python 3.9 on this machine")

TORCH_FREE = """
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig, PretrainConfig, command_arguments
from ContrastSegLib.runtime.budget import StepSchedule, parse_duration
import importlib.util, sys
spec = importlib.util.spec_from_file_location("parameters", "ContrastSeg/ContrastSegLogic/parameters.py")
parameters = sys.modules["parameters"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parameters)  # the module's parameter pack alone (its package imports numpy)
FIELDS = parameters.FIELDS
assert command_arguments(FinetuneConfig(time_budget=parse_duration("10m")))
assert PreprocessConfig().crop_size is None and PretrainConfig().check()
schedule = StepSchedule(iterations=10, budget_s=60).start()
assert all(schedule.on_step(step, []) for step in range(1, 10))
print(len(FIELDS))
"""


def run39(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "ContrastSeg")]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([str(PYTHON39), *argv], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


def test_every_file_compiles_under_python_3_9():
    files = [str(p) for folder in ("ContrastSegLib", "ContrastSeg", "examples") for p in (ROOT / folder).rglob("*.py")]
    script = ("import sys\n"
              "for name in sys.argv[1:]:\n"
              "    compile(open(name, encoding='utf-8').read(), name, 'exec')\n")
    done = run39("-c", script, *files)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_torch_free_modules_run_under_python_3_9():
    done = run39("-c", TORCH_FREE)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) > 10
