"""Time guidance-graph construction on a genome-scale case.

All genes of the shipped hg38 table (one RNA feature per symbol) against synthetic ATAC peaks
(default 200,000, 200–1,000 bp, uniform over the chromosomes' annotated span, named
``chr1:100-200``), plus a 134-antibody ADT panel from the bundled BMMC data; times
:func:`mmaavi.graph.add_guidance_graph` end to end (peak-name parsing, annotation matching,
overlaps, merging, self-loops, the check) and prints one JSON line per repeat.

    .venv/bin/python benchmarks/graph_construction.py --peaks 200000 --repeats 3

The seconds are wall time on whatever machine ran them (indicative; single process).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

import mmaavi


def _features(names: np.ndarray, var: pd.DataFrame | None = None) -> ad.AnnData:
    """A one-cell AnnData: graph construction only reads feature names and var columns."""
    var = pd.DataFrame(index=pd.Index(names, dtype=str)) if var is None else var
    return ad.AnnData(X=sp.csr_matrix((1, len(var))), obs=pd.DataFrame(index=["cell"]), var=var)


def synthetic_mdata(n_peaks: int, seed: int = 0) -> md.MuData:
    """hg38 genes x ``n_peaks`` random peaks x the BMMC antibody panel."""
    genes = mmaavi.graph.load_annotation("hg38")
    rng = np.random.default_rng(seed)
    span = genes.groupby("chrom")["chromEnd"].max()
    chrom = rng.choice(span.index.to_numpy(), size=n_peaks, p=(span / span.sum()).to_numpy())
    width = rng.integers(200, 1000, size=n_peaks)
    start = (rng.random(n_peaks) * (span.loc[chrom].to_numpy() - width)).astype(np.int64)
    peaks = pd.unique(
        pd.Series(chrom) + ":" + start.astype(str) + "-" + (start + width).astype(str)
    )
    antibodies = mmaavi.datasets.bmmc_mosaic()["adt"].var_names.to_numpy()
    return md.MuData(
        {
            "rna": _features(genes["gene_name"].unique()),
            "atac": _features(peaks),
            "adt": _features(antibodies),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peaks", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    mdata = synthetic_mdata(args.peaks)
    mmaavi.graph.load_annotation("hg38")  # the table is read once per process; not timed
    for repeat in range(args.repeats):
        start = time.perf_counter()
        graph = mmaavi.graph.add_guidance_graph(mdata, "hg38")
        seconds = time.perf_counter() - start
        cross = graph[graph["source_modality"] != graph["target_modality"]]
        print(
            json.dumps(
                {
                    "repeat": repeat,
                    "genes": mdata["rna"].n_vars,
                    "peaks": mdata["atac"].n_vars,
                    "antibodies": mdata["adt"].n_vars,
                    "cross_links": len(cross),
                    "edges_with_self_loops": len(graph),
                    "seconds": round(seconds, 2),
                    "machine": platform.machine(),
                    "python": platform.python_version(),
                }
            )
        )


if __name__ == "__main__":
    main()
