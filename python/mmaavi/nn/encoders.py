"""Per-modality encoders and the auto-scaling attention that fuses them (MODEL.md §2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ._mlp import mlp, present_rows, run_batchnorm_safe
from .wide import SparseRows, is_wide


class ModalityEncoders(nn.Module):
    """One MLP per modality, each run only on the cells that measured it.

    Running an encoder on absent cells would feed its BatchNorm the all-zero rows of
    unmeasured cells and skew the running statistics (a flaw of the original code).
    A wide input (:func:`~mmaavi.nn.wide.is_wide`) gets a
    :class:`~mmaavi.nn.wide.WideLinear` first layer, which also takes
    :class:`~mmaavi.nn.wide.SparseRows` input.

    Parameters
    ----------
    n_inputs
        Encoder input width per modality.
    hidden
        Hidden widths; the last one is the width of each modality's representation.
    dropout
        Dropout rate.
    """

    def __init__(
        self,
        n_inputs: Mapping[str, int],
        hidden: Sequence[int] = (256, 256, 200),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.modalities = tuple(n_inputs)
        self.n_out = int(hidden[-1])
        self.nets = nn.ModuleDict(
            {m: mlp(n, hidden, dropout=dropout, wide_input=is_wide(n)) for m, n in n_inputs.items()}
        )

    def forward(
        self,
        inputs: Mapping[str, torch.Tensor | SparseRows],
        obs_mask: torch.Tensor,
        rows: Sequence[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """Encode every present modality.

        Parameters
        ----------
        inputs
            Encoder input per modality, (n_cells, n_input_m), dense or (wide inputs)
            :class:`~mmaavi.nn.wide.SparseRows`; rows of absent cells are ignored.
        obs_mask
            Observation mask, bool (n_cells, n_modalities), columns in ``self.modalities`` order.
        rows
            ``present_rows`` of each mask column, when the caller has them already.

        Returns
        -------
        Representations, (n_cells, n_modalities, n_out); zero for absent modalities.
        """
        n_cells = obs_mask.shape[0]
        columns = []
        for j, m in enumerate(self.modalities):
            r = present_rows(obs_mask[:, j]) if rows is None else rows[j]
            x, net = inputs[m], self.nets[m]
            if isinstance(x, SparseRows) and (r is None or r.numel() > 0):
                # the first layer costs per stored entry: run it on every row, keep the present
                x, net = net[0](x), net[1:]
            if r is None:  # every cell has the modality: no gather, no scatter
                h = run_batchnorm_safe(net, x)
            elif r.numel() == 0:
                h = obs_mask.new_zeros((n_cells, self.n_out), dtype=torch.float32)
            else:
                h_present = run_batchnorm_safe(net, x.index_select(0, r))
                h = h_present.new_zeros((n_cells, self.n_out)).index_copy(0, r, h_present)
            columns.append(h.to(torch.float32))
        return torch.stack(columns, dim=1)


class AttentionFusion(nn.Module):
    """Gated attention over modalities with masking ("auto-scaling").

    ``a_m = sigmoid(w1 . h_m + b1) * tanh(w2 . h_m + b2)``, shared across modalities; absent
    modalities get ``-inf`` so the softmax weights of the present ones always sum to one.

    Parameters
    ----------
    n_in
        Width of each modality's representation.
    """

    def __init__(self, n_in: int) -> None:
        super().__init__()
        self.gate = nn.Linear(n_in, 1)
        self.value = nn.Linear(n_in, 1)

    def forward(self, h: torch.Tensor, obs_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse modality representations.

        Parameters
        ----------
        h
            Representations, (n_cells, n_modalities, n_in).
        obs_mask
            Bool (n_cells, n_modalities); every row must have at least one True.

        Returns
        -------
        The fused representation (n_cells, n_in) and the weights (n_cells, n_modalities),
        exactly 0 for absent modalities.
        """
        score = (torch.sigmoid(self.gate(h)) * torch.tanh(self.value(h))).squeeze(-1)
        score = score.masked_fill(~obs_mask, float("-inf"))
        weights = torch.softmax(score, dim=1)
        fused = (weights.unsqueeze(2) * h).sum(dim=1)  # einsum's bmm is slower at these sizes
        return fused, weights
