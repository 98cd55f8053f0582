"""The ``mmaavi`` command: ``fit`` on the user's files, ``demo`` on the bundled BMMC mosaic."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def _parse_modalities(specs: list[str]) -> dict[str, list[Path]]:
    """``["rna=a.h5ad,b.h5ad", "adt=c.h5ad"]`` -> {"rna": [a, b], "adt": [c]}."""
    out: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, paths = spec.partition("=")
        if not sep or not name or not paths:
            raise SystemExit(
                f"mmaavi: --modality expects NAME=FILE.h5ad[,FILE2.h5ad]; found {spec!r}."
            )
        out.setdefault(name, []).extend(Path(p) for p in paths.split(","))
    return out


def _load_mdata(args):
    import anndata as ad
    import mudata as md

    from .data import mosaic

    given = [opt for opt, value in (("--h5mu", args.h5mu), ("--modality", args.modality),
                                    ("--rds", args.rds)) if value]  # fmt: skip
    if len(given) > 1:
        raise SystemExit(f"mmaavi: give one input, --h5mu, --modality or --rds; found {given}.")
    if args.assays and not args.rds:
        raise SystemExit("mmaavi: --assays goes with --rds.")
    backed = getattr(args, "backed", False)
    if backed and args.rds:
        raise SystemExit(
            "mmaavi: --backed reads .h5mu / .h5ad files on disk; an .rds object is read into "
            "memory. Convert it once (mmaavi.io.read_rds(...).write('data.h5mu')) and give "
            "--h5mu data.h5mu --backed."
        )
    if args.rds:
        return _read_rds(args)
    if args.h5mu:
        _check_exists(Path(args.h5mu), "--h5mu")
        return md.read_h5mu(args.h5mu, backed=True) if backed else md.read_h5mu(args.h5mu)
    if not args.modality:
        raise SystemExit(
            "mmaavi: no input; give --h5mu FILE or --modality NAME=FILE.h5ad (repeatable), or "
            "--rds FILE.rds."
        )
    mods = {}
    for name, paths in _parse_modalities(args.modality).items():
        for p in paths:
            _check_exists(p, f"--modality {name}=")
        blocks = [ad.read_h5ad(p, backed="r") if backed else ad.read_h5ad(p) for p in paths]
        mods[name] = blocks if len(blocks) > 1 else blocks[0]
    return mosaic(mods, batch_key=args.batch_key, backed=backed)


def _check_exists(path: Path, option: str) -> None:
    if not path.is_file():
        raise SystemExit(
            f"mmaavi: {option}{path}: no such file (expected an existing "
            f"{path.suffix or '.h5ad/.h5mu'} file; check the path)."
        )


def _parse_assays(spec: str | None) -> dict[str, str] | None:
    """``"rna=RNA,adt=ADT"`` -> {"rna": "RNA", "adt": "ADT"}."""
    if spec is None:
        return None
    out = {}
    for pair in spec.split(","):
        name, sep, assay = pair.partition("=")
        if not sep or not name or not assay or name in out:
            raise SystemExit(
                f"mmaavi: --assays expects MODALITY=ASSAY[,MODALITY=ASSAY...] with each modality "
                f"once, e.g. rna=RNA,adt=ADT; found {spec!r}."
            )
        out[name] = assay
    return out


def _read_rds(args):
    from .io import RNotAvailableError, read_rds

    try:
        return read_rds(args.rds, assays=_parse_assays(args.assays), batch=args.batch_key)
    except (RNotAvailableError, FileNotFoundError, TypeError, ValueError) as err:
        raise SystemExit(f"mmaavi: {err}") from None
    except KeyError as err:
        raise SystemExit(f"mmaavi: {err.args[0]}") from None


def _rds_outputs(out: str) -> tuple[Path, Path]:
    """With --rds: (the .rds to write, the folder for the other outputs). ``--out X.rds`` gives
    X.rds and X/; ``--out DIR`` gives DIR/result.rds and DIR/."""
    path = Path(out)
    if path.suffix.lower() == ".rds":
        return path, path.with_suffix("")
    return path / "result.rds", path


def _umap_png(z: np.ndarray, obs: pd.DataFrame, columns: list[str], path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import umap

    threads = torch.get_num_threads()
    try:
        coords = umap.UMAP(random_state=seed, n_neighbors=15, min_dist=0.3).fit_transform(z)
    finally:
        # numba's OpenMP layer, shared with torch, resets torch's thread count during the fit
        torch.set_num_threads(threads)
    fig, axes = plt.subplots(1, len(columns), figsize=(6.5 * len(columns), 5.5), squeeze=False)
    for ax, col in zip(axes[0], columns):
        values = obs[col].astype(str)
        categories = sorted(values.unique())
        # tab10 repeats colours past 10 categories; tab20 keeps up to 20 apart
        palette = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20")
        for k, cat in enumerate(categories):
            sel = (values == cat).to_numpy()
            ax.scatter(
                coords[sel, 0], coords[sel, 1], s=4, label=cat, rasterized=True,
                color=palette(k % palette.N),
            )  # fmt: skip
        ax.set_title(f"mmaavi UMAP, coloured by {col}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(
            markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_fit(mdata, args):
    """Train, then write the embedding, attention, history, model, UMAP and metrics to ``args.out``.

    Returns the summary written to ``metrics.json`` and the trained model.
    """
    from .metrics import integration_metrics, pca_baseline
    from .model import MMAAVI
    from .train._distributed import from_environment

    main_process = from_environment().is_main
    out = Path(args.out)
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
    model = MMAAVI(
        mdata,
        batch_key=args.batch_key,
        n_components=args.n_components,
        backed=True if getattr(args, "backed", False) else None,
    )
    model.train(
        max_epochs=args.max_epochs,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        shuffle=args.shuffle,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        restore_best=args.restore_best,
    )
    if not main_process:  # under torchrun, process 0 writes the outputs
        return {}, model
    z = model.get_latent_representation()
    cols = [f"MMAAVI_{i + 1}" for i in range(z.shape[1])]
    pd.DataFrame(z, index=mdata.obs_names, columns=cols).to_csv(out / "embedding.csv")
    model.get_attention().to_csv(out / "attention.csv")
    model.history.to_csv(out / "history.csv", index=False)
    model.save(out / "model", overwrite=True)
    colour_by = [args.batch_key] + ([args.label_key] if args.label_key else [])
    _umap_png(z, mdata.obs, colour_by, out / "umap.png", args.seed)
    summary: dict = {
        "n_cells": int(mdata.n_obs),
        "batch_key": args.batch_key,
        "label_key": args.label_key,
        "train": model.train_info,
    }
    if args.label_key:
        table = model.differential(args.label_key, n_samples=args.de_samples, seed=args.seed)
        table.to_csv(out / "bayes_factors.csv", index=False)
        labels, batches = mdata.obs[args.label_key], mdata.obs[args.batch_key]
        summary["mmaavi"] = integration_metrics(z, labels, batches, seed=args.seed)
        summary["pca_baseline"] = integration_metrics(
            pca_baseline(mdata, seed=args.seed), labels, batches, seed=args.seed
        )
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    return summary, model


def _write_rds(mdata, model, args, rds_file: Path) -> None:
    """The input object with the results added (the R package's names), and the output folder
    made a model directory the R package reads (``model/`` + ``data.h5mu``)."""
    from . import _rbridge
    from .io import _rds

    folder = Path(args.out)
    with _rbridge._quiet_io():
        mdata.write(folder / _rbridge.DATA_FILE)
    _rds._write(mdata, rds_file, None, model=model, base=args.rds, name=None, model_dir=None,
                key="X_mmaavi", overwrite=True, saved_model_dir=folder)  # fmt: skip
    print(f"mmaavi: {rds_file} written (the input object with the mmaavi results)")


def run_differential(mdata, args) -> None:
    """Load a saved model for the data and write its Bayes-factor table as CSV."""
    from .model import MMAAVI

    model = MMAAVI.load(args.model, mdata, device=args.device)
    table = model.differential(
        args.groupby,
        args.group1,
        args.group2,
        modality=args.test_modality,
        mode=args.mode,
        delta=args.delta,
        fdr_target=args.fdr_target,
        n_samples=args.n_samples,
        seed=args.seed,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    n_de = int(table.filter(like="is_de_fdr_").iloc[:, 0].sum())
    print(f"mmaavi: {len(table)} rows ({n_de} called DE) written to {args.out}")


def _add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda [cpu]; under torchrun, cuda is the GPU of each process's LOCAL_RANK",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads [1]: the model's tensors are small, so more threads gain little "
        "(~15%% with 2 on an idle 2-core machine) and lose a lot when other jobs share the cores",
    )


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--h5mu", help="a MuData file (one modality per mod entry)")
    p.add_argument(
        "--modality",
        action="append",
        default=[],
        help="NAME=FILE.h5ad[,FILE2.h5ad]: one per modality, repeatable",
    )
    p.add_argument(
        "--rds",
        help="a Seurat or SingleCellExperiment .rds file, read with mmaavi.io.read_rds "
        "(needs R: pip install 'mmaavi[r]'); --batch-key names its batch column",
    )
    p.add_argument(
        "--assays",
        default=None,
        help="with --rds: MODALITY=ASSAY[,MODALITY=ASSAY...], e.g. rna=RNA,adt=ADT "
        "[every assay with counts, named by its lower-cased name]",
    )
    p.add_argument(
        "--backed",
        action="store_true",
        help="keep the counts on disk (out-of-core): each minibatch is read from the "
        "--h5mu / --modality files, which must store X as CSR, one file per modality",
    )


def _add_training_args(p: argparse.ArgumentParser, n_components: int | None) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--batch-key", default="batch", help="obs column with the batch [batch]")
    p.add_argument("--label-key", default=None, help="obs column to colour by and score against")
    p.add_argument(
        "--n-components",
        type=int,
        default=n_components,
        required=n_components is None,
        help="number of mixture components K",
    )
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="fp32, or bf16 autocast of the forward pass (GPU with bf16 support, or CPU) [fp32]",
    )
    p.add_argument(
        "--shuffle",
        default="auto",
        choices=["auto", "global", "chunked"],
        help="order of each epoch's draws: chunked reads --backed data in whole chunks "
        "[auto: chunked with --backed, else global]",
    )
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help="write a checkpoint after every epoch to this folder (resumable with --resume)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --checkpoint-dir (same data and options)",
    )
    p.add_argument(
        "--restore-best",
        action="store_true",
        help="end with the weights of the best epoch by validation loss, not the last",
    )
    _add_device_args(p)
    p.add_argument(
        "--de-samples",
        type=int,
        default=5000,
        help="draws per group for the Bayes factors of each label vs the rest [5000]",
    )


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="mmaavi", description="Mosaic integration with mmAAVI.")
    parser.add_argument("--version", action="version", version=f"mmaavi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="train on your data and write the embedding, model and plots")
    _add_input_args(fit)
    _add_training_args(fit, None)
    demo = sub.add_parser("demo", help="the same on the bundled BMMC mosaic (RNA/ADT/ATAC)")
    _add_training_args(demo, 10)
    demo.set_defaults(label_key="cell_type_l1")
    de = sub.add_parser(
        "differential", help="Bayes-factor differential features of a saved model, as CSV"
    )
    _add_input_args(de)
    de.add_argument("--model", required=True, help="model directory written by `mmaavi fit`")
    de.add_argument("--batch-key", default="batch", help="obs column with the batch [batch]")
    de.add_argument("--groupby", required=True, help="obs column with the groups")
    de.add_argument("--group1", default=None, help="group to test [every group in turn]")
    de.add_argument("--group2", default=None, help="reference group [the rest]")
    de.add_argument("--test-modality", default=None, help="modality to test [all]")
    de.add_argument("--mode", default="change", choices=["change", "vanilla"])
    de.add_argument("--delta", type=float, default=0.25)
    de.add_argument("--fdr-target", type=float, default=0.05)
    de.add_argument("--n-samples", type=int, default=5000)
    de.add_argument("--seed", type=int, default=0)
    _add_device_args(de)
    de.add_argument("--out", required=True, help="CSV file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads < 1:
        raise SystemExit(f"mmaavi: --threads must be >= 1; found {args.threads}.")
    import torch

    torch.set_num_threads(args.threads)
    if args.command == "demo":
        from .datasets import bmmc_mosaic

        mdata = bmmc_mosaic()
    else:
        mdata = _load_mdata(args)
    if args.command == "differential":
        run_differential(mdata, args)
        return 0
    rds_file = None
    if getattr(args, "rds", None):
        rds_file, folder = _rds_outputs(args.out)
        args.out = str(folder)
    summary, model = run_fit(mdata, args)
    if not summary:  # a torchrun process other than 0: process 0 writes and reports
        return 0
    print(f"mmaavi: results written to {args.out}")
    if rds_file is not None:
        _write_rds(mdata, model, args, rds_file)
    if "mmaavi" in summary:
        for name in ("mmaavi", "pca_baseline"):
            scores = ", ".join(f"{k}={v:.3f}" for k, v in summary[name].items())
            print(f"  {name}: {scores}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
