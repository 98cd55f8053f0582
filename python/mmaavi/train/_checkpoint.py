"""Training checkpoints: one file, written atomically, read without running code.

A checkpoint holds everything needed to continue a run exactly where it stopped: the module's
weights and those the run ends with (the last or the best epoch's; key ``best_module``), the
optimiser and LR-scheduler states, the torch and numpy random states, the labelled-cell queue
of semi-supervised sampling, the loop counters and the history. It is written to a temporary
file in the same directory, flushed to disk and renamed over ``checkpoint.pt``, so a run killed
at any moment leaves the previous checkpoint intact.

The file is read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a
crafted file cannot execute code. Structured values (plan, history, random-generator state,
the caller's fingerprint) are stored as JSON strings inside it.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

#: name of the checkpoint file inside ``checkpoint_dir``
CHECKPOINT_FILE = "checkpoint.pt"
#: version of the checkpoint layout; a newer one is refused. 2: the first encoder layer of a
#: wide input (mmaavi.nn.wide) is stored transposed, so a version-1 optimiser state of a model
#: with such a layer no longer fits (refused on resume; other models resume as before)
CHECKPOINT_VERSION = 2
#: keys every checkpoint holds
_KEYS = frozenset(
    {
        "version",
        "epoch",
        "module",
        "best_module",
        "best_monitor",
        "best_epoch",
        "optimizer",
        "scheduler",
        "lr_cuts",
        "torch_rng",
        "cuda_rng",
        "pool_queue",
        "stop_reason",
        "json",
    }
)


def checkpoint_path(directory: str | os.PathLike) -> Path:
    """Path of the checkpoint file in ``directory``."""
    return Path(directory) / CHECKPOINT_FILE


def save_checkpoint(directory: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` atomically to ``directory/checkpoint.pt`` (created if needed).

    ``state`` must hold the keys of :data:`_KEYS`; ``state["json"]`` is a dict written as JSON
    (values JSON does not know, such as numpy scalars, as their ``str``).
    """
    missing = _KEYS - set(state)
    if missing:
        raise ValueError(f"checkpoint state lacks {sorted(missing)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = dict(state)
    payload["json"] = json.dumps(state["json"], default=str)
    target = checkpoint_path(directory)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(directory)
    return target


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(directory: str | os.PathLike) -> dict[str, Any] | None:
    """Read ``directory/checkpoint.pt``; ``None`` when there is none.

    Raises
    ------
    pickle.UnpicklingError
        The file holds anything but tensors and plain containers (e.g. a pickled object that
        would run code): it is refused before anything in it runs.
    ValueError
        The file is not a readable mmaavi checkpoint, or was written by a newer mmaavi.
    """
    path = checkpoint_path(directory)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f"{path} holds more than tensors and plain values and was refused unread (loading "
            f"it could run code). Delete it, or resume from a checkpoint you trust. ({err})"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"{path} is not a readable mmaavi checkpoint ({err}). Delete it to start a new run."
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not an mmaavi checkpoint (found a {type(state).__name__}).")
    version = state.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} was written in checkpoint format {version!r}; this mmaavi reads format "
            f"{CHECKPOINT_VERSION} and older. Upgrade mmaavi to resume it."
        )
    missing = _KEYS - set(state)
    if missing:
        raise ValueError(
            f"{path} is not a complete mmaavi checkpoint: it lacks {sorted(missing)}. Delete it "
            "to start a new run."
        )
    try:
        state["json"] = json.loads(state["json"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its metadata is not valid JSON ({err}).") from None
    return state
