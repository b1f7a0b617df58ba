"""Qt-free logic of the ContrastSeg Slicer module: scene <-> job folder, background ``contrastseg`` jobs with progress,
stop and cancel, results imported into new nodes, models kept under versioned names, suggestions of what to annotate
next and the review table of a segmentation. Runs in Slicer and, for tests and scripts, under the ``slicer-core``
wheel (real MRML without Qt). Job settings are ``ContrastSegLib.settings``'s."""

from .classes import SegmentClass
from .errors import JobFailedError, SceneInputError
from .job import Job, JobProgress, JobStep
from .job_folder import JobFolder
from .memory import DevicePlan, plan_device
from .process import ProcessHandle, ProcessLauncher, SubprocessLauncher
from .workflow import ContrastSegWorkflow, default_pretraining

__all__ = [
    "ContrastSegWorkflow", "DevicePlan", "Job", "JobFailedError", "JobFolder", "JobProgress", "JobStep",
    "ProcessHandle", "ProcessLauncher", "SceneInputError", "SegmentClass", "SubprocessLauncher",
    "default_pretraining", "plan_device",
]
