"""Known markers' ranks and the calibration of Bayes-factor differential features on the PBMC
WNN mosaic (issue 4, Done-when 3 and 4), for any training seed.

Trains mmaavi with its defaults (``n_components=8``, early stopping, one torch thread) on
``../shared/data/pbmc_wnn_rna_adt_mosaic`` and prints, as one JSON line:

- the rank (position within the modality's rows of the table, sorted by ``bayes_factor``) and
  Bayes factor of the B-cell markers in B vs rest and of the monocyte markers in Mono vs rest;
- for RNA CD19 in B vs rest, the paired draws that miss ``|lfc| > delta`` (``(1 - proba_de) x
  n_samples``) and the B cells decoded with the least CD19 (``impute("rna", library_size=1)``,
  the posterior mean), with their ADT cd19 / cd20 counts (null where ADT was not measured):
  the cells behind a seed's lower rank;
- the fraction of features called DE at fdr_target 0.05, and the largest Bayes factor, for an
  A/A split of the Mono and CD4 T cells (random halves) and for Mono cells split by assay
  (RNA-only batch p1_0 against ADT-only batch p2_0).

``tests/python/test_differential_real.py`` asserts these for seed 0; its docstring holds the
numbers of seeds 0-2. Run from the repository root (~3-4 minutes a seed)::

    .venv/bin/python benchmarks/differential_markers.py --seed 2
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

torch.set_num_threads(1)

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402

import mmaavi  # noqa: E402

SHARED = Path(
    os.environ.get("MMAAVI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
#: paired draws per group of each comparison (differential()'s default, spelled out for the
#: missed-draw count below)
N_SAMPLES = 5000
MARKERS = {
    "B": [("rna", "MS4A1"), ("rna", "CD79A"), ("rna", "CD19"), ("adt", "cd19"), ("adt", "cd20")],
    "Mono": [("rna", "S100A8"), ("rna", "S100A9"), ("adt", "cd14")],
}


def _rank(table, modality: str, feature: str) -> tuple[int, float]:
    rows = table[table.modality == modality].reset_index(drop=True)
    hit = int(np.flatnonzero(rows.feature.to_numpy() == feature)[0])
    return hit + 1, round(float(rows.bayes_factor[hit]), 2)


def _split(model, column: str, cell_type: str, values: np.ndarray) -> None:
    """``values`` for the ``cell_type`` cells of ``mdata.obs[column]``, missing elsewhere."""
    obs = model.mdata.obs
    out = np.asarray(values, dtype=object)
    out[(obs["cell_type"].astype(str) != cell_type).to_numpy()] = None
    obs[column] = out


def _called(table) -> dict:
    return {
        "called": round(float(table["is_de_fdr_0.05"].mean()), 4),
        "max_bf": round(float(table.bayes_factor.max()), 2),
    }


def _weakest(model, group: str, gene: str, n: int = 3) -> dict:
    """The ``n`` cells of ``group`` decoded with the least ``gene``, next to the group median."""
    obs = model.mdata.obs
    cells = np.flatnonzero((obs["cell_type"].astype(str) == group).to_numpy())
    decoded = model.impute("rna", library_size=1.0)[gene].to_numpy()[cells]
    adt = model.mdata.mod["adt"]
    out = {"median": float(f"{np.median(decoded):.2g}")}
    for k in np.argsort(decoded)[:n]:
        name = obs.index[cells[k]]
        measured = name in adt.obs_names  # one count: .sum() reads sparse and dense alike
        counts = {p: float(adt[name, p].X.sum()) if measured else None for p in ("cd19", "cd20")}
        out[name] = {"decoded": float(f"{decoded[k]:.2g}"), **counts}
    return out


def run(seed: int) -> dict:
    folder = SHARED / "pbmc_wnn_rna_adt_mosaic"
    mods = {m: ad.read_h5ad(folder / f"{m}.h5ad") for m in ("rna", "adt")}
    model = mmaavi.MMAAVI(
        mmaavi.data.mosaic(mods, batch_key="batch"), batch_key="batch", n_components=8
    )
    model.train(seed=seed, progress="none")
    out = {"seed": seed, "epochs": len(model.history)}
    for group, markers in MARKERS.items():
        table = model.differential("cell_type", group, n_samples=N_SAMPLES)
        out[f"{group} vs rest"] = {f"{m} {f}": _rank(table, m, f) for m, f in markers}
        if group == "B":
            proba = table.loc[(table.modality == "rna") & (table.feature == "CD19"), "proba_de"]
            out["B vs rest rna CD19 missed draws"] = round((1 - float(proba.iloc[0])) * N_SAMPLES)
            out["B cells with the least decoded CD19"] = _weakest(model, "B", "CD19")
    rng = np.random.default_rng(0)
    halves = np.where(rng.random(model.mdata.n_obs) < 0.5, "A1", "A2")
    for cell_type in ("Mono", "CD4 T"):
        _split(model, "aa_split", cell_type, halves)
        out[f"A/A {cell_type}"] = _called(model.differential("aa_split", "A1", "A2"))
    _split(model, "assay_split", "Mono", model.mdata.obs["batch"].astype(str).to_numpy())
    out["Mono p1_0 vs p2_0"] = _called(model.differential("assay_split", "p1_0", "p2_0"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(run(args.seed)))


if __name__ == "__main__":
    main()
