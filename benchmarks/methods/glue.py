"""GLUE (scglue 0.4.1) on a mosaic task, preprocessing and guidance graph as in the GLUE tutorial.

* RNA: counts kept in ``layers['counts']``, ``highly_variable_genes(flavor='seurat_v3', n_top_genes=2000)``,
  normalize_total / log1p / scale / PCA(100) -> ``X_pca``; ``NB`` on the counts.
* ATAC: ``scglue.data.lsi(n_components=100, n_iter=15)`` -> ``X_lsi``; ``NB``.
* Guidance graph: ``scglue.genomics.rna_anchored_guidance_graph(rna, atac)`` (gene body + 2 kb promoter,
  highly variable propagated to the peaks) on the genes that have coordinates; genes without
  coordinates keep only their self-loop.
* ADT (not covered by the GLUE tutorial; closest reasonable): treated like RNA (``NB`` on counts,
  normalize/log1p/scale/PCA encoder input), every protein is a guidance vertex with a self-loop and an
  edge to the RNA gene coding it when its symbol matches (upper case, a few CD aliases).
* Mosaic: one GLUE dataset per modality holding the cells that measured it; paired cells are marked
  with ``use_obs_names=True`` and the ``PairedSCGLUEModel`` (GLUE's model for partially paired data)
  is fitted through ``scglue.models.fit_SCGLUE``; batch correction with ``use_batch``.
* Embedding: GLUE's per-modality cell embeddings (``encode_data``); a cell measured by several
  modalities gets the mean of its modality embeddings.
* Epochs: GLUE picks max_epochs / align_burnin / patience from the data size (AUTO). With
  ``--max-epochs N`` both stages (pretrain, fine-tune) get ``max_epochs=N`` and align_burnin,
  patience and reduce_lr_patience are scaled by GLUE's own ratios (8:48, 4:48, 2:48) so the
  adversarial alignment still starts (with AUTO values it would start after the cap on small data).
"""

from __future__ import annotations

import _common as C  # first: pins the thread count before numpy and torch load

# isort: split

import re
import shutil
import tempfile
import time
from math import ceil

import numpy as np
import pandas as pd
import scipy.sparse as sp

# a few common antibody -> gene symbol aliases (CITE-seq panels name proteins by CD number)
# fmt: off
ADT_ALIASES = {
    "CD3": "CD3E", "CD8": "CD8A", "CD16": "FCGR3A", "CD32": "FCGR2A", "CD64": "FCGR1A",
    "CD45": "PTPRC", "CD45RA": "PTPRC", "CD45RO": "PTPRC", "CD56": "NCAM1", "CD11B": "ITGAM",
    "CD11C": "ITGAX", "CD11A": "ITGAL", "CD18": "ITGB2", "CD29": "ITGB1", "CD49D": "ITGA4",
    "CD49F": "ITGA6", "CD41": "ITGA2B", "CD61": "ITGB3", "CD62L": "SELL", "CD62P": "SELP",
    "CD79B": "CD79B", "CD158": "KIR2DL1", "HLADR": "HLA-DRA", "HLA-DR": "HLA-DRA", "CD1C": "CD1C",
    "CD1D": "CD1D", "CD21": "CR2", "CD35": "CR1", "CD25": "IL2RA", "CD127": "IL7R", "CD122": "IL2RB",
    "CD123": "IL3RA", "CD117": "KIT", "CD34": "CD34", "CD71": "TFRC", "CD57": "B3GAT1",
    "CD15": "FUT4", "CD24": "CD24", "CD26": "DPP4", "CD39": "ENTPD1", "CD73": "NT5E",
    "CD107A": "LAMP1", "CD134": "TNFRSF4", "CD137": "TNFRSF9", "CD152": "CTLA4", "CD154": "CD40LG",
    "CD183": "CXCR3", "CD184": "CXCR4", "CD185": "CXCR5", "CD194": "CCR4", "CD195": "CCR5",
    "CD196": "CCR6", "CD197": "CCR7", "CD279": "PDCD1", "CD274": "CD274", "CD270": "TNFRSF14",
    "CD303": "CLEC4C", "CD304": "NRP1", "CD335": "NCR1", "CD337": "NCR3", "CD366": "HAVCR2",
    "TCRAB": "TRAC", "TCRGD": "TRDC", "IGD": "IGHD", "IGM": "IGHM", "CD16/32": "FCGR3A",
}
# fmt: on


def adt_gene(name: str, genes: set[str]) -> str | None:
    """The RNA gene coding an antibody target, or None."""
    n = re.sub(r"^(ADT[_-])|(-1|-2|_PROT|\.1)$", "", name.strip(), flags=re.I).upper()
    n = n.replace("_", "-")
    for cand in (n, n.replace("-", ""), ADT_ALIASES.get(n), ADT_ALIASES.get(n.replace("-", ""))):
        if cand and cand in genes:
            return cand
    return None


def placed_genes(var) -> np.ndarray:
    """Genes with usable coordinates (missing ones are NaN, or '' / -1 as shipped)."""
    if not {"chrom", "chromStart", "chromEnd", "strand"} <= set(var.columns):
        raise ValueError("RNA var needs chrom/chromStart/chromEnd/strand for GLUE's guidance graph")
    chrom = var["chrom"].astype(object)
    start = pd.to_numeric(var["chromStart"], errors="coerce")
    end = pd.to_numeric(var["chromEnd"], errors="coerce")
    strand = var["strand"].astype(object)
    ok = chrom.notna() & (chrom.astype(str) != "") & start.notna() & (start >= 0) & (end > start)
    ok &= strand.isin(["+", "-"])
    return ok.to_numpy()


def run(args) -> None:
    import networkx as nx
    import scanpy as sc
    import scglue
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    C.seed_python_numpy(args.seed)
    scglue.config.DATALOADER_NUM_WORKERS = 0
    scglue.config.PRINT_LOSS_INTERVAL = 10

    task = C.load_task(args.task_dir)
    mods = task.meta["modalities"]
    unknown = set(mods) - {"rna", "atac", "adt"}
    if unknown:
        raise C.Unsupported(f"no GLUE preprocessing for modalities {sorted(unknown)}")
    if "rna" not in mods:
        raise C.Unsupported("GLUE's guidance graph is anchored on RNA genes; task has no RNA")
    notes = []
    adatas = {}

    # --- RNA (tutorial preprocessing)
    rna = task.mods["rna"].copy()
    rna.X = sp.csr_matrix(rna.X, dtype=np.float32)
    rna.layers["counts"] = rna.X.copy()
    n_hvg = min(2000, rna.n_vars)
    sc.pp.highly_variable_genes(rna, n_top_genes=n_hvg, flavor="seurat_v3")
    sc.pp.normalize_total(rna)
    sc.pp.log1p(rna)
    sc.pp.scale(rna)
    sc.tl.pca(
        rna,
        n_comps=min(100, rna.n_obs - 1, int(rna.var["highly_variable"].sum()) - 1),
        svd_solver="auto",
    )
    adatas["rna"] = rna
    notes.append(
        f"RNA: {int(rna.var['highly_variable'].sum())} HVG (seurat_v3, of {rna.n_vars}), PCA {rna.obsm['X_pca'].shape[1]}"
    )
    if task.measured_in("rna") is not None:
        notes.append(
            "RNA genes not measured in a batch are zeros (GLUE has no per-batch gene mask)"
        )

    graph = nx.MultiDiGraph()
    # --- ATAC (tutorial preprocessing + RNA-anchored guidance graph)
    if "atac" in mods:
        atac = task.mods["atac"].copy()
        atac.X = sp.csr_matrix(atac.X, dtype=np.float32)
        scglue.data.lsi(atac, n_components=min(100, atac.n_vars - 1, atac.n_obs - 1), n_iter=15)
        if shutil.which("bedtools") is None:
            raise RuntimeError(
                "GLUE's guidance graph needs the bedtools binary (>= 2.29.2) on PATH: "
                "apt-get install -y bedtools"
            )
        placed = placed_genes(rna.var)
        rna_placed = rna[:, placed].copy()
        for col in ("chrom", "strand"):
            rna_placed.var[col] = rna_placed.var[col].astype(str)
        rna_placed.var["chromStart"] = rna_placed.var["chromStart"].astype(int)
        rna_placed.var["chromEnd"] = rna_placed.var["chromEnd"].astype(int)
        atac.var["chrom"] = atac.var["chrom"].astype(str)
        atac.var["chromStart"] = atac.var["chromStart"].astype(int)
        atac.var["chromEnd"] = atac.var["chromEnd"].astype(int)
        graph = scglue.genomics.rna_anchored_guidance_graph(rna_placed, atac)
        for g in rna.var_names[~placed]:
            graph.add_edge(g, g, weight=1.0, sign=1, type="loop")
        n_hv_peaks = int(atac.var["highly_variable"].sum())
        if n_hv_peaks == 0:
            raise ValueError("no ATAC peak is linked to a highly variable gene")
        adatas["atac"] = atac
        notes.append(
            f"guidance graph: rna_anchored_guidance_graph on {placed.sum()}/{rna.n_vars} genes with "
            f"coordinates ({task.meta.get('genome')}), {graph.number_of_edges()} edges; "
            f"{n_hv_peaks}/{atac.n_vars} peaks linked to HVGs used (highly_variable propagated); LSI {atac.obsm['X_lsi'].shape[1]}"
        )
    else:
        for g in rna.var_names:
            graph.add_edge(g, g, weight=1.0, sign=1, type="loop")

    # --- ADT (closest reasonable: RNA-like, linked to coding genes)
    if "adt" in mods:
        adt = task.mods["adt"].copy()
        adt.X = sp.csr_matrix(adt.X, dtype=np.float32)
        adt.var_names = [f"adt:{v}" for v in task.mods["adt"].var_names]
        adt.layers["counts"] = adt.X.copy()
        adt.var["highly_variable"] = True
        sc.pp.normalize_total(adt)
        sc.pp.log1p(adt)
        sc.pp.scale(adt)
        sc.tl.pca(adt, n_comps=min(50, adt.n_vars - 1, adt.n_obs - 1), svd_solver="auto")
        genes = set(rna.var_names[rna.var["highly_variable"].to_numpy()])
        n_links = 0
        for full, short in zip(adt.var_names, task.mods["adt"].var_names):
            graph.add_edge(full, full, weight=1.0, sign=1, type="loop")
            g = adt_gene(short, genes)
            if g is not None:
                graph.add_edge(full, g, weight=1.0, sign=1, type="fwd")
                graph.add_edge(g, full, weight=1.0, sign=1, type="rev")
                n_links += 1
        adatas["adt"] = adt
        notes.append(
            f"ADT (not in GLUE's tutorials): NB on counts, encoder on normalize/log1p/scale/PCA "
            f"{adt.obsm['X_pca'].shape[1]}; guidance edges protein<->coding HVG by symbol for "
            f"{n_links}/{adt.n_vars} proteins, the rest self-loop only"
        )

    n_paired = 0
    for m, a in adatas.items():
        layer = "counts" if m in ("rna", "adt") else None
        rep = "X_lsi" if m == "atac" else "X_pca"
        scglue.models.configure_dataset(
            a,
            "NB",
            use_highly_variable=True,
            use_layer=layer,
            use_rep=rep,
            use_batch=task.batch_key,
            use_obs_names=True,
        )
    combo = task.combination()
    n_paired = int((combo.str.contains(r"\+")).sum())
    hv = [v for a in adatas.values() for v in a.var_names[a.var["highly_variable"].to_numpy()]]
    guidance_hvf = graph.subgraph(hv).copy()
    scglue.graph.check_graph(graph, list(adatas.values()))

    fit_kws = {}
    if args.max_epochs is not None:
        n = int(args.max_epochs)
        M = scglue.models.SCGLUEModel
        fit_kws = {
            "max_epochs": n,
            "align_burnin": max(1, ceil(n * M.ALIGN_BURNIN_PRG / M.MAX_EPOCHS_PRG)),
            "patience": max(1, ceil(n * M.PATIENCE_PRG / M.MAX_EPOCHS_PRG)),
            "reduce_lr_patience": max(1, ceil(n * M.REDUCE_LR_PATIENCE_PRG / M.MAX_EPOCHS_PRG)),
        }

    # count epochs per stage: report_metrics is called once per epoch
    stages: list[int] = []
    trainer_cls = scglue.models.scglue.PairedSCGLUETrainer
    orig_report = trainer_cls.report_metrics
    orig_fit = scglue.models.base.Trainer.fit

    stage_seconds: list[float] = []

    def counting_fit(self, *a, **k):
        stages.append(0)
        t0 = time.perf_counter()
        try:
            return orig_fit(self, *a, **k)
        finally:
            stage_seconds.append(round(time.perf_counter() - t0, 2))

    def counting_report(self, train_state, val_state):
        stages[-1] = int(train_state.epoch)
        return orig_report(self, train_state, val_state)

    trainer_cls.report_metrics = counting_report
    scglue.models.base.Trainer.fit = counting_fit

    # GLUE's balancing weights come out NaN when the pretrained embeddings match no cluster across
    # modalities (cosine < cutoff everywhere; seen with very short pretraining); NaN weights then
    # poison the fine-tune. Fall back to uniform weights (= fit_SCGLUE(skip_balance=True)) and say so.
    orig_balance = scglue.models.estimate_balancing_weight
    balance_fallback = []

    def safe_balance(*ads, key_added="balancing_weight", **kw):
        orig_balance(*ads, key_added=key_added, **kw)
        if any(not np.isfinite(a.obs[key_added].to_numpy(dtype=float)).all() for a in ads):
            for a in ads:
                a.obs[key_added] = 1.0
            balance_fallback.append(True)

    scglue.models.estimate_balancing_weight = safe_balance

    result = {}
    with tempfile.TemporaryDirectory(prefix="glue-") as tmp:
        fit_kws["directory"] = tmp
        with C.stopwatch(result):
            glue = scglue.models.fit_SCGLUE(
                adatas,
                guidance_hvf,
                model=scglue.models.PairedSCGLUEModel,
                init_kws={"random_seed": args.seed},
                fit_kws=fit_kws,
            )
        emb_sum = None
        counts = np.zeros(task.n_cells)
        for m, a in adatas.items():
            z = glue.encode_data(m, a)
            if emb_sum is None:
                emb_sum = np.zeros((task.n_cells, z.shape[1]))
            rows = task.cells.index.get_indexer(a.obs_names)
            emb_sum[rows] += z
            counts[rows] += 1
    emb = emb_sum / counts[:, None]

    epochs = int(sum(stages))
    notes.insert(
        0,
        f"mosaic: one GLUE dataset per modality, {n_paired} paired cells linked with use_obs_names + "
        "PairedSCGLUEModel; embedding of a multi-modality cell = mean of its modality embeddings",
    )
    notes.append(f"epochs per stage (pretrain, fine-tune) = {stages}")
    if balance_fallback:
        notes.append(
            "balancing weights were NaN after pretraining (no cross-modality cluster match): uniform weights used"
        )
    notes.append(
        "GLUE defaults (lr 2e-3, latent 50, AUTO schedule)"
        if args.max_epochs is None
        else f"max_epochs={args.max_epochs} per stage, align_burnin={fit_kws['align_burnin']}, "
        f"patience={fit_kws['patience']}, reduce_lr_patience={fit_kws['reduce_lr_patience']} "
        "(GLUE's AUTO ratios); otherwise GLUE defaults (lr 2e-3, latent 50)"
    )
    C.write_outputs(
        args.out,
        task,
        emb,
        {
            "method": "glue",
            "task": task.name,
            "seed": args.seed,
            "train_seconds": result["train_seconds"],
            "epochs": epochs,
            "epoch_cap": args.max_epochs,
            "version": f"scglue {scglue.__version__}",
            "notes": "; ".join(notes),
            "seconds_per_epoch": round(sum(stage_seconds) / max(epochs, 1), 3),
            "epochs_per_stage": stages,
            "stage_seconds": stage_seconds,
        },
    )
    C.log(f"done: {stages} epochs in {result['train_seconds']:.1f}s, embedding {emb.shape}")


if __name__ == "__main__":
    raise SystemExit(C.main_guard(run))
