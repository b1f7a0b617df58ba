"""Training: execution plan (device, precision), progress events, checkpoints, the fine-tuning loop and job."""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .finetune import FinetuneConfig, FinetuneResult, finetune
from .precision import ExecutionPlan, plan_execution
from .progress import ProgressReporter

__all__ = [
    "Checkpoint", "ExecutionPlan", "FinetuneConfig", "FinetuneResult", "ProgressReporter", "finetune",
    "load_checkpoint", "plan_execution", "save_checkpoint",
]
