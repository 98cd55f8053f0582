"""The training loop (MODEL.md §7): RMSprop, ReduceLROnPlateau, early stopping, best weights.

The loop knows the module's :meth:`loss` and the data's :meth:`minibatch`; nothing about AnnData.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import (
    LabelledPool,
    balanced_epoch,
    default_batch_size,
    sequential_batches,
    train_val_split,
)
from ..module import LOSS_TERMS, LossWeights, MMAAVIModule
from ._progress import Progress

logger = logging.getLogger(__name__)


@dataclass
class TrainingPlan:
    """Objective and schedule of one training run (resolved values are stored with the model)."""

    max_epochs: int = 300
    lr: float = 2e-3
    batch_size: int | None = None
    validation_size: float = 0.1
    seed: int = 0
    lr_factor: float = 0.1
    lr_patience: int = 5
    max_lr_cuts: int = 3
    early_stopping_patience: int = 10
    #: share of labelled cells in each minibatch (semi-supervised mode)
    labelled_fraction: float = 0.2
    weights: LossWeights = field(default_factory=LossWeights)


@dataclass
class TrainingResult:
    """What a run produced besides the weights."""

    history: list[dict[str, float]]
    best_epoch: int
    stop_reason: str
    batch_size: int
    n_train: int
    n_validation: int


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite."""


def _scalars(out) -> dict[str, float]:
    """The loss terms and the monitored objective of one minibatch as floats."""
    values = {k: float(out.terms[k].detach()) for k in LOSS_TERMS}
    values["monitor"] = float(out.monitor.detach())
    return values


def _check_finite(terms: dict[str, float], epoch: int) -> None:
    for name, value in terms.items():
        if not math.isfinite(value):
            raise DivergenceError(
                f"Training diverged at epoch {epoch}: loss term '{name}' is {value}. "
                "The best weights so far were restored. Try a smaller learning rate (lr=...), "
                "check the input counts, or use another likelihood for that modality."
            )


def _evaluate(module, data, idx: np.ndarray, batch_size: int, weights, device) -> dict[str, float]:
    module.eval()
    sums = dict.fromkeys((*LOSS_TERMS, "monitor"), 0.0)
    with torch.no_grad():
        for chunk in sequential_batches(len(idx), batch_size):
            batch = _to_device(data.minibatch(idx[chunk]), device)
            for k, v in _scalars(module.loss(batch, weights)).items():
                sums[k] += v * len(chunk)
    return {k: v / len(idx) for k, v in sums.items()}


@contextmanager
def _deterministic(enabled: bool):
    """Deterministic torch kernels while training on CPU, restored afterwards.

    With more than one CPU thread, the backward pass of indexing with repeated indices (the
    per-batch decoder parameters, the sampled graph edges) accumulates in a thread-dependent
    order; the deterministic kernels make a seeded run repeatable whatever the thread count.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def train_module(
    module: MMAAVIModule,
    data,
    plan: TrainingPlan,
    device: torch.device,
    progress: str = "auto",
) -> TrainingResult:
    """Train ``module`` on ``data`` (a :class:`mmaavi.data.MosaicData`) in place.

    The weights with the best monitored loss (validation when there is a validation split, else
    training) are restored at the end, whatever stopped the run. On CPU the run is deterministic
    for a given seed.
    """
    with _deterministic(device.type == "cpu"):
        return _train(module, data, plan, device, progress)


def _train(
    module: MMAAVIModule,
    data,
    plan: TrainingPlan,
    device: torch.device,
    progress: str,
) -> TrainingResult:
    torch.manual_seed(plan.seed)
    rng = np.random.default_rng(plan.seed)
    train_idx, val_idx = train_val_split(data.batch, plan.validation_size, plan.seed)
    batch_size = plan.batch_size or default_batch_size(len(train_idx))
    logger.info(
        "Training on %d cells (validation %d), batch size %d, device %s",
        len(train_idx),
        len(val_idx),
        batch_size,
        device,
    )
    module.to(device)
    optimizer = torch.optim.RMSprop(module.parameters(), lr=plan.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=plan.lr_factor, patience=plan.lr_patience
    )
    history: list[dict[str, float]] = []
    best = (math.inf, 0, {k: v.detach().clone() for k, v in module.state_dict().items()})
    lr_cuts = 0
    stop_reason = f"reached max_epochs={plan.max_epochs}"
    bar = Progress(plan.max_epochs, progress)
    train_batches = data.batch[train_idx]
    labelled = train_idx[data.labels[train_idx] >= 0]
    pool = LabelledPool(labelled, plan.labelled_fraction, rng) if labelled.size else None
    if data.label_categories is not None and pool is None:
        logger.warning("No labelled cell fell in the training split; training is unsupervised.")
    try:
        for epoch in range(1, plan.max_epochs + 1):
            start = time.perf_counter()
            module.train()
            sums = dict.fromkeys((*LOSS_TERMS, "monitor"), 0.0)
            n_seen = 0
            for chunk in balanced_epoch(train_batches, train_idx, batch_size, rng):
                if pool is not None:
                    chunk = pool.add_to(chunk)
                batch = _to_device(data.minibatch(chunk), device)
                out = module.loss(batch, plan.weights)
                values = _scalars(out)
                _check_finite(values, epoch)
                optimizer.zero_grad(set_to_none=True)
                out.total.backward()
                optimizer.step()
                for k, v in values.items():
                    sums[k] += v * len(chunk)
                n_seen += len(chunk)
            record: dict[str, float] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            record.update({f"train_{k}": v / n_seen for k, v in sums.items()})
            if len(val_idx):
                val = _evaluate(module, data, val_idx, batch_size, plan.weights, device)
                _check_finite(val, epoch)
                record.update({f"val_{k}": v for k, v in val.items()})
                monitored = val["monitor"]
            else:
                monitored = record["train_monitor"]
            record["seconds"] = time.perf_counter() - start
            history.append(record)

            if monitored < best[0]:
                best = (
                    monitored,
                    epoch,
                    {k: v.detach().clone() for k, v in module.state_dict().items()},
                )
            lr_before = optimizer.param_groups[0]["lr"]
            scheduler.step(monitored)
            if optimizer.param_groups[0]["lr"] < lr_before:
                lr_cuts += 1
            bar.update(epoch, {"loss": monitored, "lr": lr_before})
            if lr_cuts >= plan.max_lr_cuts:
                stop_reason = f"learning rate cut {lr_cuts} times"
                break
            if epoch - best[1] >= plan.early_stopping_patience:
                stop_reason = f"no improvement for {plan.early_stopping_patience} epochs"
                break
    finally:
        module.load_state_dict(best[2])
        module.eval()
        bar.close(f"stopped after {len(history)} epochs ({stop_reason}); best epoch {best[1]}")
    return TrainingResult(
        history=history,
        best_epoch=best[1],
        stop_reason=stop_reason,
        batch_size=batch_size,
        n_train=len(train_idx),
        n_validation=len(val_idx),
    )
