"""Graph encoder of the feature embeddings V and the graph reconstruction loss (MODEL.md §5).

Every feature of every modality is a node of one signed, weighted guidance graph. Its learnable
node table is propagated one step along the graph and mapped to a Normal posterior over V;
``V`` links z to the features in the decoders' dot branch.

The propagation is one gather of the edges' sources and one ``scatter_add_`` onto their targets:
the same sum (bit for bit) a torch-geometric ``MessagePassing(aggr="add")`` layer computes, without
importing torch-geometric, whose import pulls in ``torch._dynamo`` and sympy: ``import torch,
torch_geometric`` took ~180 MB more resident memory and ~2 s more CPU than ``import torch`` alone
(``import torch, mmaavi`` fell by ~145 MB without it), in every process, for one line of arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

_STD_EPS = 1e-7
#: rounds of re-drawing negatives that hit an existing edge; what still collides is dropped
_NEGATIVE_REDRAWS = 3
#: largest graph (n_nodes^2) whose edge set is also held as a bitset for the clash check
_BITSET_MAX_BITS = 2**27


def kl_standard_normal(q: Normal) -> torch.Tensor:
    """Elementwise KL(q || N(0, 1)): torch's ``kl_divergence(q, Normal(0, 1))`` formula with the
    prior's zero mean and unit scale folded in (the same values, without the prior's tensors)."""
    var_ratio = q.scale.pow(2)
    return 0.5 * (var_ratio + q.loc.pow(2) - 1 - var_ratio.log())


def signed_propagation(
    x: torch.Tensor, edge_index: torch.Tensor, norm: torch.Tensor
) -> torch.Tensor:
    """``out_t = sum over edges (s, t) of norm_st * x_s``: one step along the graph.

    ``x`` (n_nodes, d); ``edge_index`` int64 (2, n_edges), row 0 the sources, row 1 the targets;
    ``norm`` (n_edges,). Nodes no edge points to get zeros.
    """
    messages = norm.unsqueeze(-1) * x.index_select(0, edge_index[0])
    targets = edge_index[1].unsqueeze(-1).expand_as(messages)
    return x.new_zeros(x.shape).scatter_add_(0, targets, messages)


class GraphEncoder(nn.Module):
    """Posterior over feature embeddings ``V`` given the guidance graph.

    Parameters
    ----------
    n_nodes
        Total number of features over all modalities.
    n_latent
        Embedding dimension (equal to the dimension of z).
    edge_index
        int64 (2, n_edges): source and target node of each directed edge. An undirected
        graph lists both directions; self-loops included.
    edge_weight
        float (n_edges,), positive.
    edge_sign
        float (n_edges,), +1 or -1.
    n_negatives
        Negative samples per positive edge in the reconstruction loss.
    edge_batch_size
        Positive edges drawn per loss evaluation.
    """

    def __init__(
        self,
        n_nodes: int,
        n_latent: int,
        edge_index: torch.Tensor,
        edge_weight: torch.Tensor,
        edge_sign: torch.Tensor,
        n_negatives: int = 10,
        edge_batch_size: int = 1024,
    ) -> None:
        super().__init__()
        self.n_nodes = n_nodes
        self.n_negatives = n_negatives
        self.edge_batch_size = edge_batch_size
        self.table = nn.Parameter(torch.zeros(n_nodes, n_latent))
        self.loc = nn.Linear(n_latent, n_latent)
        self.scale = nn.Linear(n_latent, n_latent)

        edge_weight = edge_weight.float()
        edge_sign = edge_sign.float()
        deg_in = edge_weight.new_zeros(n_nodes).scatter_add_(0, edge_index[1], edge_weight)
        norm = edge_sign * edge_weight * deg_in.clamp_min(1e-12).pow(-0.5)[edge_index[1]]
        keys = edge_index[0] * n_nodes + edge_index[1]
        self.register_buffer("edge_index", edge_index.long())
        self.register_buffer("edge_weight", edge_weight)
        self.register_buffer("edge_sign", edge_sign)
        self.register_buffer("norm", norm)
        self.register_buffer("degree", deg_in)
        self.register_buffer("sorted_keys", torch.sort(keys).values)
        # membership bitset of the edge keys for the clash check of negatives, when small
        # (n_nodes^2 bits <= 16 MiB); larger graphs binary-search ``sorted_keys``. Derived,
        # so not saved with the weights.
        bits = None
        if n_nodes * n_nodes <= _BITSET_MAX_BITS:
            unique = torch.unique(keys)
            bits = torch.zeros((n_nodes * n_nodes + 63) // 64, dtype=torch.int64)
            # distinct bits of one word never carry, so the sum is their OR (bit 63 included)
            bits.index_put_(
                (unique >> 6,), torch.ones_like(unique) << (unique & 63), accumulate=True
            )
        self.register_buffer("edge_bits", bits, persistent=False)

    def forward(self) -> Normal:
        """q(V | graph): a Normal of shape (n_nodes, n_latent)."""
        h = signed_propagation(self.table, self.edge_index, self.norm)
        return Normal(self.loc(h), F.softplus(self.scale(h)) + _STD_EPS, validate_args=False)

    @staticmethod
    def kl(qv: Normal) -> torch.Tensor:
        """KL(q(V) || N(0, I)), summed over dimensions and averaged over features."""
        return kl_standard_normal(qv).sum(dim=1).mean()

    def _is_edge(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        keys = source * self.n_nodes + target
        if self.edge_bits is not None:
            return ((self.edge_bits.index_select(0, keys >> 6) >> (keys & 63)) & 1).bool()
        pos = torch.searchsorted(self.sorted_keys, keys).clamp_max(self.sorted_keys.numel() - 1)
        return self.sorted_keys.index_select(0, pos) == keys

    def _draw(
        self,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The random draws of :meth:`sample_edges`, laid out per positive.

        Returns
        -------
        source, target (int64) and sign (float) of the ``P`` positive edges; the targets of
        their negatives, int64 (P, n_negatives) (negative ``(i, j)`` has source ``source[i]`` and
        sign ``sign[i]``); and a bool (P, n_negatives) mask of the negatives to keep, or None
        when every one is kept.
        """
        n_pos = min(self.edge_batch_size, self.edge_weight.numel())
        pick = torch.multinomial(self.edge_weight, n_pos, replacement=True)
        source = self.edge_index[0].index_select(0, pick)
        target = self.edge_index[1].index_select(0, pick)
        sign = self.edge_sign.index_select(0, pick)

        neg_source = source.repeat_interleave(self.n_negatives)
        neg_target = torch.multinomial(self.degree, neg_source.numel(), replacement=True)
        clash = self._is_edge(neg_source, neg_target)
        n_clash = int(clash.sum())
        for _ in range(_NEGATIVE_REDRAWS):
            if n_clash == 0:
                break
            neg_target[clash] = torch.multinomial(self.degree, n_clash, replacement=True)
            clash = self._is_edge(neg_source, neg_target)
            n_clash = int(clash.sum())
        keep = None if n_clash == 0 else ~clash.view(n_pos, self.n_negatives)
        return source, target, sign, neg_target.view(n_pos, self.n_negatives), keep

    def sample_edges(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw positive edges (proportional to weight) and negatives (target proportional to degree).

        Returns
        -------
        source, target (int64), sign (float) and label (1 positive / 0 negative) of every drawn
        pair. Negatives keep their positive's source and sign; they are re-drawn a bounded number
        of times when they hit an existing edge, and the few that still do are left out.
        """
        source, target, sign, neg_target, keep = self._draw()
        neg_source = source.repeat_interleave(self.n_negatives)
        neg_sign = sign.repeat_interleave(self.n_negatives)
        neg_target = neg_target.reshape(-1)
        if keep is not None:
            keep = keep.reshape(-1)
            neg_source, neg_target, neg_sign = neg_source[keep], neg_target[keep], neg_sign[keep]
        label = torch.cat([torch.ones_like(sign), torch.zeros_like(neg_sign)])
        return (
            torch.cat([source, neg_source]),
            torch.cat([target, neg_target]),
            torch.cat([sign, neg_sign]),
            label,
        )

    def reconstruction_nll(self, v: torch.Tensor) -> torch.Tensor:
        """Bernoulli NLL of the sampled edges under ``logit = sign * <v_s, v_t>``.

        Positives and negatives are averaged separately and the two means averaged, so the
        negative ratio does not change the balance between them.

        The pairs are the ones :meth:`sample_edges` draws, evaluated per positive: one gather of
        the sources, one of the targets (the positive's and its negatives') and one broadcast
        dot product, rather than a gather of both ends for every pair.
        """
        source, target, sign, neg_target, keep = self._draw()
        n_pos = source.numel()
        targets = torch.cat([target.unsqueeze(1), neg_target], dim=1)  # (P, 1 + n_negatives)
        v_target = v.index_select(0, targets.reshape(-1)).view(n_pos, -1, v.shape[1])
        # multiply-and-sum beats bmm on these (P, 11, d) x (P, d) shapes on the CPU
        dots = (v_target * v.index_select(0, source).unsqueeze(1)).sum(dim=2)
        logits = sign.unsqueeze(1) * dots
        label = torch.zeros_like(logits)
        label[:, 0] = 1.0
        nll = F.binary_cross_entropy_with_logits(logits, label, reduction="none")
        pos = nll[:, 0].mean()
        if keep is None:
            if self.n_negatives == 0:
                return pos
            return (pos + nll[:, 1:].mean()) / 2
        n_keep = int(keep.sum())
        if n_keep == 0:
            return pos
        return (pos + (nll[:, 1:] * keep).sum() / n_keep) / 2
