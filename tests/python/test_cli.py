"""The ``mmaavi`` command line: fit on h5ad files, demo on the bundled data."""

from __future__ import annotations

import json

import anndata as ad
import pandas as pd
import pytest

import mmaavi
from mmaavi.cli import main


def test_fit_from_h5ad_files_writes_every_output(shared_data, tmp_path):
    folder = shared_data / "pbmc_wnn_rna_adt_mosaic"
    out = tmp_path / "run"
    argv = [
        "fit", "--modality", f"rna={folder / 'rna.h5ad'}", "--modality", f"adt={folder / 'adt.h5ad'}",
        "--batch-key", "batch", "--label-key", "cell_type", "--n-components", "8",
        "--max-epochs", "2", "--de-samples", "300", "--restore-best", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    emb = pd.read_csv(out / "embedding.csv", index_col=0)
    rna, adt = ad.read_h5ad(folder / "rna.h5ad"), ad.read_h5ad(folder / "adt.h5ad")
    expected = mmaavi.data.mosaic({"rna": rna, "adt": adt}).obs_names
    assert list(emb.index) == list(expected) and emb.shape == (1600, 30)
    assert (out / "umap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"mmaavi", "pca_baseline", "train"}
    assert 0.0 <= metrics["mmaavi"]["leiden_ari"] <= 1.0
    train = metrics["train"]
    assert train["restore_best"] is True and train["kept_epoch"] == train["best_epoch"] >= 1
    att = pd.read_csv(out / "attention.csv", index_col=0)
    assert (att.loc[emb.index.str.startswith("p1_0"), "adt"] == 0).all()
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 2
    assert (out / "model" / "model.json").is_file() and (out / "model" / "model.pt").is_file()
    bf = pd.read_csv(out / "bayes_factors.csv")
    assert set(bf["comparison"]) == {f"{g} vs rest" for g in emb_labels(folder)}
    assert set(bf["modality"]) == {"rna", "adt"} and bf["proba_de"].between(0, 1).all()

    table = tmp_path / "b_vs_mono.csv"
    argv_de = [
        "differential", "--modality", f"rna={folder / 'rna.h5ad'}",
        "--modality", f"adt={folder / 'adt.h5ad'}", "--model", str(out / "model"),
        "--groupby", "cell_type", "--group1", "B", "--group2", "Mono",
        "--test-modality", "adt", "--n-samples", "200", "--out", str(table),
    ]  # fmt: skip
    assert main(argv_de) == 0
    de = pd.read_csv(table)
    assert set(de["comparison"]) == {"B vs Mono"} and set(de["modality"]) == {"adt"}
    assert len(de) == 224


def emb_labels(folder) -> set[str]:
    rna, adt = ad.read_h5ad(folder / "rna.h5ad"), ad.read_h5ad(folder / "adt.h5ad")
    return set(rna.obs["cell_type"].astype(str)) | set(adt.obs["cell_type"].astype(str))


def test_demo_runs_on_bundled_data(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--max-epochs", "1", "--de-samples", "200", "--out", str(out)]) == 0
    emb = pd.read_csv(out / "embedding.csv", index_col=0)
    assert emb.shape == (1100, 30)
    assert "cell_type_l1" in json.loads((out / "metrics.json").read_text())["label_key"]


def test_fit_without_input_says_what_to_give(tmp_path):
    with pytest.raises(SystemExit, match="--h5mu FILE or --modality"):
        main(["fit", "--n-components", "3", "--out", str(tmp_path)])


def test_bad_modality_spec(tmp_path):
    with pytest.raises(SystemExit, match="NAME=FILE.h5ad"):
        main(["fit", "--modality", "rna", "--n-components", "3", "--out", str(tmp_path)])
