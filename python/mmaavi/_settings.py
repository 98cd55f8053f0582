"""Runtime settings: where and how mmaavi computes (never part of a saved model).

``mmaavi.settings.device = "cuda"`` makes every later ``train`` / ``load`` without an explicit
``device`` use the GPU; the same for the other fields. An argument given to a call always wins.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    """Defaults of the runtime arguments of :class:`mmaavi.MMAAVI`.

    Attributes
    ----------
    device
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"`` for a given GPU); under ``torchrun`` ``"cuda"``
        means the GPU of the process's ``LOCAL_RANK``.
    precision
        ``"fp32"`` or ``"bf16"`` (bfloat16 autocast of the training forward pass).
    progress
        ``"auto"``, ``"bar"``, ``"lines"`` or ``"none"``.
    inference_batch_size
        Cells encoded or decoded at once by the outputs (``get_latent_representation``,
        ``impute``, ...): bounds their memory whatever the number of cells.
    """

    device: str = "cpu"
    precision: str = "fp32"
    progress: str = "auto"
    inference_batch_size: int = 1024


#: the settings in effect
settings = Settings()
