"""RMSprop over one flat buffer: torch's algorithm with a handful of kernels per step.

torch's ``RMSprop`` loops over the parameters (123 tensors for a three-modality model) with six
kernels each, ~720 kernel launches per step; at minibatches of 32 cells that per-kernel cost was
the largest single item of a CPU training step. Here the parameters are views into one
contiguous buffer, and a step is one ``cat`` of the gradients per segment of the buffer (one
segment for the BMMC model, a few for the largest models; none for a parameter large enough to
be a segment of its own) and five kernels per tile of it, a tile small enough for its four
operands to stay in cache from one kernel to the next.

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
#: elements per update segment (4 MB of float32): bounds the scratch memory of a step (SNARE-seq:
#: 16 -> 4 MB; the update is elementwise, so the weights are the same for any value)
SEGMENT = 1024 * 1024
#: elements per tile of the update on the CPU: the five kernels of a step run tile by tile, so
#: the running average, gradient, denominator and weights of a tile (4 x 4 MB) stay in the
#: last-level cache between kernels rather than streaming from memory five times (SNARE-seq's
#: 16.6M weights: 48 -> 41 ms a step on this machine's 32 MB L3), and the denominator's scratch
#: is a tile, not a segment
TILE = 1024 * 1024


def _segments(sizes: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive runs ``[i, j)`` of parameters, each of at most ``limit`` elements in all
    (a parameter larger than ``limit`` alone)."""
    out, start, total = [], 0, 0
    for k, n in enumerate(sizes):
        if k > start and total + n > limit:
            out.append((start, k))
            start, total = k, 0
        total += n
    out.append((start, len(sizes)))
    return out


def _runs(flags: list[bool], offset: int) -> list[tuple[int, int, bool]]:
    """Maximal runs ``[offset + i, offset + j)`` of equal ``flags``, with their flag."""
    out, start = [], 0
    for k in range(1, len(flags) + 1):
        if k == len(flags) or flags[k] != flags[start]:
            out.append((offset + start, offset + k, flags[start]))
            start = k
    return out


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
        self._square_avg = torch.zeros_like(self._flat)
        # The update runs over segments of whole parameters of at most SEGMENT elements (a larger
        # parameter is a segment of its own, updated from its gradient where it lies): the
        # gradients of a segment of several are gathered into a scratch buffer of the largest
        # such segment's size, the denominator into one of a tile's. Buffers the size of all
        # parameters would add to the training peak (~200 MB on SNARE-seq's 17M weights);
        # torch's own RMSprop holds one parameter-sized temporary at a time.
        self._segments = _segments([p.numel() for p in self._params], SEGMENT)
        sizes = [self._bounds[j - 1][1] - self._bounds[i][0] for i, j in self._segments]
        gathered = [n for n, (i, j) in zip(sizes, self._segments) if j - i > 1]
        self._scratch_grad = torch.empty(
            max(gathered, default=0), dtype=self._flat.dtype, device=self._flat.device
        )
        # one kernel per segment on an accelerator (launches cost more there than traffic)
        self._tile = TILE if self._flat.device.type == "cpu" else max(sizes)
        self._scratch_denom = torch.empty(
            min(max(sizes), self._tile), dtype=self._flat.dtype, device=self._flat.device
        )
        self._steps = 0

    # torch's add_param_group, zero_grad, state_dict and load_state_dict are wrapped to keep
    # torch.compile out of them, and that wrapper imports torch._dynamo (and sympy) on its first
    # call: ~70 MB of resident memory and ~1.5 CPU s in every process that trains. This
    # optimiser defines all four itself, so training never imports it.
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Called once, by ``torch.optim.Optimizer.__init__``: this optimiser has one group."""
        if self.param_groups:
            raise ValueError("FlatRMSprop holds one parameter group; it cannot take another.")
        params = list(param_group["params"])
        if any(not p.is_leaf for p in params):
            raise ValueError("FlatRMSprop can only optimise leaf tensors (e.g. nn.Parameter).")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("FlatRMSprop: a parameter is listed more than once.")
        self.param_groups.append({**self.defaults, **param_group, "params": params})

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (``set_to_none``, the default) or zero every parameter's gradient."""
        for p in self._params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().requires_grad_(False).zero_()

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One RMSprop update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for p in self._params]
        if all(g is None for g in grads):
            return loss
        if any(g is not None and g.is_sparse for g in grads):
            raise RuntimeError("FlatRMSprop does not support sparse gradients.")
        group = self.param_groups[0]
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        for i, j in self._segments:
            part = grads[i:j]
            if all(g is None for g in part):
                continue  # as in torch: no gradient, no change (running averages included)
            a, b = self._bounds[i][0], self._bounds[j - 1][1]
            untouched = [k for k, g in zip(range(i, j), part) if g is None]
            if j - i == 1:
                # a parameter of its own (the wide layers): no copy of its gradient (a view, as
                # gradients have their parameter's layout; reshape copies one that does not)
                grad = part[0].reshape(-1)
            else:
                grad = self._scratch_grad[: b - a]
                # one cat per run of consecutive parameters with gradients: a model whose unused
                # parameters (e.g. the zero-inflation logits of NB decoders) sit among the others
                # would otherwise pay one copy per parameter, ~120 a step
                for k0, k1, has_grad in _runs([g is not None for g in part], i):
                    view = grad[self._bounds[k0][0] - a : self._bounds[k1 - 1][1] - a]
                    if has_grad:
                        torch.cat([g.reshape(-1) for g in grads[k0:k1]], out=view)
                    else:
                        view.zero_()
            square_avg, flat = self._square_avg[a:b], self._flat[a:b]
            # a parameter without a gradient keeps its running average (its update is 0)
            kept = [self._square_avg[slice(*self._bounds[k])].clone() for k in untouched]
            for t0 in range(0, b - a, self._tile):
                t1 = min(t0 + self._tile, b - a)
                avg, g, w = square_avg[t0:t1], grad[t0:t1], flat[t0:t1]
                denom = self._scratch_denom[: t1 - t0]
                avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
                torch.sqrt(avg, out=denom)
                denom.add_(eps)
                w.addcdiv_(g, denom, value=-lr)
            for k, saved in zip(untouched, kept):
                self._square_avg[slice(*self._bounds[k])].copy_(saved)
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
