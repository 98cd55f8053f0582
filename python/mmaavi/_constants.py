"""Keys shared by the data loader, the torch module and the training loop.

Minibatches are ``dict[str, torch.Tensor]``; per-modality entries are keyed
``f"{KEY}/{modality}"`` (use :func:`mod_key`).
"""

#: raw counts, dense float32 (batch_size, n_features_m); rows of cells without m are 0
X = "x"
#: a wide NB modality's raw counts come as these entries instead of X: the non-zero entries'
#: row (int64), column (int64) and value (float32), row-major
#: (``mmaavi.nn.likelihoods.SparseCounts``)
X_SPARSE = ("x_rows", "x_cols", "x_values")
#: encoder input, float32 (batch_size, n_input_m); rows of cells without m are 0
ENC = "enc"
#: a wide ``log1p_norm`` encoder input comes as these entries instead of ENC: the fields of
#: ``mmaavi.nn.wide.SparseRows``, in its order (``base[group]`` plus stored entries at
#: ``(rows, cols)`` with ``values``)
ENC_SPARSE = ("enc_base", "enc_group", "enc_rows", "enc_cols", "enc_values")
#: feature mask, bool (batch_size, n_features_m): True where the feature was measured
#: for that cell. Absent from the minibatch when every block of m measures every feature.
FMASK = "fmask"
#: observation mask, bool (batch_size, n_modalities) in the order of ``modalities``
OBS_MASK = "obs_mask"
#: batch index, int64 (batch_size,)
BATCH = "batch"
#: adversarial (discriminator) target index, int64 (batch_size,)
ADV = "adv"
#: class index for semi-supervised mode, int64 (batch_size,); -1 = unlabelled
LABEL = "label"
#: position of each cell in the full dataset, int64 (batch_size,)
INDEX = "index"

UNLABELED = -1


def mod_key(key: str, modality: str) -> str:
    """Key of a per-modality minibatch entry, e.g. ``mod_key(X, "rna") == "x/rna"``."""
    return f"{key}/{modality}"
