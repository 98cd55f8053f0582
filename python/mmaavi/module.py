"""The mmAAVI torch module: inference, generative model and loss, on tensors only.

Generative story (Rong et al., Briefings in Bioinformatics 2024, doi 10.1093/bib/bbae540):
a component ``c ~ Cat(1/K)`` and ``u ~ N(0, I)`` give the cell state ``z ~ N(f(c,u), g(c,u))``;
features carry embeddings ``V`` regularised by a guidance graph; each modality's counts are drawn
from a likelihood whose parameters come from a hybrid decoder of ``z`` and ``V`` with per-batch
affine terms. Inference fuses per-modality encoders with masked, auto-scaling attention, and a
gradient-reversed discriminator removes batch information from ``z``.

This module never sees AnnData: minibatches are ``dict[str, Tensor]`` keyed by
:mod:`mmaavi._constants`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Normal

from . import _constants as K
from .nn import (
    AttentionFusion,
    BatchDiscriminator,
    Decoders,
    GraphEncoder,
    MixtureLatent,
    ModalityEncoders,
)
from .nn._mlp import present_rows
from .nn.graph import kl_standard_normal
from .nn.likelihoods import SparseCounts, normalised_mean
from .nn.wide import SparseRows

#: names of the loss terms, in the order they are reported
LOSS_TERMS = ("nll", "kl_z", "kl_u", "kl_c", "kl_v", "graph", "sup", "disc")


@dataclass
class LossWeights:
    """Weights of the loss terms (MODEL.md §7)."""

    kl_z: float = 1.0
    kl_u: float = 1.0
    kl_c: float = 1.0
    kl_v: float = 0.01
    #: ``None`` means the number of modalities
    graph: float | None = None
    sup: float = 1.0
    disc: float = 1.0


@dataclass
class LossOutput:
    """Named loss terms of one minibatch (unweighted) and the weighted objective.

    ``monitor`` is the objective without the discriminator term: the quantity validation,
    the LR schedule and early stopping watch (the adversarial term rises as batches mix).
    """

    total: torch.Tensor
    monitor: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    nll: dict[str, torch.Tensor] = field(default_factory=dict)


class MMAAVIModule(nn.Module):
    """mmAAVI on tensors.

    Parameters
    ----------
    n_inputs
        Encoder input width per modality (ordered: the order of the observation-mask columns).
    n_features
        Number of features per modality (same keys and order).
    n_batches
        Number of batches (per-batch decoder parameters).
    n_adversarial
        Number of discriminator classes; fewer than 2 disables the discriminator.
    n_components
        Number of mixture components K (the number of classes in semi-supervised mode).
    likelihoods
        Likelihood per modality.
    edge_index, edge_weight, edge_sign
        The guidance graph over the concatenated features (modality order), both directions and
        self-loops included.
    n_latent, n_latent_u
        Dimensions of z and u.
    encoder_hidden
        Widths of each modality encoder; the last is the width of the fused representation.
    mix_weight
        Weight of the decoders' dot branch, in (0, 1).
    dropout
        Dropout rate everywhere.
    reversal
        Gradient-reversal factor of the discriminator.
    label_smoothing
        Label smoothing of the discriminator's cross-entropy.
    prior_c
        p(c), (n_components,) positive weights (normalised here); default uniform.
    """

    def __init__(
        self,
        n_inputs: Mapping[str, int],
        n_features: Mapping[str, int],
        n_batches: int,
        n_adversarial: int,
        n_components: int,
        likelihoods: Mapping[str, str],
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        edge_sign: torch.Tensor,
        n_latent: int = 30,
        n_latent_u: int = 30,
        encoder_hidden: Sequence[int] = (256, 256, 200),
        mix_weight: float = 0.9,
        dropout: float = 0.2,
        reversal: float = 20.0,
        label_smoothing: float = 0.1,
        prior_c: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if list(n_inputs) != list(n_features):
            raise ValueError(
                "n_inputs and n_features must list the same modalities in the same order."
            )
        self.modalities = tuple(n_inputs)
        self.likelihoods = dict(likelihoods)
        self.n_components = n_components
        if prior_c is None:
            prior_c = torch.full((n_components,), 1.0 / n_components)
        if prior_c.shape != (n_components,) or not bool((prior_c > 0).all()):
            raise ValueError(
                f"prior_c must hold {n_components} positive probabilities; found shape "
                f"{tuple(prior_c.shape)}."
            )
        # derived from the data at every build (labels), so not part of the saved weights
        self.register_buffer("log_prior_c", torch.log(prior_c / prior_c.sum()), persistent=False)
        self.encoders = ModalityEncoders(n_inputs, encoder_hidden, dropout)
        self.fusion = AttentionFusion(self.encoders.n_out)
        self.latent = MixtureLatent(
            self.encoders.n_out, n_latent, n_latent_u, n_components, dropout
        )
        offsets = [0]
        for m in self.modalities:
            offsets.append(offsets[-1] + n_features[m])
        self.feature_slices = {
            m: (offsets[j], offsets[j + 1]) for j, m in enumerate(self.modalities)
        }
        self.graph = GraphEncoder(offsets[-1], n_latent, edge_index, edge_weight, edge_sign)
        self.decoders = Decoders(n_latent, n_features, n_batches, likelihoods, mix_weight, dropout)
        self.discriminator = (
            BatchDiscriminator(n_latent, n_adversarial, reversal, label_smoothing, dropout)
            if n_adversarial >= 2
            else None
        )

    # ------------------------------------------------------------------ inference
    def _encoder_inputs(
        self, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor | SparseRows]:
        """Each modality's encoder input: the dense ``enc`` entry, or the wide input's pieces."""
        inputs: dict[str, torch.Tensor | SparseRows] = {}
        for m in self.modalities:
            dense = batch.get(K.mod_key(K.ENC, m))
            inputs[m] = (
                dense
                if dense is not None
                else SparseRows(*(batch[K.mod_key(key, m)] for key in K.ENC_SPARSE))
            )
        return inputs

    def encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[Normal, torch.Tensor]:
        """q(z|x) and the attention weights (n_cells, n_modalities)."""
        h = self.encoders(self._encoder_inputs(batch), batch[K.OBS_MASK])
        fused, attention = self.fusion(h, batch[K.OBS_MASK])
        return self.latent.qz(fused), attention

    def component_probabilities(self, z: torch.Tensor) -> torch.Tensor:
        """q(c|z) as probabilities, (n_cells, n_components)."""
        return torch.softmax(self.latent.c_logits(z), dim=1)

    def feature_embeddings(self) -> Normal:
        """q(V), (n_features_total, n_latent)."""
        return self.graph()

    def split_v(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """The block of V belonging to each modality."""
        return {m: v[a:b] for m, (a, b) in self.feature_slices.items()}

    # ------------------------------------------------------------------ generative
    def likelihood(
        self,
        modality: str,
        z: torch.Tensor,
        v: torch.Tensor,
        batch_index: torch.Tensor,
        library: torch.Tensor,
        feature_mask: torch.Tensor | None = None,
    ) -> Distribution:
        """p(x_m | z, V) for cells with latent ``z``; ``v`` is the full V (all modalities)."""
        a, b = self.feature_slices[modality]
        return self.decoders[modality](z, v[a:b], batch_index, library, feature_mask)

    def decode_normalised(
        self,
        modality: str,
        z: torch.Tensor,
        v: torch.Tensor,
        batch_index: torch.Tensor,
        library: float = 1.0,
    ) -> torch.Tensor:
        """Expected value per unit library (count models) or the mean (others), (n_cells, F_m)."""
        lib = torch.full((z.shape[0], 1), float(library), device=z.device)
        px = self.likelihood(modality, z, v, batch_index, lib)
        return normalised_mean(self.likelihoods[modality], px, lib)

    # ------------------------------------------------------------------ loss
    @staticmethod
    def _targets(batch: Mapping[str, torch.Tensor], m: str) -> torch.Tensor | SparseCounts:
        """The raw counts of ``m``: dense, or a wide modality's non-zero entries."""
        dense = batch.get(K.mod_key(K.X, m))
        if dense is not None:
            return dense
        parts = [batch[K.mod_key(key, m)] for key in K.X_SPARSE]
        return SparseCounts(*parts, n_rows=len(batch[K.BATCH]))

    def loss(self, batch: Mapping[str, torch.Tensor], weights: LossWeights) -> LossOutput:
        """Sample the posterior once and evaluate every loss term on the minibatch."""
        obs_mask = batch[K.OBS_MASK]
        # positions of the cells having each modality (None: all of them), shared by the
        # encoders and the decoders
        rows = [present_rows(obs_mask[:, j]) for j in range(len(self.modalities))]
        inputs = self._encoder_inputs(batch)
        fused, _ = self.fusion(self.encoders(inputs, obs_mask, rows), obs_mask)
        qz = self.latent.qz(fused)
        z = qz.rsample()

        logits_c = self.latent.c_logits(z)
        c = F.gumbel_softmax(logits_c, tau=1.0, hard=False)
        labels = batch.get(K.LABEL)
        labelled = (labels >= 0) if labels is not None else torch.zeros_like(obs_mask[:, 0])
        any_labelled = bool(labelled.any())
        if any_labelled:
            one_hot = F.one_hot(labels.clamp_min(0), self.n_components).to(c.dtype)
            c = torch.where(labelled.unsqueeze(1), one_hot, c)
        qu = self.latent.qu(c, z)
        u = qu.rsample()
        pz = self.latent.pz(c, u)

        kl_z = (qz.log_prob(z) - pz.log_prob(z)).sum(dim=1).mean()
        kl_u = kl_standard_normal(qu).sum(dim=1).mean()
        log_q_c = torch.log_softmax(logits_c, dim=1)
        kl_c_cell = (log_q_c.exp() * (log_q_c - self.log_prior_c)).sum(dim=1)
        if not any_labelled:
            kl_c = kl_c_cell.mean()
            sup = kl_c_cell.new_zeros(())
        else:
            unlabelled = ~labelled
            kl_c = (
                kl_c_cell[unlabelled].mean() if bool(unlabelled.any()) else kl_c_cell.new_zeros(())
            )
            sup = F.nll_loss(log_q_c[labelled], labels[labelled])

        qv = self.graph()
        v = qv.rsample()
        kl_v = self.graph.kl(qv)
        graph_nll = self.graph.reconstruction_nll(v)

        batch_index = batch[K.BATCH]
        nll: dict[str, torch.Tensor] = {}
        for j, m in enumerate(self.modalities):
            x = self._targets(batch, m)
            fmask = batch.get(K.mod_key(K.FMASK, m))
            z_m, batch_m = z, batch_index
            r = rows[j]
            if r is not None:
                if r.numel() == 0:
                    continue
                x, z_m, batch_m = (
                    x.select_rows(r) if isinstance(x, SparseCounts) else x.index_select(0, r),
                    z.index_select(0, r),
                    batch_m.index_select(0, r),
                )
                fmask = fmask.index_select(0, r) if fmask is not None else None
            if isinstance(x, SparseCounts):
                library = (x if fmask is None else x.measured(fmask)).row_sums()
            else:
                library = (x if fmask is None else x * fmask).sum(dim=1, keepdim=True)
            a, b = self.feature_slices[m]
            log_lik = self.decoders[m].log_likelihood(x, z_m, v[a:b], batch_m, library, fmask)
            nll[m] = -log_lik.mean()
        nll_total = torch.stack(list(nll.values())).sum()

        if self.discriminator is not None:
            disc = self.discriminator(qz.loc, batch[K.ADV])
        else:
            disc = nll_total.new_zeros(())

        graph_weight = weights.graph if weights.graph is not None else float(len(self.modalities))
        monitor = (
            nll_total
            + weights.kl_z * kl_z
            + weights.kl_u * kl_u
            + weights.kl_c * kl_c
            + weights.kl_v * kl_v
            + graph_weight * graph_nll
            + weights.sup * sup
        )
        terms = {
            "nll": nll_total,
            "kl_z": kl_z,
            "kl_u": kl_u,
            "kl_c": kl_c,
            "kl_v": kl_v,
            "graph": graph_nll,
            "sup": sup,
            "disc": disc,
        }
        return LossOutput(
            total=monitor + weights.disc * disc, monitor=monitor, terms=terms, nll=nll
        )
