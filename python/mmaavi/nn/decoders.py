"""Hybrid decoders: a dot product with the feature embeddings V plus an MLP (MODEL.md §6)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.distributions import Distribution

from ._hybrid_output import hybrid_output
from ._mlp import mlp, run_batchnorm_safe
from .likelihoods import SparseCounts, build_likelihood, nb_log_likelihood


class HybridDecoder(nn.Module):
    """Decoder of one modality.

    ``o = w * (z V_m^T) + (1 - w) * MLP(z)``; per batch ``l = softplus(alpha_s) * o + beta_s``;
    then the likelihood's parameters from ``l`` (see :func:`build_likelihood`).

    Parameters
    ----------
    n_latent
        Dimension of z.
    n_features
        Number of features of the modality.
    n_batches
        Number of batches (for the affine, dispersion and zero-inflation parameters).
    likelihood
        ``"nb"``, ``"zinb"``, ``"bernoulli"`` or ``"normal"``.
    mix_weight
        Weight w of the dot branch, strictly in (0, 1).
    dropout
        Dropout rate of the MLP branch.
    """

    def __init__(
        self,
        n_latent: int,
        n_features: int,
        n_batches: int,
        likelihood: str = "nb",
        mix_weight: float = 0.9,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.likelihood = likelihood
        self.mix_weight = mix_weight
        self.mlp = nn.Sequential(
            mlp(n_latent, (256, 256), dropout=dropout), nn.Linear(256, n_features)
        )
        self.scale = nn.Parameter(torch.zeros(n_batches, n_features))
        self.shift = nn.Parameter(torch.zeros(n_batches, n_features))
        # log inverse dispersion (NB/ZINB) or log standard deviation (Normal): theta = 1 at init
        self.log_theta = nn.Parameter(torch.zeros(n_batches, n_features))
        self.zi_logits = nn.Parameter(torch.zeros(n_batches, n_features))

    def logits(self, z: torch.Tensor, v: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """``l``, (n_cells, n_features): the hybrid output under each cell's batch affine."""
        head = self.mlp[-1]
        hidden = run_batchnorm_safe(self.mlp[0], z)
        o = hybrid_output(hidden, head.weight, head.bias, z, v, self.mix_weight)
        # softplus on the (n_batches, F) table, then gather: one row per batch, not per cell
        scale = nn.functional.softplus(self.scale).index_select(0, batch)
        return torch.addcmul(self.shift.index_select(0, batch), scale, o)

    def forward(
        self,
        z: torch.Tensor,
        v: torch.Tensor,
        batch: torch.Tensor,
        library: torch.Tensor,
        feature_mask: torch.Tensor | None = None,
    ) -> Distribution:
        """Likelihood of the modality for cells with latent ``z`` (n_cells, n_latent).

        ``v`` is this modality's block of V (n_features, n_latent); ``batch`` int64 (n_cells,)
        selects the per-batch parameters; ``library`` (n_cells, 1).
        """
        return build_likelihood(
            self.likelihood,
            self.logits(z, v, batch),
            library,
            self.log_theta[batch],
            self.zi_logits[batch],
            feature_mask,
        )

    def log_likelihood(
        self,
        x: torch.Tensor | SparseCounts,
        z: torch.Tensor,
        v: torch.Tensor,
        batch: torch.Tensor,
        library: torch.Tensor,
        feature_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """log p(x | z, V) per cell, summed over the measured features, (n_cells,).

        Arguments as in :meth:`forward`, with ``x`` the raw data (n_cells, n_features) or its
        non-zero entries (:class:`~mmaavi.nn.likelihoods.SparseCounts`). The NB case takes the
        sparse-aware path of :func:`nb_log_likelihood`, the training hot spot.
        """
        if self.likelihood == "nb":
            logits = self.logits(z, v, batch)
            log_theta = self.log_theta.index_select(0, batch)
            return nb_log_likelihood(x, logits, library, log_theta, feature_mask)
        if isinstance(x, SparseCounts):  # only the NB path reads the counts sparsely
            x = x.to_dense(v.shape[0])
        px = self.forward(z, v, batch, library, feature_mask)
        target = (x > 0).to(x.dtype) if self.likelihood == "bernoulli" else x
        log_prob = px.log_prob(target)
        if feature_mask is not None:
            log_prob = log_prob * feature_mask
        return log_prob.sum(dim=1)


class Decoders(nn.ModuleDict):
    """One :class:`HybridDecoder` per modality, keyed by modality name."""

    def __init__(
        self,
        n_latent: int,
        n_features: Mapping[str, int],
        n_batches: int,
        likelihoods: Mapping[str, str],
        mix_weight: float,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(
            {
                m: HybridDecoder(n_latent, n, n_batches, likelihoods[m], mix_weight, dropout)
                for m, n in n_features.items()
            }
        )
