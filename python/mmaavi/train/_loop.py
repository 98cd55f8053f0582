"""The training loop (MODEL.md §7): RMSprop, ReduceLROnPlateau, early stopping, best weights.

The loop knows the module's :meth:`loss` and the data's :meth:`minibatch`; nothing about AnnData.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
from ._checkpoint import CHECKPOINT_VERSION, checkpoint_path, load_checkpoint, save_checkpoint
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
class Checkpointing:
    """Where and how often a run saves checkpoints, and whether it resumes from one.

    Attributes
    ----------
    directory
        Folder of ``checkpoint.pt`` (created if needed).
    every
        Save after every ``every`` epochs, and always after the last one.
    resume
        Continue from the checkpoint in ``directory`` when there is one (start afresh when there
        is none). Without ``resume``, an existing checkpoint is an error: it is never overwritten
        by a new run.
    fingerprint
        JSON-serialisable description of the model and data (architecture, features, batches);
        resuming requires the same one.
    """

    directory: Path
    every: int = 1
    resume: bool = False
    fingerprint: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingResult:
    """What a run produced besides the weights."""

    history: list[dict[str, float]]
    best_epoch: int
    stop_reason: str
    batch_size: int
    n_train: int
    n_validation: int
    #: the run was stopped by Ctrl-C (KeyboardInterrupt)
    interrupted: bool = False
    #: epoch of the checkpoint the run resumed from (0: a fresh run)
    resumed_from: int = 0
    #: last epoch written to the checkpoint (0: none)
    checkpoint_epoch: int = 0


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class DivergenceError(FloatingPointError):
    """The loss (or the weights) became NaN or infinite.

    Attributes
    ----------
    result
        The :class:`TrainingResult` of the run up to the divergence (history, best epoch); the
        module holds the best weights before it.
    """

    result: TrainingResult | None = None


def _scalars(out) -> dict[str, float]:
    """The loss terms and the monitored objective of one minibatch as floats."""
    values = {k: float(out.terms[k].detach()) for k in LOSS_TERMS}
    values["monitor"] = float(out.monitor.detach())
    return values


def _check_finite(terms: dict[str, float], epoch: int, where: str, out=None) -> None:
    """Raise :class:`DivergenceError` naming the first non-finite term (and modality)."""
    for name, value in terms.items():
        if math.isfinite(value):
            continue
        detail = ""
        if name == "nll" and out is not None:
            bad = [m for m, v in out.nll.items() if not math.isfinite(float(v.detach()))]
            if bad:
                detail = f" (reconstruction of modality {', '.join(repr(m) for m in bad)})"
        raise DivergenceError(
            f"Training diverged at epoch {epoch}: the {where} loss term '{name}'{detail} is "
            f"{value}."
        )


def _check_weights(module: torch.nn.Module, epoch: int) -> None:
    """Raise :class:`DivergenceError` when an optimiser step left a non-finite weight."""
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise DivergenceError(
                f"Training diverged at epoch {epoch}: weight '{name}' became NaN or infinite "
                "after an optimiser step."
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

    Deterministic mode also fills every new tensor with NaN by default (a guard against reading
    uninitialised memory, which no code here does); that fill doubled the optimiser step and
    cost ~10 % of a BMMC training step, so it is switched off for the run.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_fill = torch.utils.deterministic.fill_uninitialized_memory
    if enabled:
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.utils.deterministic.fill_uninitialized_memory = previous_fill


def train_module(
    module: MMAAVIModule,
    data,
    plan: TrainingPlan,
    device: torch.device,
    progress: str = "auto",
    checkpointing: Checkpointing | None = None,
) -> TrainingResult:
    """Train ``module`` on ``data`` (a :class:`mmaavi.data.MosaicData`) in place.

    The weights with the best monitored loss (validation when there is a validation split, else
    training) are restored at the end, whatever stopped the run: the schedule, Ctrl-C (the run
    then returns with ``interrupted=True``) or a divergence (:class:`DivergenceError`). On CPU
    the run is deterministic for a given seed, and a run resumed from a checkpoint reaches the
    same weights as one never interrupted.
    """
    with _deterministic(device.type == "cpu"):
        return _Run(module, data, plan, device, checkpointing).run(progress)


def _clone(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _plan_record(plan: TrainingPlan, batch_size: int) -> dict[str, Any]:
    """The settings a resumed run must share with the run it continues (all but max_epochs)."""
    record = asdict(plan)
    record.pop("max_epochs")
    record["batch_size"] = batch_size
    return record


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a checkpoint's JSON (numpy scalars and the like as str)."""
    return json.loads(json.dumps(value, default=str))


class _Run:
    """One training run: its state, the epoch loop and checkpoints."""

    def __init__(self, module, data, plan: TrainingPlan, device, checkpointing) -> None:
        self.module, self.data, self.plan, self.device = module, data, plan, device
        self.checkpointing = checkpointing
        torch.manual_seed(plan.seed)
        self.rng = np.random.default_rng(plan.seed)
        self.train_idx, self.val_idx = train_val_split(data.batch, plan.validation_size, plan.seed)
        self.batch_size = plan.batch_size or default_batch_size(len(self.train_idx))
        module.to(device)
        self.optimizer = torch.optim.RMSprop(module.parameters(), lr=plan.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=plan.lr_factor, patience=plan.lr_patience
        )
        labelled = self.train_idx[data.labels[self.train_idx] >= 0]
        self.pool = (
            LabelledPool(labelled, plan.labelled_fraction, self.rng) if labelled.size else None
        )
        if data.label_categories is not None and self.pool is None:
            logger.warning("No labelled cell fell in the training split; training is unsupervised.")
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best_monitor = math.inf
        self.best_epoch = 0
        self.best_state = _clone(module)
        self.lr_cuts = 0
        self.stop_reason = ""
        self.limit_reached = False
        self.resumed_from = 0
        self.checkpoint_epoch = 0

    # ------------------------------------------------------------------ checkpoints
    def _json_record(self) -> dict[str, Any]:
        assert self.checkpointing is not None
        return {
            "plan": _plan_record(self.plan, self.batch_size),
            "fingerprint": self.checkpointing.fingerprint,
            "numpy_rng": self.rng.bit_generator.state,
            "history": self.history,
            "limit_reached": self.limit_reached,
        }

    def _save(self) -> None:
        assert self.checkpointing is not None
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        save_checkpoint(
            self.checkpointing.directory,
            {
                "version": CHECKPOINT_VERSION,
                "epoch": self.epoch,
                "module": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
                "best_module": {k: v.cpu() for k, v in self.best_state.items()},
                "best_monitor": self.best_monitor,
                "best_epoch": self.best_epoch,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "lr_cuts": self.lr_cuts,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": cuda_rng,
                "pool_queue": None if self.pool is None else torch.from_numpy(self.pool.queue),
                "stop_reason": self.stop_reason,
                "json": self._json_record(),
            },
        )
        self.checkpoint_epoch = self.epoch
        logger.info(
            "Checkpoint of epoch %d written to %s", self.epoch, self.checkpointing.directory
        )

    def _restore(self) -> None:
        """Load the checkpoint when resuming; refuse to overwrite one otherwise."""
        ckpt = self.checkpointing
        if ckpt is None:
            return
        state = load_checkpoint(ckpt.directory)
        if state is None:
            if ckpt.resume:
                logger.info("No checkpoint in %s: starting a new run.", ckpt.directory)
            return
        path = checkpoint_path(ckpt.directory)
        if not ckpt.resume:
            raise FileExistsError(
                f"{path} holds a checkpoint of an earlier run (epoch {state['epoch']}). Pass "
                "resume=True to continue it, or choose another checkpoint_dir (or delete the "
                "file) to start a new run."
            )
        record = state["json"]
        now = _as_json(_plan_record(self.plan, self.batch_size))
        differ = sorted(
            k for k in set(now) | set(record["plan"]) if now.get(k) != record["plan"].get(k)
        )
        if differ:
            detail = "; ".join(
                f"{k}: {record['plan'].get(k)!r} then, {now.get(k)!r} now" for k in differ
            )
            raise ValueError(
                f"Cannot resume {path}: the training settings differ from the run it holds "
                f"({detail}). Resume with the same settings (only max_epochs may change), or "
                "start a new run in another checkpoint_dir."
            )
        if record["fingerprint"] != _as_json(ckpt.fingerprint):
            saved, now_fp = record["fingerprint"], _as_json(ckpt.fingerprint)
            keys = sorted(k for k in set(saved) | set(now_fp) if saved.get(k) != now_fp.get(k))
            raise ValueError(
                f"Cannot resume {path}: it was written for another model or data (differences "
                f"in {', '.join(keys)}). Build the model with the same data and arguments, or "
                "start a new run in another checkpoint_dir."
            )
        self.module.load_state_dict(state["module"])
        self.module.to(self.device)
        self.best_state = {k: v.to(self.device) for k, v in state["best_module"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.rng.bit_generator.state = record["numpy_rng"]
        if self.pool is not None and state["pool_queue"] is not None:
            self.pool.queue = state["pool_queue"].numpy().astype(np.int64)
        self.epoch = self.resumed_from = self.checkpoint_epoch = int(state["epoch"])
        self.history = list(record["history"])
        self.best_monitor = float(state["best_monitor"])
        self.best_epoch = int(state["best_epoch"])
        self.lr_cuts = int(state["lr_cuts"])
        self.stop_reason = str(state["stop_reason"])
        self.limit_reached = bool(record["limit_reached"])
        if self.stop_reason and self.limit_reached and self.plan.max_epochs > self.epoch:
            # stopped by max_epochs only: a larger limit continues the run
            self.stop_reason, self.limit_reached = "", False
        logger.info("Resuming from the checkpoint of epoch %d in %s", self.epoch, path)

    # ------------------------------------------------------------------ the loop
    def run(self, progress: str) -> TrainingResult:
        plan = self.plan
        self._restore()
        logger.info(
            "Training on %d cells (validation %d), batch size %d, device %s",
            len(self.train_idx),
            len(self.val_idx),
            self.batch_size,
            self.device,
        )
        interrupted = False
        bar = Progress(plan.max_epochs, progress, initial=min(self.epoch, plan.max_epochs))
        try:
            if not self.stop_reason and self.epoch >= plan.max_epochs:
                self.stop_reason = f"reached max_epochs={plan.max_epochs}"
                self.limit_reached = True
            while not self.stop_reason:
                self._epoch(self.epoch + 1, bar)
                if self.checkpointing is not None and (
                    self.stop_reason or self.epoch % self.checkpointing.every == 0
                ):
                    self._save()
        except KeyboardInterrupt:
            interrupted = True
            self.stop_reason = f"interrupted (Ctrl-C) during epoch {self.epoch + 1}"
        except DivergenceError as err:
            self.stop_reason = f"diverged during epoch {self.epoch + 1}"
            err.args = (
                f"{err.args[0]} The weights of the best epoch so far "
                f"({self.best_epoch or 'none: the initial weights'}) were restored. Try a "
                "smaller learning rate (lr=...), check the input counts, or use another "
                "likelihood for that modality.",
            )
            err.result = self._result(interrupted)
            raise
        finally:
            self.module.load_state_dict(self.best_state)
            self.module.eval()
            bar.close(
                f"stopped after {self.epoch} epochs ({self.stop_reason}); "
                f"best epoch {self.best_epoch}"
            )
        return self._result(interrupted)

    def _result(self, interrupted: bool) -> TrainingResult:
        return TrainingResult(
            history=list(self.history),
            best_epoch=self.best_epoch,
            stop_reason=self.stop_reason,
            batch_size=self.batch_size,
            n_train=len(self.train_idx),
            n_validation=len(self.val_idx),
            interrupted=interrupted,
            resumed_from=self.resumed_from,
            checkpoint_epoch=self.checkpoint_epoch,
        )

    def _epoch(self, epoch: int, bar: Progress) -> None:
        """Train one epoch, validate, update best weights, schedule and stopping rule."""
        plan, module, data = self.plan, self.module, self.data
        start = time.perf_counter()
        module.train()
        sums = dict.fromkeys((*LOSS_TERMS, "monitor"), 0.0)
        n_seen = 0
        train_batches = data.batch[self.train_idx]
        for chunk in balanced_epoch(train_batches, self.train_idx, self.batch_size, self.rng):
            if self.pool is not None:
                chunk = self.pool.add_to(chunk)
            batch = _to_device(data.minibatch(chunk), self.device)
            out = module.loss(batch, plan.weights)
            values = _scalars(out)
            _check_finite(values, epoch, "training", out)
            self.optimizer.zero_grad(set_to_none=True)
            out.total.backward()
            self.optimizer.step()
            for k, v in values.items():
                sums[k] += v * len(chunk)
            n_seen += len(chunk)
        _check_weights(module, epoch)
        record: dict[str, float] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
        record.update({f"train_{k}": v / n_seen for k, v in sums.items()})
        if len(self.val_idx):
            val = _evaluate(module, data, self.val_idx, self.batch_size, plan.weights, self.device)
            _check_finite(val, epoch, "validation")
            record.update({f"val_{k}": v for k, v in val.items()})
            monitored = val["monitor"]
        else:
            monitored = record["train_monitor"]
        record["seconds"] = time.perf_counter() - start
        self.history.append(record)
        self.epoch = epoch

        if monitored < self.best_monitor:
            self.best_monitor, self.best_epoch = monitored, epoch
            self.best_state = _clone(module)
        lr_before = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step(monitored)
        if self.optimizer.param_groups[0]["lr"] < lr_before:
            self.lr_cuts += 1
        bar.update(epoch, {"loss": monitored, "lr": lr_before})
        if self.lr_cuts >= plan.max_lr_cuts:
            self.stop_reason = f"learning rate cut {self.lr_cuts} times"
        elif epoch - self.best_epoch >= plan.early_stopping_patience:
            self.stop_reason = f"no improvement for {plan.early_stopping_patience} epochs"
        elif epoch >= plan.max_epochs:
            self.stop_reason = f"reached max_epochs={plan.max_epochs}"
            self.limit_reached = True
