"""The weights a training run ends with, kept in a temporary file rather than in memory.

Training keeps a copy of the weights of the last completed epoch (or of the best one), so that
Ctrl-C or a divergence mid-epoch never leaves half-updated weights. That copy is needed only
when the run ends, so it lives in an anonymous temporary file (in ``tempfile.gettempdir()``,
``TMPDIR``), not in the process's memory: one weight-sized copy less at the training peak
(SNARE-seq: 67 MB of a 0.9 GB peak). Writing it costs a few milliseconds an epoch. Where no temporary
file can be written, the copy stays in memory (with a warning), as it did before.

The file is read back with ``torch.load(weights_only=True)``; it is deleted when the run's
:class:`KeptWeights` is closed or garbage-collected, and by the OS if the process dies.
"""

from __future__ import annotations

import logging
import tempfile
from typing import IO

import torch

logger = logging.getLogger(__name__)


class KeptWeights:
    """One saved copy of a module's state dict, overwritten by every :meth:`keep`."""

    def __init__(self, module: torch.nn.Module) -> None:
        self._file: IO[bytes] | None = None
        self._memory: dict[str, torch.Tensor] | None = None
        try:
            self._file = tempfile.TemporaryFile(prefix="mmaavi-kept-", suffix=".pt")
        except OSError as err:
            logger.warning(
                "No temporary file for the kept weights (%s): they stay in memory. Set TMPDIR to "
                "a writable folder to save one weight-sized copy of memory.",
                err,
            )
        self.keep(module)

    def keep(self, module: torch.nn.Module) -> None:
        """Save ``module``'s current state over the previous copy."""
        self.set({k: v.detach() for k, v in module.state_dict().items()})

    def set(self, state: dict[str, torch.Tensor]) -> None:
        """Save ``state`` (a state dict, e.g. from a checkpoint) over the previous copy."""
        if self._file is not None:
            try:
                self._file.seek(0)
                self._file.truncate()
                torch.save(state, self._file)
                self._file.flush()
                return
            except OSError as err:
                logger.warning(
                    "Writing the kept weights to a temporary file failed (%s): they stay in "
                    "memory from now on.",
                    err,
                )
                self._close_file()
        with torch.no_grad():
            if self._memory is not None and self._memory.keys() == state.keys():
                for k, v in state.items():
                    self._memory[k].copy_(v)  # in place: two copies never coexist
            else:
                self._memory = {k: v.detach().clone() for k, v in state.items()}

    def state(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The saved state dict, its tensors on ``device`` (a new copy)."""
        if self._memory is not None:
            return {k: v.to(device, copy=True) for k, v in self._memory.items()}
        assert self._file is not None
        self._file.seek(0)
        return torch.load(self._file, map_location=device, weights_only=True)

    def load_into(self, module: torch.nn.Module) -> None:
        """Give ``module`` the saved weights."""
        device = next(module.parameters()).device
        module.load_state_dict(self.state(device))

    def close(self) -> None:
        """Delete the temporary file (the copy in memory, if any, stays readable)."""
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __del__(self) -> None:
        self._close_file()
