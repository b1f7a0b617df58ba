"""ContrastSegLib: contrastive pre-training, few-shot fine-tuning and prediction for 2-D UNet segmentation.

The pipeline, one sub-package per stage::

    io -> data -> preprocess -> augment -> models -> losses -> training -> inference -> evaluation

``settings`` holds every setting with its default, check and command-line flag (no torch); ``runtime`` what
training and inference share (execution plan, checkpoints, progress events, stop requests). No Slicer, Qt or VTK
import anywhere in this package.
"""

from .errors import ContrastSegError

__version__ = "0.1.0"

__all__ = ["ContrastSegError", "__version__"]
