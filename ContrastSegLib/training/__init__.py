"""Training: the fine-tuning and pre-training loops and their jobs (files to checkpoint); the execution plan,
checkpoints and progress events they use live in ``runtime``, their settings in ``settings``."""

from .finetune import FinetuneResult, finetune

__all__ = ["FinetuneResult", "finetune"]
