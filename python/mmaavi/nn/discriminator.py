"""Adversarial batch discriminator behind a gradient-reversal layer (MODEL.md §4)."""

from __future__ import annotations

import torch
from torch import nn

from ._mlp import mlp


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.factor * grad, None


def reverse_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-factor`` backward."""
    return _GradientReversal.apply(x, factor)


class BatchDiscriminator(nn.Module):
    """Predicts the adversarial target (the batch by default) from the posterior mean of z.

    Training minimises its cross-entropy; the reversed gradient makes the encoder maximise it,
    which removes batch information from z.

    Parameters
    ----------
    n_latent
        Dimension of z.
    n_classes
        Number of adversarial categories (at least 2).
    reversal
        Gradient-reversal factor.
    label_smoothing
        Label smoothing of the cross-entropy.
    dropout
        Dropout rate.
    """

    def __init__(
        self,
        n_latent: int,
        n_classes: int,
        reversal: float = 20.0,
        label_smoothing: float = 0.1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.reversal = reversal
        self.net = nn.Sequential(
            mlp(n_latent, (256, 256), dropout=dropout), nn.Linear(256, n_classes)
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, z_mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the discriminator (scalar), gradient reversed into ``z_mean``."""
        logits = self.net(reverse_gradient(z_mean, self.reversal))
        return self.criterion(logits, target)
