"""Training: the loop, its plan, checkpoints and progress reporting."""

from ._checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from ._loop import Checkpointing, DivergenceError, TrainingPlan, TrainingResult, train_module

__all__ = [
    "CHECKPOINT_FILE",
    "Checkpointing",
    "DivergenceError",
    "TrainingPlan",
    "TrainingResult",
    "load_checkpoint",
    "save_checkpoint",
    "train_module",
]
