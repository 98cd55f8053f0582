"""The training loop (MODEL.md §7): RMSprop, ReduceLROnPlateau, early stopping, kept weights.

The loop knows the module's :meth:`loss` and the data's :meth:`minibatch`; nothing about AnnData.
It runs on CPU or a CUDA device (minibatches copied from pinned host memory), in float32 or with
bfloat16 autocast, and data-parallel across processes started by ``torchrun``
(:mod:`mmaavi.train._distributed`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
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
    shard_minibatches,
    train_val_split,
)
from ..module import LOSS_TERMS, LossWeights, MMAAVIModule
from ..nn.wide import WIDE_INPUT_FEATURES, WideLinear
from . import _distributed as parallel
from ._checkpoint import CHECKPOINT_VERSION, checkpoint_path, load_checkpoint, save_checkpoint
from ._kept import KeptWeights
from ._optim import FlatRMSprop
from ._progress import Progress

logger = logging.getLogger(__name__)

#: numeric precisions of training: float32, or bfloat16 autocast (float32 weights)
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


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
    #: order of each epoch's draws, ``"global"`` or ``"chunked"`` (see :mod:`mmaavi.data`)
    shuffle: str = "global"
    #: ``"fp32"`` or ``"bf16"`` (autocast of the forward pass)
    precision: str = "fp32"
    #: end with the weights of the epoch with the best monitored loss (MODEL.md §7) instead of
    #: those of the last epoch. The last are the default: on small data the validation
    #: reconstruction loss turns up while the latent still improves (benchmarks/stopping.py)
    restore_best: bool = False


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
    #: epoch whose weights the module holds at the end (0: the initial weights)
    kept_epoch: int
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
    """The minibatch on ``device``; to a GPU through pinned memory, so the copy is asynchronous."""
    if device.type == "cpu":
        return batch
    if device.type == "cuda":
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


def autocast(device: torch.device, precision: str):
    """bfloat16 autocast of the forward pass for ``precision="bf16"``, else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class DivergenceError(FloatingPointError):
    """The loss (or the weights) became NaN or infinite.

    Attributes
    ----------
    result
        The :class:`TrainingResult` of the run up to the divergence (history, best epoch); the
        module holds the weights it would have kept (last or best epoch) from before it.
    """

    result: TrainingResult | None = None


def _scalars(out, modalities) -> dict[str, float]:
    """The loss terms, the monitored objective and each modality's reconstruction term
    (``nll_<modality>``, summing to ``nll``; 0 where no cell of the minibatch measured it) of
    one minibatch as floats, the same keys for every minibatch."""
    values = {k: float(out.terms[k].detach()) for k in LOSS_TERMS}
    values["monitor"] = float(out.monitor.detach())
    # per modality: which decoder a rising validation loss comes from
    for m in modalities:
        values[f"nll_{m}"] = float(out.nll[m].detach()) if m in out.nll else 0.0
    return values


def kept_weights_name(plan: TrainingPlan) -> str:
    """Which epoch's weights a run stopped early (Ctrl-C, divergence) ends with, in words."""
    return "best epoch so far" if plan.restore_best else "last completed epoch"


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
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_fill = torch.utils.deterministic.fill_uninitialized_memory
    if enabled:
        _set_deterministic(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        _set_deterministic(previous, previous_warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = previous_fill


def _set_deterministic(mode: bool, warn_only: bool = False) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only)`` without importing inductor.

    The public function also sets the flag in ``torch._inductor.config`` (for torch.compile, which
    we do not use); importing that module pulls in torch._dynamo and sympy, ~70 MB of resident
    memory and ~1.5 CPU s per process. So the kernel flag is set directly, unless inductor is
    already loaded (then the public function costs nothing extra and keeps both flags in step).
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


def train_module(
    module: MMAAVIModule,
    data,
    plan: TrainingPlan,
    device: torch.device,
    progress: str = "auto",
    checkpointing: Checkpointing | None = None,
    distributed: parallel.Distributed | None = None,
) -> TrainingResult:
    """Train ``module`` on ``data`` (a :class:`mmaavi.data.MosaicData`) in place.

    At the end the module holds the weights of the last completed epoch, or with
    ``plan.restore_best`` those of the epoch with the best monitored loss (validation when there
    is a validation split, else training), whatever stopped the run: the schedule, Ctrl-C (the
    run then returns with ``interrupted=True``) or a divergence (:class:`DivergenceError`). On CPU
    the run is deterministic for a given seed, and a run resumed from a checkpoint reaches the
    same weights as one never interrupted.

    ``distributed`` places this process in a data-parallel run (its process group initialised);
    ``None`` trains alone.
    """
    ctx = distributed or parallel.Distributed()
    with _deterministic(device.type == "cpu"):
        return _Run(module, data, plan, device, checkpointing, ctx).run(progress)


def _plan_record(plan: TrainingPlan, batch_size: int, world_size: int) -> dict[str, Any]:
    """The settings a resumed run must share with the run it continues (all but max_epochs)."""
    record = asdict(plan)
    record.pop("max_epochs")
    record["batch_size"] = batch_size
    record["world_size"] = world_size
    return record


#: settings added to the plan record after checkpoints were first written: an older checkpoint
#: ran with these values
_PLAN_ADDED = {"shuffle": "global", "precision": "fp32", "world_size": 1, "restore_best": True}


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a checkpoint's JSON (numpy scalars and the like as str)."""
    return json.loads(json.dumps(value, default=str))


class _Run:
    """One training run: its state, the epoch loop and checkpoints."""

    def __init__(self, module, data, plan: TrainingPlan, device, checkpointing, ctx) -> None:
        self.module, self.data, self.plan, self.device = module, data, plan, device
        self.checkpointing = checkpointing
        self.ctx: parallel.Distributed = ctx
        # dropout and the other draws of torch differ between processes; process 0 draws as a
        # single process would (the weights are process 0's anyway)
        torch.manual_seed(plan.seed + ctx.rank)
        self.rng = np.random.default_rng(plan.seed)
        self.train_idx, self.val_idx = train_val_split(data.batch, plan.validation_size, plan.seed)
        self.batch_size = plan.batch_size or default_batch_size(
            len(self.train_idx), sum(data.n_features(m) for m in data.modalities)
        )
        if self.batch_size < 2 * ctx.world_size:
            raise ValueError(
                f"Data-parallel training on {ctx.world_size} processes needs a batch_size of at "
                f"least {2 * ctx.world_size} (each process trains on its share of every "
                f"minibatch, and batch normalisation needs 2 cells); found {self.batch_size}. "
                "Pass a larger batch_size, or start fewer processes (torchrun --nproc_per_node)."
            )
        module.to(device)
        # before the DDP wrap: the optimiser moves the parameters into its flat buffer
        self.optimizer = FlatRMSprop(module.parameters(), lr=plan.lr)
        self.objective = parallel.wrap(module, plan.weights, ctx, device)
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
        # the weights the run ends with: the last completed epoch's, or the best epoch's
        self.kept_epoch = 0
        self.kept = KeptWeights(module)
        self.lr_cuts = 0
        self.stop_reason = ""
        self.limit_reached = False
        self.resumed_from = 0
        self.checkpoint_epoch = 0

    # ------------------------------------------------------------------ checkpoints
    def _json_record(self) -> dict[str, Any]:
        assert self.checkpointing is not None
        return {
            "plan": _plan_record(self.plan, self.batch_size, self.ctx.world_size),
            "fingerprint": self.checkpointing.fingerprint,
            "numpy_rng": self.rng.bit_generator.state,
            "history": self.history,
            "limit_reached": self.limit_reached,
            "kept_epoch": self.kept_epoch,
        }

    def _save(self) -> None:
        """Write the checkpoint (process 0; every process must call it: it gathers the random
        states of all)."""
        assert self.checkpointing is not None
        rank_rngs = parallel.gather_rng_states(self.ctx, self.device)
        self.checkpoint_epoch = self.epoch
        if not self.ctx.is_main:
            return
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        save_checkpoint(
            self.checkpointing.directory,
            {
                "version": CHECKPOINT_VERSION,
                "epoch": self.epoch,
                "module": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
                # the weights the run ends with (the best ones, for checkpoints older than
                # restore_best; the key keeps that name so they still load)
                "best_module": self.kept.state(),
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
                # data-parallel: each process's torch generator (row = rank)
                "rank_rngs": rank_rngs,
            },
        )
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
        then = {**_PLAN_ADDED, **record["plan"]}
        now = _as_json(_plan_record(self.plan, self.batch_size, self.ctx.world_size))
        differ = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        if differ:
            detail = "; ".join(f"{k}: {then.get(k)!r} then, {now.get(k)!r} now" for k in differ)
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
        if state["version"] < 2 and any(isinstance(x, WideLinear) for x in self.module.modules()):
            raise ValueError(
                f"Cannot resume {path}: an earlier mmaavi wrote it, which stored the first "
                f"encoder layer of inputs with {WIDE_INPUT_FEATURES} or more features in another "
                "layout, so its optimiser state does not fit this model. Finish the run with the "
                "mmaavi that started it, or start a new run in another checkpoint_dir."
            )
        self.module.load_state_dict(state["module"])
        self.module.to(self.device)
        self.kept.set(state["best_module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        rank_rngs = state.get("rank_rngs")
        if rank_rngs is not None and self.ctx.enabled:
            torch.set_rng_state(rank_rngs[self.ctx.rank].clone())
        else:
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
        self.kept_epoch = int(record.get("kept_epoch", self.best_epoch))
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
        bar = Progress(
            plan.max_epochs,
            progress if self.ctx.is_main else "none",
            initial=min(self.epoch, plan.max_epochs),
        )
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
                f"{err.args[0]} The weights of the {kept_weights_name(self.plan)} "
                f"({self.kept_epoch or 'none: the initial weights'}) were restored. Try a "
                "smaller learning rate (lr=...), check the input counts, or use another "
                "likelihood for that modality.",
            )
            err.result = self._result(interrupted)
            raise
        finally:
            self.kept.load_into(self.module)
            self.kept.close()
            self.module.eval()
            bar.close(
                f"stopped after {self.epoch} epochs ({self.stop_reason}); "
                f"best epoch {self.best_epoch}, weights of epoch {self.kept_epoch} kept"
            )
        return self._result(interrupted)

    def _result(self, interrupted: bool) -> TrainingResult:
        return TrainingResult(
            history=list(self.history),
            best_epoch=self.best_epoch,
            kept_epoch=self.kept_epoch,
            stop_reason=self.stop_reason,
            batch_size=self.batch_size,
            n_train=len(self.train_idx),
            n_validation=len(self.val_idx),
            interrupted=interrupted,
            resumed_from=self.resumed_from,
            checkpoint_epoch=self.checkpoint_epoch,
        )

    def _minibatches(self) -> list[np.ndarray]:
        """This process's minibatches of the next epoch (all of them when training alone)."""
        train_batches = self.data.batch[self.train_idx]
        epoch = balanced_epoch(
            train_batches, self.train_idx, self.batch_size, self.rng, self.plan.shuffle
        )
        if self.pool is not None:
            epoch = [self.pool.add_to(chunk) for chunk in epoch]
        return shard_minibatches(epoch, self.ctx.rank, self.ctx.world_size)

    def _combine(self, values: dict[str, float], n: int) -> tuple[dict[str, float], int]:
        """Cell-weighted means of ``values`` over the processes, and their number of cells."""
        if not self.ctx.enabled:
            return values, n
        keys = list(values)
        vec = torch.tensor(
            [values[k] * n for k in keys] + [float(n)], dtype=torch.float64, device=self.device
        )
        vec = parallel.sum_across(vec, self.ctx).cpu()
        total = float(vec[-1])
        return {k: float(vec[i]) / total for i, k in enumerate(keys)}, int(total)

    def _zero_sums(self) -> dict[str, float]:
        """Running sums of every scalar of :func:`_scalars`."""
        keys = (*LOSS_TERMS, "monitor", *(f"nll_{m}" for m in self.data.modalities))
        return dict.fromkeys(keys, 0.0)

    def _evaluate(self) -> dict[str, float]:
        """Mean loss terms over the validation cells (each process evaluates its share)."""
        module, plan = self.module, self.plan
        module.eval()
        sums = self._zero_sums()
        n_seen = 0
        with torch.no_grad():
            for chunk in sequential_batches(len(self.val_idx), self.batch_size):
                idx = self.val_idx[chunk]
                if self.ctx.enabled:
                    idx = np.array_split(idx, self.ctx.world_size)[self.ctx.rank]
                    if idx.size == 0:
                        continue
                batch = _to_device(self.data.minibatch(idx), self.device)
                with autocast(self.device, plan.precision):
                    out = module.loss(batch, plan.weights)
                for k, v in _scalars(out, self.data.modalities).items():
                    sums[k] += v * len(idx)
                n_seen += len(idx)
        if not self.ctx.enabled:
            return {k: v / len(self.val_idx) for k, v in sums.items()}
        means, _ = self._combine({k: v / max(n_seen, 1) for k, v in sums.items()}, n_seen)
        return means

    def _epoch(self, epoch: int, bar: Progress) -> None:
        """Train one epoch, validate, update the kept weights, schedule and stopping rule."""
        plan, module, data, ctx = self.plan, self.module, self.data, self.ctx
        start = time.perf_counter()
        module.train()
        sums = self._zero_sums()
        n_seen = 0
        for chunk in self._minibatches():
            batch = _to_device(data.minibatch(chunk), self.device)
            # the last step's gradients go before this step's activations are built (one
            # weight-sized copy less at the memory peak; SNARE-seq: 67 MB)
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, plan.precision):
                out = self.objective(batch)
            values, n = self._combine(_scalars(out, self.data.modalities), len(chunk))
            _check_finite(values, epoch, "training", out)
            out.total.backward()
            self.optimizer.step()
            for k, v in values.items():
                sums[k] += v * n
            n_seen += n
        self.optimizer.zero_grad(set_to_none=True)  # not needed by validation or the copy below
        _check_weights(module, epoch)
        # batch-norm running statistics drift apart between processes: validate, and keep as
        # best, process 0's
        parallel.copy_buffers_from_main(module, ctx)
        record: dict[str, float] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
        record.update({f"train_{k}": v / n_seen for k, v in sums.items()})
        if len(self.val_idx):
            val = self._evaluate()
            _check_finite(val, epoch, "validation")
            record.update({f"val_{k}": v for k, v in val.items()})
            monitored = val["monitor"]
        else:
            monitored = record["train_monitor"]
        if ctx.enabled:
            # every process takes process 0's value, so all make the same decisions below
            monitored = float(
                parallel.from_main(
                    torch.tensor([monitored], dtype=torch.float64, device=self.device), ctx
                )[0]
            )
        record["seconds"] = time.perf_counter() - start
        self.history.append(record)
        self.epoch = epoch

        improved = monitored < self.best_monitor
        if improved:
            self.best_monitor, self.best_epoch = monitored, epoch
        if improved or not plan.restore_best:
            # a copy even of the last epoch's weights: Ctrl-C or a divergence in the next epoch
            # must not leave half-updated (or NaN) weights (in a temporary file: _kept)
            self.kept_epoch = epoch
            self.kept.keep(module)
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
        if ctx.enabled:
            self._follow_main_on_stopping()

    def _follow_main_on_stopping(self) -> None:
        """Process 0 decides whether the run stops; the others follow (they always agree when
        the processes are in step, this makes sure of it)."""
        flag = torch.tensor(
            [1.0 if self.stop_reason else 0.0], dtype=torch.float64, device=self.device
        )
        stop = bool(parallel.from_main(flag, self.ctx)[0])
        if stop and not self.stop_reason:
            self.stop_reason = "stopped by process 0"
        elif not stop:
            self.stop_reason, self.limit_reached = "", False
