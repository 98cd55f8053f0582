"""Progress reporting: a tqdm bar in a terminal, plain lines otherwise (logs, R, notebooks' CI)."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from tqdm.auto import tqdm

PROGRESS_MODES = ("auto", "bar", "lines", "none")


class Progress:
    """Reports one line or one bar update per epoch.

    Parameters
    ----------
    max_epochs
        Upper bound on the epochs (the bar's total).
    mode
        ``"auto"`` (a bar when stderr is a terminal, else lines), ``"bar"``, ``"lines"`` or
        ``"none"``.
    every
        In line mode, print every ``every`` epochs (and the last one).
    initial
        Epochs already done (a resumed run).
    """

    def __init__(
        self, max_epochs: int, mode: str = "auto", every: int = 10, initial: int = 0
    ) -> None:
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}; found {mode!r}.")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.every = max(int(every), 1)
        self.bar = (
            tqdm(total=max_epochs, initial=initial, unit="epoch", desc="mmaavi")
            if mode == "bar"
            else None
        )

    def update(self, epoch: int, stats: Mapping[str, float]) -> None:
        shown = {k: f"{v:.4g}" for k, v in stats.items()}
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)
        elif self.mode == "lines" and (epoch == 1 or epoch % self.every == 0):
            text = " ".join(f"{k}={v}" for k, v in shown.items())
            print(f"mmaavi epoch {epoch}: {text}", flush=True)

    def close(self, message: str) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.mode != "none":
            print(f"mmaavi: {message}", flush=True)
