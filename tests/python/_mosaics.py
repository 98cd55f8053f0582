"""Tiny synthetic mosaics for fast tests of shapes, errors and faults (imported as
``from _mosaics import ...``; a subprocess adds this folder to ``sys.path`` first).

Synthetic data are never the evidence that integration works: see the tests on real data.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

#: a small architecture: tests of plumbing, not of quality
SMALL = {"n_latent": 4, "n_latent_u": 3, "encoder_hidden": (16, 8)}


def counts_adata(obs_names, features, batches, x=None, seed: int = 0) -> ad.AnnData:
    """AnnData of Poisson(2) counts (or ``x``) with a ``batch`` obs column."""
    obs_names, features = list(obs_names), list(features)
    if x is None:
        rng = np.random.default_rng(seed)
        x = rng.poisson(2.0, (len(obs_names), len(features))).astype(np.float32)
    obs = pd.DataFrame({"batch": list(batches)}, index=obs_names)
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=features))


def tiny_mosaic(labels: bool = False):
    """80 cells: batch ``a`` (c0-c39) RNA only, batch ``b`` (c40-c79) RNA + ADT.

    With ``labels``, ``obs["cell_type"]`` labels every third cell ``x`` or ``y`` (the rest NaN).
    """
    import mmaavi

    cells = [f"c{i}" for i in range(80)]
    rna = counts_adata(cells, [f"g{i}" for i in range(30)], ["a"] * 40 + ["b"] * 40, seed=0)
    adt = counts_adata(cells[40:], [f"p{i}" for i in range(8)], ["b"] * 40, seed=1)
    mdata = mmaavi.data.mosaic({"rna": rna, "adt": adt})
    if labels:
        i = np.arange(80)
        mdata.obs["cell_type"] = pd.Categorical(
            np.where(i % 3 == 0, np.where(i % 2 == 0, "x", "y"), None)
        )
    return mdata
