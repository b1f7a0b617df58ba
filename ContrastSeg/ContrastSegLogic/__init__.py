"""Qt-free logic of the ContrastSeg Slicer module: scene <-> job folder, background ``contrastseg`` jobs with progress
and cancel, results imported into new nodes. Runs in Slicer and, for tests and scripts, under the ``slicer-core``
wheel (real MRML without Qt)."""

from .classes import SegmentClass
from .errors import JobFailedError, SceneInputError
from .job import Job, JobProgress, JobStep
from .job_folder import JobFolder
from .memory import DevicePlan, plan_device
from .process import ProcessHandle, ProcessLauncher, SubprocessLauncher
from .settings import FinetuneSettings, PretrainSettings
from .workflow import ContrastSegWorkflow

__all__ = [
    "ContrastSegWorkflow", "DevicePlan", "FinetuneSettings", "Job", "JobFailedError", "JobFolder", "JobProgress",
    "JobStep", "PretrainSettings", "ProcessHandle", "ProcessLauncher", "SceneInputError", "SegmentClass",
    "SubprocessLauncher", "plan_device",
]
