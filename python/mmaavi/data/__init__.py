"""Data layer: build a mosaic MuData, validate it, and serve minibatches to the model.

- :func:`mosaic`: one AnnData (or list of blocks) per modality -> mosaic :class:`mudata.MuData`.
- :func:`setup_mosaic`: MuData -> :class:`MosaicData` (counts, masks, codes, encoder transforms,
  bulk minibatch slicing).
- :func:`train_val_split`, :func:`default_batch_size`, :func:`balanced_epoch`,
  :func:`sequential_batches`, :func:`shard_minibatches`: split and minibatch schedules.
"""

from mmaavi.data._container import MosaicData, setup_mosaic
from mmaavi.data._mosaic import BLOCK_KEY, MEASURED_KEY, mosaic
from mmaavi.data._sampling import (
    SHUFFLES,
    LabelledPool,
    balanced_epoch,
    default_batch_size,
    sequential_batches,
    shard_minibatches,
    train_val_split,
)
from mmaavi.data._validate import LIKELIHOODS

__all__ = [
    "BLOCK_KEY",
    "LIKELIHOODS",
    "LabelledPool",
    "MEASURED_KEY",
    "MosaicData",
    "SHUFFLES",
    "balanced_epoch",
    "default_batch_size",
    "mosaic",
    "sequential_batches",
    "setup_mosaic",
    "shard_minibatches",
    "train_val_split",
]
