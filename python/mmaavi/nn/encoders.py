"""Per-modality encoders and the auto-scaling attention that fuses them (MODEL.md §2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ._mlp import mlp, run_batchnorm_safe


class ModalityEncoders(nn.Module):
    """One MLP per modality, each run only on the cells that measured it.

    Running an encoder on absent cells would feed its BatchNorm the all-zero rows of
    unmeasured cells and skew the running statistics (a flaw of the original code).

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
        self.nets = nn.ModuleDict({m: mlp(n, hidden, dropout=dropout) for m, n in n_inputs.items()})

    def forward(self, inputs: Mapping[str, torch.Tensor], obs_mask: torch.Tensor) -> torch.Tensor:
        """Encode every present modality.

        Parameters
        ----------
        inputs
            Encoder input per modality, (n_cells, n_input_m); rows of absent cells are ignored.
        obs_mask
            Observation mask, bool (n_cells, n_modalities), columns in ``self.modalities`` order.

        Returns
        -------
        Representations, (n_cells, n_modalities, n_out); zero for absent modalities.
        """
        n_cells = obs_mask.shape[0]
        out = obs_mask.new_zeros((n_cells, len(self.modalities), self.n_out), dtype=torch.float32)
        for j, m in enumerate(self.modalities):
            present = obs_mask[:, j]
            if not bool(present.any()):
                continue
            h = run_batchnorm_safe(self.nets[m], inputs[m][present])
            out[present, j] = h.to(out.dtype)
        return out


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
        fused = torch.einsum("nm,nmd->nd", weights, h)
        return fused, weights
