"""Training: the loop, its plan and progress reporting."""

from ._loop import DivergenceError, TrainingPlan, TrainingResult, train_module

__all__ = ["DivergenceError", "TrainingPlan", "TrainingResult", "train_module"]
