"""RMSprop over one flat buffer: torch's algorithm with a handful of kernels per step.

torch's ``RMSprop`` loops over the parameters (123 tensors for a three-modality model) with six
kernels each, ~720 kernel launches per step; at minibatches of 32 cells that per-kernel cost was
the largest single item of a CPU training step. Here the parameters are views into one
contiguous buffer, and a step is one ``cat`` of the gradients and five kernels over the buffer.

The update is torch's non-centred RMSprop without momentum or weight decay:
``v = alpha v + (1 - alpha) g^2``; ``p -= lr g / (sqrt(v) + eps)``. As in torch, a parameter
that received no gradient in a step (e.g. the encoder of a modality no cell of the minibatch
measured) is left alone, its running average included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

#: ``state_dict()["format"]`` of this optimiser's own state layout
_FORMAT = "flat_rmsprop/1"


class FlatRMSprop(torch.optim.Optimizer):
    """RMSprop whose parameters live in one flat buffer.

    Parameters
    ----------
    params
        The parameters to optimise: floating-point, on one device, of one dtype. Their storage
        is moved into the optimiser's buffer (``p.data`` becomes a view of it); values, shapes
        and the parameters' identity are unchanged, so a module's ``state_dict`` /
        ``load_state_dict`` keep working. Do not move the module to another device afterwards.
    lr, alpha, eps
        As in :class:`torch.optim.RMSprop` (same defaults).

    Notes
    -----
    Gradients are ordinary ``p.grad`` tensors (``zero_grad`` as usual); a step gathers them into
    one buffer with a single ``cat``. :meth:`load_state_dict` also accepts the state of a
    ``torch.optim.RMSprop`` over the same parameters.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
    ) -> None:
        params = list(params)
        if not params:
            raise ValueError("FlatRMSprop: expected at least one parameter, found none.")
        if not 0.0 <= lr:
            raise ValueError(f"FlatRMSprop: lr must be >= 0, found {lr}.")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"FlatRMSprop: alpha must be in [0, 1), found {alpha}.")
        kinds = {(p.device, p.dtype) for p in params}
        if len(kinds) > 1 or not params[0].is_floating_point():
            raise ValueError(
                "FlatRMSprop: expected floating-point parameters on one device with one dtype; "
                f"found {sorted(str(k) for k in kinds)}."
            )
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})
        self._params: list[nn.Parameter] = self.param_groups[0]["params"]
        self._bounds: list[tuple[int, int]] = []
        offset = 0
        for p in self._params:
            self._bounds.append((offset, offset + p.numel()))
            offset += p.numel()
        with torch.no_grad():
            self._flat = torch.cat([p.detach().reshape(-1) for p in self._params])
            for p, (a, b) in zip(self._params, self._bounds):
                p.data = self._flat[a:b].view_as(p)
        self._grad = torch.empty_like(self._flat)
        self._square_avg = torch.zeros_like(self._flat)
        self._denom = torch.empty_like(self._flat)
        # stand-ins in the gradient buffer for parameters that got no gradient in a step
        self._zeros = [torch.zeros(b - a, dtype=self._flat.dtype, device=self._flat.device)
                       for a, b in self._bounds]  # fmt: skip
        self._steps = 0

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One RMSprop update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for p in self._params]
        untouched = [i for i, g in enumerate(grads) if g is None]
        if len(untouched) == len(grads):
            return loss
        if any(g is not None and g.is_sparse for g in grads):
            raise RuntimeError("FlatRMSprop does not support sparse gradients.")
        torch.cat(
            [self._zeros[i] if g is None else g.reshape(-1) for i, g in enumerate(grads)],
            out=self._grad,
        )
        group = self.param_groups[0]
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        # as in torch, a parameter without a gradient keeps its running average; its update
        # below is exactly 0 (zero gradient)
        kept = [self._square_avg[slice(*self._bounds[i])].clone() for i in untouched]
        self._square_avg.mul_(alpha).addcmul_(self._grad, self._grad, value=1 - alpha)
        torch.sqrt(self._square_avg, out=self._denom)
        self._denom.add_(eps)
        self._flat.addcdiv_(self._grad, self._denom, value=-lr)
        for i, saved in zip(untouched, kept):
            self._square_avg[slice(*self._bounds[i])].copy_(saved)
        self._steps += 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The running averages (one flat tensor), the step count and the hyperparameters."""
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "format": _FORMAT,
            "square_avg": self._square_avg.clone(),
            "steps": self._steps,
            "sizes": [p.numel() for p in self._params],
            "param_groups": [group],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output, or a ``torch.optim.RMSprop`` state over the same
        parameters (same order)."""
        sizes = [p.numel() for p in self._params]
        if state_dict.get("format") == _FORMAT:
            if list(state_dict["sizes"]) != sizes:
                raise ValueError(
                    "FlatRMSprop.load_state_dict: the state is for parameters of other sizes "
                    f"({len(state_dict['sizes'])} tensors) than these ({len(sizes)} tensors)."
                )
            square_avg = state_dict["square_avg"]
            steps = int(state_dict["steps"])
        else:
            square_avg, steps = self._from_torch_rmsprop(state_dict, sizes)
        for key, value in state_dict["param_groups"][0].items():
            if key != "params":
                self.param_groups[0][key] = value
        self._square_avg.copy_(square_avg.to(self._square_avg))
        self._steps = steps

    def _from_torch_rmsprop(
        self, state_dict: dict[str, Any], sizes: list[int]
    ) -> tuple[torch.Tensor, int]:
        groups = state_dict.get("param_groups")
        if not groups or len(groups) != 1 or len(groups[0].get("params", [])) != len(sizes):
            raise ValueError(
                "FlatRMSprop.load_state_dict: expected the state of a FlatRMSprop or of a "
                f"torch.optim.RMSprop over the same {len(sizes)} parameters."
            )
        state = state_dict.get("state", {})
        parts, steps = [], 0
        for index, n in zip(groups[0]["params"], sizes):
            entry = state.get(index)
            if entry is None:  # never updated
                parts.append(torch.zeros(n, dtype=self._flat.dtype))
                continue
            parts.append(entry["square_avg"].reshape(-1).to(self._flat.dtype).cpu())
            steps = max(steps, int(entry.get("step", 0)))
        return torch.cat(parts), steps
