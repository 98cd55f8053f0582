"""``MMAAVI``: the user-facing model. It owns the data, training, every output and save/load."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import __version__
from ._settings import settings
from .data import LIKELIHOODS, SHUFFLES, MosaicData, sequential_batches, setup_mosaic
from .graph import GUIDANCE_KEY, graph_tensors
from .module import LossWeights, MMAAVIModule
from .train import Checkpointing, DivergenceError, TrainingPlan, TrainingResult, train_module
from .train import _distributed as parallel
from .train._loop import PRECISIONS, kept_weights_name
from .train._loop import _to_device as to_device

logger = logging.getLogger(__name__)

#: version of the on-disk layout written by :meth:`MMAAVI.save`
FORMAT_VERSION = 1
_WEIGHTS_FILE = "model.pt"
_META_FILE = "model.json"
#: keys every model.json holds
_META_KEYS = frozenset(
    {"format_version", "init_params", "modalities", "var_names", "batch_categories", "is_trained"}
)
#: co-observation count above which two modalities count as paired (mix-weight heuristic)
_PAIRED_CELLS = 10


def _resolve_device(device: str | torch.device | None) -> torch.device:
    device = torch.device(settings.device if device is None else device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was asked for but torch sees no CUDA GPU; use device='cpu'."
        )
    return device


def _resolve_precision(precision: str | None, device: torch.device) -> str:
    precision = settings.precision if precision is None else precision
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)}; found "
            f"{precision!r}."
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"precision='bf16' needs a GPU with bfloat16 support (compute capability 8.0 or "
            f"newer); {torch.cuda.get_device_name(device)} has none. Use precision='fp32'."
        )
    return precision


class MMAAVI:
    """Mosaic integration with mmAAVI (Rong et al. 2024, doi 10.1093/bib/bbae540).

    Parameters
    ----------
    mdata
        A MuData from :func:`mmaavi.data.mosaic` (or one modality per ``mdata.mod`` entry, each
        holding the cells that measured it, raw counts in ``X``). Outputs are written into it
        (``obsm["X_mmaavi"]``, ``uns["mmaavi"]``); nothing else is modified.
    batch_key
        Column of ``mdata.obs`` with the batch of each cell.
    n_components
        Number of mixture components K. Required without labels; with ``label_key`` it defaults
        to the number of classes (a larger value adds unlabelled components).
    label_key
        Column of ``mdata.obs`` with cell labels for semi-supervised mode (missing = unlabelled).
    adversarial_key
        Column the discriminator learns to predict and the encoder learns to hide (default: the
        batch). With a single category the discriminator is off.
    unlabeled_category
        A label value that means "unlabelled", besides missing values.
    likelihoods
        One of ``"nb"`` (default), ``"zinb"``, ``"bernoulli"``, ``"normal"`` for every modality, or
        a mapping modality -> likelihood.
    transform
        Encoder input transform, ``"log1p_norm"`` (default) or ``"lsi_pca"``; or a mapping per
        modality.
    graph
        Guidance graph: an edge list DataFrame or a sparse adjacency over the concatenated
        features (see :func:`mmaavi.graph.graph_tensors`). Default: the graph stored in
        ``mdata.uns["mmaavi_guidance"]`` if any, else self-loops only.
    backed
        Out-of-core data (see :func:`mmaavi.data.setup_mosaic`): ``None`` (default) keeps the
        counts of backed modalities (``mudata.read_h5mu(path, backed=True)``) on disk and reads
        each minibatch from the file; ``True`` requires that of every modality; ``False`` loads
        everything. Not a model parameter: a model saved with one loads with the other.
    n_latent, n_latent_u
        Dimensions of z (the embedding) and u.
    encoder_hidden
        Widths of each modality's encoder; the last is the fused representation's width.
    mix_weight
        Weight of the decoders' dot branch in (0, 1); ``"auto"``: 0.9 when two modalities are
        measured together in more than 10 cells, else 0.99.
    dropout
        Dropout rate.
    reversal
        Gradient-reversal factor of the batch discriminator.
    label_smoothing
        Label smoothing of the discriminator.

    Examples
    --------
    >>> mdata = mmaavi.datasets.bmmc_mosaic()
    >>> model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=8)
    >>> model.train(max_epochs=300, seed=0)
    >>> z = model.get_latent_representation()
    """

    def __init__(
        self,
        mdata,
        batch_key: str = "batch",
        n_components: int | None = None,
        label_key: str | None = None,
        *,
        adversarial_key: str | None = None,
        unlabeled_category: Any = None,
        likelihoods: str | Mapping[str, str] = "nb",
        transform: str | Mapping[str, str] = "log1p_norm",
        graph: Any = None,
        backed: bool | None = None,
        n_latent: int = 30,
        n_latent_u: int = 30,
        encoder_hidden: Sequence[int] = (256, 256, 200),
        mix_weight: float | str = "auto",
        dropout: float = 0.2,
        reversal: float = 20.0,
        label_smoothing: float = 0.1,
    ) -> None:
        if isinstance(likelihoods, str):
            if likelihoods not in LIKELIHOODS:
                raise ValueError(
                    f"likelihoods must be one of {LIKELIHOODS}; found {likelihoods!r}."
                )
            likelihoods = dict.fromkeys(mdata.mod, likelihoods)
        self.mdata = mdata
        self.data: MosaicData = setup_mosaic(
            mdata,
            batch_key,
            adversarial_key=adversarial_key,
            label_key=label_key,
            unlabeled_category=unlabeled_category,
            likelihoods=dict(likelihoods),
            transform=transform if isinstance(transform, str) else dict(transform),
            backed=backed,
        )
        data = self.data
        n_classes = 0 if data.label_categories is None else len(data.label_categories)
        if n_components is None:
            if n_classes == 0:
                raise ValueError(
                    "n_components is required without labels: pass the number of mixture "
                    "components, e.g. MMAAVI(mdata, n_components=8), or give label_key."
                )
            n_components = n_classes
        n_components = int(n_components)
        if n_components < max(n_classes, 1):
            raise ValueError(
                f"n_components must be at least the number of label classes ({n_classes}); "
                f"found {n_components}."
            )
        mix_weight = self._resolve_mix_weight(mix_weight)
        if graph is None and GUIDANCE_KEY in getattr(mdata, "uns", {}):
            graph = mdata.uns[GUIDANCE_KEY]
        edge_index, edge_weight, edge_sign = graph_tensors(graph, data.var_names)

        self.init_params: dict[str, Any] = {
            "batch_key": batch_key,
            "n_components": n_components,
            "label_key": label_key,
            "adversarial_key": adversarial_key,
            "unlabeled_category": unlabeled_category,
            "likelihoods": dict(data.likelihoods),
            "transform": transform if isinstance(transform, str) else dict(transform),
            "n_latent": int(n_latent),
            "n_latent_u": int(n_latent_u),
            "encoder_hidden": [int(h) for h in encoder_hidden],
            "mix_weight": mix_weight,
            "dropout": float(dropout),
            "reversal": float(reversal),
            "label_smoothing": float(label_smoothing),
        }
        self._graph = (edge_index, edge_weight, edge_sign)
        self.module = self._build_module()
        self.is_trained = False
        self.history = pd.DataFrame()
        self.train_info: dict[str, Any] = {}
        self.device = torch.device("cpu")
        logger.info("mmaavi model: %s", self.init_params)

    @property
    def backed(self) -> bool:
        """Whether some counts are read from disk per minibatch (out-of-core data)."""
        return bool(self.data.backed_modalities)

    def __repr__(self) -> str:
        mods = ", ".join(f"{m}: {self.data.n_features(m)} features" for m in self.data.modalities)
        return (
            f"MMAAVI({self.data.n_cells} cells, {self.data.n_batches} batches, {mods}; "
            f"K={self.init_params['n_components']}, trained={self.is_trained})"
        )

    def _build_module(self) -> MMAAVIModule:
        """A freshly initialised module for the data and ``init_params``."""
        data, p = self.data, self.init_params
        edge_index, edge_weight, edge_sign = self._graph
        return MMAAVIModule(
            n_inputs={m: data.n_input(m) for m in data.modalities},
            n_features={m: data.n_features(m) for m in data.modalities},
            n_batches=data.n_batches,
            n_adversarial=len(data.adv_categories),
            n_components=p["n_components"],
            likelihoods=data.likelihoods,
            edge_index=edge_index,
            edge_weight=edge_weight,
            edge_sign=edge_sign,
            n_latent=p["n_latent"],
            n_latent_u=p["n_latent_u"],
            encoder_hidden=p["encoder_hidden"],
            mix_weight=p["mix_weight"],
            dropout=p["dropout"],
            reversal=p["reversal"],
            label_smoothing=p["label_smoothing"],
            prior_c=self._prior_c(),
        )

    def _prior_c(self) -> torch.Tensor | None:
        """p(c): uniform without labels; with labels, the class frequencies among the labelled
        cells (add-one smoothed; extra components get the weight of a class with no labels).

        A uniform p(c) rewards spreading the unlabelled cells evenly over the components, so with
        few labels of an imbalanced population the components of rare classes absorb the common
        ones (SNARE-seq, 1 % labels: 2939 cells called 'Clau', a class of 146 cells with two
        labels). The labelled frequencies are the empirical-Bayes estimate of p(c).
        """
        if self.data.label_categories is None:
            return None
        labels = self.data.labels
        counts = np.bincount(labels[labels >= 0], minlength=self.init_params["n_components"])
        return torch.as_tensor(counts + 1.0, dtype=torch.float32)

    def _resolve_mix_weight(self, mix_weight: float | str) -> float:
        if mix_weight == "auto":
            mask = self.data.obs_mask.astype(np.int64)
            together = mask.T @ mask
            np.fill_diagonal(together, 0)
            return 0.9 if together.max(initial=0) > _PAIRED_CELLS else 0.99
        if isinstance(mix_weight, str) or not 0.0 < float(mix_weight) < 1.0:
            raise ValueError(
                f"mix_weight must be 'auto' or a number in (0, 1); found {mix_weight!r}."
            )
        return float(mix_weight)

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int = 300,
        *,
        lr: float = 2e-3,
        batch_size: int | None = None,
        validation_size: float = 0.1,
        seed: int = 0,
        device: str | torch.device | None = None,
        precision: str | None = None,
        shuffle: str = "auto",
        progress: str | None = None,
        early_stopping_patience: int = 10,
        lr_patience: int = 5,
        lr_factor: float = 0.1,
        max_lr_cuts: int = 3,
        restore_best: bool = False,
        labelled_fraction: float = 0.2,
        weight_kl_z: float = 1.0,
        weight_kl_u: float = 1.0,
        weight_kl_c: float = 1.0,
        weight_kl_v: float = 0.01,
        weight_graph: float | None = None,
        weight_sup: float = 1.0,
        weight_disc: float = 1.0,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 1,
        resume: bool = False,
    ) -> MMAAVI:
        """Fit the model (MODEL.md §7); the weights of the last epoch are kept.

        Parameters
        ----------
        max_epochs
            Upper bound on epochs; training also stops at the ``max_lr_cuts``-th learning-rate
            cut or after ``early_stopping_patience`` epochs without improvement.
        lr
            RMSprop learning rate.
        batch_size
            Minibatch size; default ``max(n_train // 65, 32)``, capped for large data so that
            a minibatch holds at most 2^23 cells x features (see
            :func:`mmaavi.data.default_batch_size`).
        validation_size
            Fraction of cells held out (seeded, per batch) to monitor the loss.
        seed
            Seeds the initial weights, the split, the sampling and torch: the same seed gives the
            same model on CPU. A second call to ``train`` continues from the current weights.
        device
            ``"cpu"`` or ``"cuda"`` (default: ``mmaavi.settings.device``, ``"cpu"``). Under
            ``torchrun`` each process uses the GPU of its ``LOCAL_RANK``.
        precision
            ``"fp32"`` or ``"bf16"`` (bfloat16 autocast of the forward passes; the weights,
            optimiser and outputs stay float32). Default: ``mmaavi.settings.precision``.
        shuffle
            Order of each epoch's balanced draws: ``"global"`` (one permutation of all draws),
            ``"chunked"`` (draws shuffled within windows of 64 random chunks of 1024 consecutive
            cells, so counts on disk are read in whole chunks) or ``"auto"``: ``"chunked"`` for
            out-of-core data, else ``"global"``. The same seed and shuffle give the same
            minibatches, in memory or on disk.
        progress
            ``"auto"`` (a bar in a terminal, plain lines otherwise), ``"bar"``, ``"lines"``,
            ``"none"``. Default: ``mmaavi.settings.progress``.
        restore_best
            End with the weights of the epoch with the lowest validation loss (training loss
            without a validation split), as MODEL.md §7 and the original mmAAVI do, instead of
            those of the last epoch. The validation loss still drives the learning-rate cuts and
            early stopping either way. The last weights are the default because the loss
            monitored is mostly reconstruction: on small or sparse data (SNARE-seq, 9k cells
            of 27k features) it is lowest after ~10 epochs, when the decoders start to overfit,
            while the latent space keeps improving (the benchmark in README, 3 seeds: scib
            Total 0.572 with the last weights, 0.488 with the best; on bmmc3 0.612 and 0.614,
            on the PBMC mosaic 0.780 and 0.787; benchmarks/stopping.py).
        labelled_fraction
            Semi-supervised mode: share of labelled cells added to each minibatch (recycled).
        weight_*
            Loss weights (``weight_sup``: cross-entropy of q(c|z) on labelled cells); ``weight_graph=None`` means the number of modalities.
        checkpoint_dir
            Folder for ``checkpoint.pt``: the weights, kept weights, optimiser, LR scheduler,
            random states and history, written atomically (temporary file, then rename) after
            every ``checkpoint_every`` epochs and after the last one. ``None``: no checkpoints.
        checkpoint_every
            Epochs between checkpoints.
        resume
            Continue the run saved in ``checkpoint_dir`` (build the model with the same data and
            arguments and call ``train`` with the same settings; only ``max_epochs`` may change).
            On CPU the result equals that of the run never interrupted. With no checkpoint there
            yet, a new run starts, so a script can always pass ``resume=True``. Without
            ``resume``, an existing checkpoint is never overwritten: it is an error.

        Returns
        -------
        The model, trained. ``history`` holds one row per epoch with every named loss term.

        Raises
        ------
        mmaavi.train.DivergenceError
            A loss term or a weight became NaN or infinite. The message names the epoch and the
            term; the weights of the last completed epoch before it (the best one with
            ``restore_best``) are restored (never NaN weights), and ``history`` holds the
            epochs done.

        Notes
        -----
        Ctrl-C (KeyboardInterrupt) stops training cleanly: the weights of the last completed
        epoch (the best so far with ``restore_best``) are kept, the model counts as trained if
        an epoch was completed, ``train_info["stop_reason"]`` says so, and a warning tells how
        to resume. Those kept weights wait in an anonymous temporary file of the model's size in
        ``TMPDIR`` (deleted when training ends), not in memory; without a writable temporary
        folder they stay in memory, with a warning.

        Started by ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1 in the environment), the
        same call trains data-parallel with :class:`~torch.nn.parallel.DistributedDataParallel`
        (gloo on CPU, NCCL on GPUs): each process trains on its share of every minibatch, so the
        batch size is the total over the processes; process 0 writes the checkpoints, and
        :meth:`save` writes only in process 0. See :mod:`mmaavi.train._distributed`.
        """
        for name, value in {
            "max_epochs": max_epochs,
            "early_stopping_patience": early_stopping_patience,
            "lr_patience": lr_patience,
            "max_lr_cuts": max_lr_cuts,
        }.items():
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer; found {value!r}.")
        if not 0.0 < labelled_fraction < 1.0:
            raise ValueError(f"labelled_fraction must be in (0, 1); found {labelled_fraction!r}.")
        if not 0.0 <= validation_size < 1.0:
            raise ValueError(f"validation_size must be in [0, 1); found {validation_size!r}.")
        if int(checkpoint_every) != checkpoint_every or checkpoint_every < 1:
            raise ValueError(
                f"checkpoint_every must be a positive integer; found {checkpoint_every!r}."
            )
        if resume and checkpoint_dir is None:
            raise ValueError(
                "resume=True needs checkpoint_dir: pass the folder the interrupted run wrote its "
                "checkpoint to, e.g. model.train(..., checkpoint_dir='ckpt', resume=True)."
            )
        if shuffle != "auto" and shuffle not in SHUFFLES:
            raise ValueError(
                f"shuffle must be 'auto', {', '.join(repr(x) for x in SHUFFLES)}; found {shuffle!r}."
            )
        if shuffle == "auto":
            shuffle = "chunked" if self.backed else "global"
        ctx = parallel.from_environment()
        self.device = parallel.process_device(_resolve_device(device), ctx)
        precision = _resolve_precision(precision, self.device)
        parallel.init_process_group(ctx, self.device)
        plan = TrainingPlan(
            max_epochs=int(max_epochs),
            lr=float(lr),
            batch_size=None if batch_size is None else int(batch_size),
            validation_size=float(validation_size),
            seed=int(seed),
            lr_factor=float(lr_factor),
            lr_patience=int(lr_patience),
            max_lr_cuts=int(max_lr_cuts),
            early_stopping_patience=int(early_stopping_patience),
            labelled_fraction=float(labelled_fraction),
            weights=LossWeights(
                kl_z=weight_kl_z,
                kl_u=weight_kl_u,
                kl_c=weight_kl_c,
                kl_v=weight_kl_v,
                graph=weight_graph,
                sup=weight_sup,
                disc=weight_disc,
            ),
            shuffle=shuffle,
            precision=precision,
            restore_best=bool(restore_best),
        )
        checkpointing = None
        if checkpoint_dir is not None:
            checkpointing = Checkpointing(
                directory=Path(checkpoint_dir),
                every=int(checkpoint_every),
                resume=bool(resume),
                fingerprint=self._fingerprint(),
            )
        was_trained = self.is_trained
        if not was_trained:
            # Initialise the weights under the seed too, so that the seed fixes the whole run.
            torch.manual_seed(plan.seed)
            self.module = self._build_module()
        try:
            result = train_module(
                self.module,
                self.data,
                plan,
                self.device,
                settings.progress if progress is None else progress,
                checkpointing,
                ctx,
            )
        except DivergenceError as err:
            if err.result is not None:
                self._record_run(plan, err.result, was_trained)
            raise
        self._record_run(plan, result, was_trained)
        if result.interrupted:
            warnings.warn(self._interrupted_message(result, plan, checkpoint_dir), UserWarning, 2)
        return self

    def _record_run(self, plan: TrainingPlan, result: TrainingResult, was_trained: bool) -> None:
        """Keep the history and settings of a run (also one stopped by Ctrl-C or divergence)."""
        self.history = pd.DataFrame(result.history)
        self.train_info = {
            "max_epochs": plan.max_epochs,
            "lr": plan.lr,
            "batch_size": result.batch_size,
            "validation_size": plan.validation_size,
            "labelled_fraction": plan.labelled_fraction,
            "seed": plan.seed,
            "n_epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "restore_best": plan.restore_best,
            "kept_epoch": result.kept_epoch,
            "stop_reason": result.stop_reason,
            "n_train": result.n_train,
            "n_validation": result.n_validation,
            "resumed_from_epoch": result.resumed_from,
            "shuffle": plan.shuffle,
            "precision": plan.precision,
            "device": str(self.device),
            "processes": parallel.from_environment().world_size,
        }
        self.is_trained = was_trained or result.kept_epoch > 0
        if self.is_trained:
            self._store_uns()

    @staticmethod
    def _interrupted_message(result: TrainingResult, plan: TrainingPlan, checkpoint_dir) -> str:
        kept = (
            f"the weights of the {kept_weights_name(plan)} ({result.kept_epoch}) are kept"
            if result.kept_epoch
            else "no epoch was completed, so the model is not trained"
        )
        if checkpoint_dir is None:
            how = (
                "Pass checkpoint_dir=... to make a run resumable; calling model.train() again "
                "now continues from the current weights with a fresh optimiser."
            )
        elif result.checkpoint_epoch:
            how = (
                f"To continue from the checkpoint of epoch {result.checkpoint_epoch}, call "
                f"model.train(..., checkpoint_dir={str(checkpoint_dir)!r}, resume=True) with "
                "the same settings."
            )
        else:
            how = (
                "No checkpoint was written yet; call model.train(...) again with "
                f"checkpoint_dir={str(checkpoint_dir)!r}, resume=True to start over."
            )
        return f"Training {result.stop_reason}: {kept}. {how}"

    def _fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must share with this model to be resumed by it."""
        digest = hashlib.sha256()
        for name in self.data.obs_names:
            digest.update(str(name).encode() + b"\0")
        features = {}
        for m in self.data.modalities:
            f = hashlib.sha256()
            for name in self.data.var_names[m]:
                f.update(str(name).encode() + b"\0")
            features[m] = [f.hexdigest(), int(self.data.counts[m].nnz)]
        return {
            "format": FORMAT_VERSION,
            "init_params": self.init_params,
            "cells": [self.data.n_cells, digest.hexdigest()],
            "features": features,
            "batches": [str(b) for b in self.data.batch_categories],
        }

    def _store_uns(self) -> None:
        entry = {k: v for k, v in self.init_params.items() if v is not None}
        entry["train"] = dict(self.train_info)
        entry["version"] = __version__
        entry["modalities"] = list(self.data.modalities)
        self.mdata.uns["mmaavi"] = entry

    def _check_trained(self) -> None:
        if not self.is_trained:
            raise RuntimeError("The model is not trained yet: call model.train() first.")

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def _encode(self, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """q(z|x) mean and scale, attention weights and q(c|z) for every cell, in chunks.

        A chunk reads only the encoder inputs (never the dense counts) and its results go
        straight into preallocated arrays, so memory beyond the outputs is one chunk's, whatever
        the number of cells (``batch_size``, default ``mmaavi.settings.inference_batch_size``).
        """
        self._check_trained()
        self.module.eval()
        batch_size = settings.inference_batch_size if batch_size is None else int(batch_size)
        n = self.data.n_cells
        n_latent = self.init_params["n_latent"]
        outs = {
            "z": np.empty((n, n_latent), dtype=np.float32),
            "z_scale": np.empty((n, n_latent), dtype=np.float32),
            "attention": np.empty((n, len(self.data.modalities)), dtype=np.float32),
            "components": np.empty((n, self.init_params["n_components"]), dtype=np.float32),
        }
        for chunk in sequential_batches(n, batch_size):
            batch = to_device(self.data.minibatch(chunk, targets=False), self.device)
            qz, attention = self.module.encode(batch)
            rows = slice(int(chunk[0]), int(chunk[-1]) + 1)
            outs["z"][rows] = qz.loc.cpu().numpy()
            outs["z_scale"][rows] = qz.scale.cpu().numpy()
            outs["attention"][rows] = attention.cpu().numpy()
            outs["components"][rows] = self.module.component_probabilities(qz.loc).cpu().numpy()
        return outs

    def get_latent_representation(self, key_added: str = "X_mmaavi") -> np.ndarray:
        """Posterior mean of z, (n_cells, n_latent), rows in ``mdata.obs_names`` order.

        Also stored in ``mdata.obsm[key_added]``.
        """
        z = self._encode()["z"]
        self.mdata.obsm[key_added] = z
        return z

    def get_attention(self) -> pd.DataFrame:
        """Attention weight of each modality per cell (rows sum to 1; 0 where not measured)."""
        att = self._encode()["attention"]
        return pd.DataFrame(att, index=self.data.obs_names, columns=list(self.data.modalities))

    def get_component_probabilities(self) -> pd.DataFrame:
        """q(c|z) per cell, (n_cells, n_components); columns are class names when labelled."""
        probs = self._encode()["components"]
        return pd.DataFrame(probs, index=self.data.obs_names, columns=self._component_names())

    def _component_names(self) -> list[str]:
        names = (
            [str(c) for c in self.data.label_categories]
            if self.data.label_categories is not None
            else []
        )
        return names + [
            f"component_{k}" for k in range(len(names), self.init_params["n_components"])
        ]

    def predict_labels(self) -> pd.DataFrame:
        """Predicted class and class probabilities per cell (semi-supervised mode only).

        Extra components beyond the classes are left out and the probabilities renormalised.
        """
        if self.data.label_categories is None:
            raise ValueError(
                "predict_labels needs a model built with label_key=...; this one has none."
            )
        probs = self._encode()["components"][:, : len(self.data.label_categories)]
        probs = probs / probs.sum(axis=1, keepdims=True)
        classes = list(self.data.label_categories)
        table = pd.DataFrame(probs, index=self.data.obs_names, columns=[str(c) for c in classes])
        table.insert(
            0,
            "label",
            pd.Categorical(np.asarray(classes, dtype=object)[probs.argmax(1)], categories=classes),
        )
        return table

    @torch.no_grad()
    def get_feature_embeddings(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Mean and standard deviation of q(V), each (n_features_total, n_latent).

        Rows are indexed by (modality, feature).
        """
        self._check_trained()
        self.module.eval()
        qv = self.module.feature_embeddings()
        index = pd.MultiIndex.from_tuples(
            [(m, f) for m in self.data.modalities for f in self.data.var_names[m]],
            names=["modality", "feature"],
        )
        return (
            pd.DataFrame(qv.loc.cpu().numpy(), index=index),
            pd.DataFrame(qv.scale.cpu().numpy(), index=index),
        )

    @torch.no_grad()
    def impute(
        self,
        modality: str,
        batch: str | None = None,
        library_size: float = 1e4,
        batch_size: int | None = None,
        out: str | Path | None = None,
    ) -> pd.DataFrame | np.ndarray:
        """Decode ``modality`` for every cell, including cells that never measured it.

        Parameters
        ----------
        modality
            Modality to decode.
        batch
            Reference batch whose decoder parameters are used; ``None`` averages over the batches
            that measured ``modality`` (the others never trained its per-batch parameters).
        library_size
            Fixed library size of count models (the output is expression per ``library_size``);
            ignored by Bernoulli (probabilities) and Normal (means).
        batch_size
            Cells decoded at once (default ``mmaavi.settings.inference_batch_size``).
        out
            A new ``.npy`` file to write the values to, chunk by chunk, instead of holding them
            in memory (n_cells x n_features floats can exceed it: 1M cells x 25k peaks is 100
            GB). An existing file is never overwritten.

        Returns
        -------
        DataFrame (n_cells, n_features of ``modality``), rows in ``mdata.obs_names`` order and
        columns the modality's features; with ``out``, the file opened read-only as a
        :class:`numpy.memmap` of the same shape (rows and columns in the same order).
        """
        self._check_trained()
        if modality not in self.data.modalities:
            raise KeyError(
                f"Unknown modality {modality!r}; expected one of {list(self.data.modalities)}."
            )
        if batch is None:
            batches = self.data.measuring_batches(modality)
        else:
            pos = self.data.batch_categories.get_indexer([batch])[0]
            if pos < 0:
                raise KeyError(
                    f"Unknown batch {batch!r}; expected one of {list(self.data.batch_categories)}."
                )
            batches = np.array([pos])
        if out is not None and Path(out).exists():
            raise FileExistsError(
                f"impute(out={str(out)!r}): the file exists; choose a new file name (it is never "
                "overwritten)."
            )
        batch_size = settings.inference_batch_size if batch_size is None else int(batch_size)
        self.module.eval()
        v = self.module.feature_embeddings().loc
        z_all = self._encode(batch_size)["z"]
        scale = 1.0 if self.data.likelihoods[modality] in ("bernoulli", "normal") else library_size
        shape = (self.data.n_cells, self.data.n_features(modality))
        if out is None:
            values = np.empty(shape, dtype=np.float32)
        else:
            values = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape)
        for chunk in sequential_batches(self.data.n_cells, batch_size):
            rows = slice(int(chunk[0]), int(chunk[-1]) + 1)
            z = torch.from_numpy(z_all[rows]).to(self.device)
            acc = torch.zeros(len(chunk), shape[1], device=self.device)
            for b in batches:
                b_idx = torch.full((len(chunk),), int(b), dtype=torch.long, device=self.device)
                acc += self.module.decode_normalised(modality, z, v, b_idx, 1.0)
            values[rows] = (acc / len(batches) * scale).cpu().numpy()
        if out is not None:
            values.flush()
            del values
            return np.load(out, mmap_mode="r")
        return pd.DataFrame(
            values, index=self.data.obs_names, columns=self.data.var_names[modality]
        )

    def differential(
        self,
        groupby: str,
        group1: Any = None,
        group2: Any = None,
        **kwargs: Any,
    ) -> pd.DataFrame:
        """Differential features with Bayes factors between groups of cells (MODEL.md §10).

        Every modality is decoded for every drawn cell (also where it was not measured), at a
        fixed library size and averaged over batches, so that neither missing modalities, library
        size nor batch bias the comparison. See :func:`mmaavi.differential.differential` for the
        arguments (``modality``, ``mode``, ``delta``, ``fdr_target``, ``n_samples``,
        ``batch_correction``, ``seed``, ...) and the meaning of every column.

        Returns
        -------
        DataFrame with scvi-tools-compatible columns plus ``feature`` and ``modality``, sorted by
        ``bayes_factor`` within each comparison.
        """
        from .differential import differential

        return differential(self, groupby, group1, group2, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model to a directory: weights (``model.pt``) and metadata (``model.json``).

        The data are not saved; pass the same MuData to :meth:`load`. In a data-parallel run
        (``torchrun``) only process 0 writes; the others return the path.
        """
        path = Path(path)
        if not parallel.from_environment().is_main:
            logger.info(
                "save: process %d leaves writing to process 0", parallel.from_environment().rank
            )
            return path
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise FileExistsError(
                f"{path} exists and is not empty; pass overwrite=True to replace it."
            )
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "mmaavi_version": __version__,
            "init_params": self.init_params,
            "modalities": list(self.data.modalities),
            "var_names": {
                m: [str(f) for f in self.data.var_names[m]] for m in self.data.modalities
            },
            "batch_categories": [str(b) for b in self.data.batch_categories],
            "is_trained": self.is_trained,
            "train_info": self.train_info,
            "history": self.history.to_dict(orient="list"),
        }
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        # each file is written to a temporary name and renamed: never half-written
        tmp = path / (_WEIGHTS_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path / _WEIGHTS_FILE)
        tmp = path / (_META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1, default=str))
        tmp.replace(path / _META_FILE)
        return path

    @classmethod
    def load(cls, path: str | Path, mdata, device: str | torch.device | None = None) -> MMAAVI:
        """Load a model saved by :meth:`save` for the same data.

        Weights are read with ``torch.load(weights_only=True)`` and metadata as JSON, so a model
        file can never run code. The data must have the same modalities, features and batches;
        they may be in memory or backed (out-of-core) whichever the model was trained on.
        ``device`` defaults to ``mmaavi.settings.device``.
        """
        path = Path(path)
        meta_file, weights_file = path / _META_FILE, path / _WEIGHTS_FILE
        if not meta_file.is_file() or not weights_file.is_file():
            raise FileNotFoundError(
                f"{path} is not an mmaavi model directory: expected {_META_FILE} and {_WEIGHTS_FILE}."
            )
        try:
            meta = json.loads(meta_file.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{meta_file} is not valid JSON ({err}); re-save the model.") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_file} is not mmaavi model metadata (a JSON object).")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"{path} was written in model format {version!r}; this mmaavi ({__version__}) reads "
                f"format {FORMAT_VERSION} and older. Upgrade mmaavi to load it."
            )
        missing = sorted(_META_KEYS - set(meta))
        if missing:
            raise ValueError(
                f"{meta_file} lacks {', '.join(missing)}: not a complete mmaavi model. Re-save "
                "the model with MMAAVI.save()."
            )
        try:
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise  # a file holding more than tensors: refused before anything in it runs
        except (RuntimeError, EOFError, OSError) as err:
            raise ValueError(
                f"cannot read the weights in {weights_file} ({err}); the file is truncated or "
                "corrupt. Re-save the model."
            ) from None
        params = dict(meta["init_params"])
        _check_same_data(meta, mdata, path)
        graph = _graph_from_state(state, meta["var_names"])
        model = cls(mdata, **params, graph=graph)
        batches = [str(b) for b in model.data.batch_categories]
        if batches != meta["batch_categories"]:
            raise ValueError(
                f"The batches differ from those the model in {path} was trained on "
                f"({meta['batch_categories']} saved, {batches} now)."
            )
        model.module.load_state_dict(state)
        model.device = _resolve_device(device)
        model.module.to(model.device)
        model.is_trained = bool(meta["is_trained"])
        model.train_info = meta.get("train_info", {})
        model.history = pd.DataFrame(meta.get("history", {}))
        return model


def _check_same_data(meta: Mapping[str, Any], mdata, path: Path) -> None:
    """Refuse data whose modalities or features differ from those a saved model was trained on."""
    modalities = list(mdata.mod)
    if modalities != meta["modalities"]:
        raise ValueError(
            f"The model in {path} was trained on modalities {meta['modalities']}; the data have "
            f"{modalities}. Load the model with the data it was trained on."
        )
    for m in modalities:
        saved = meta["var_names"][m]
        now = [str(f) for f in mdata.mod[m].var_names]
        if saved != now:
            diff = sorted(set(saved) ^ set(now))[:5]
            raise ValueError(
                f"The features of modality '{m}' differ from those the model in {path} was trained "
                f"on ({len(saved)} saved, {len(now)} now; e.g. {diff or 'same names, other order'}). "
                "Load the model with the data it was trained on."
            )


def _graph_from_state(state: Mapping[str, torch.Tensor], var_names: Mapping[str, list[str]]):
    """The saved guidance graph as a sparse adjacency, so the module is rebuilt with it."""
    import scipy.sparse as sp

    index = state["graph.edge_index"].numpy()
    values = (state["graph.edge_weight"] * state["graph.edge_sign"]).numpy()
    n = sum(len(v) for v in var_names.values())
    return sp.coo_matrix((values, (index[0], index[1])), shape=(n, n)).tocsr()
