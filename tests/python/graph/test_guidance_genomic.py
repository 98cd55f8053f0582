"""Peak ↔ gene links: peak-name parsing, strand-aware windows, annotations, species guard."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mmaavi
from mmaavi.graph import GUIDANCE_KEY, add_guidance_graph, graph_tensors, load_annotation
from mmaavi.graph._genomic import overlap_pairs, parse_peaks


def _features(names, var: pd.DataFrame | None = None) -> ad.AnnData:
    var = pd.DataFrame(index=pd.Index(names, dtype=str)) if var is None else var
    return ad.AnnData(X=sp.csr_matrix((2, len(var))), obs=pd.DataFrame(index=["a", "b"]), var=var)


#: plus-strand gene G1 at [10000, 20000), minus-strand G2 at [50000, 60000), both on chr1
GENES = pd.DataFrame(
    {
        "gene_name": ["G1", "G2"],
        "gene_id": ["ENSG00000000001", "ENSG00000000002"],
        "chrom": ["chr1", "chr1"],
        "chromStart": [10000, 50000],
        "chromEnd": [20000, 60000],
        "strand": ["+", "-"],
    }
)


def _mdata(peaks, genes=("G1", "G2")) -> md.MuData:
    return md.MuData({"rna": _features(list(genes)), "atac": _features(list(peaks))})


def _links(graph: pd.DataFrame) -> set[tuple[str, str]]:
    cross = graph[graph["source_modality"] != graph["target_modality"]]
    return set(zip(cross["source"], cross["target"]))


def test_peak_names_in_all_three_forms_parse_alike():
    parsed = parse_peaks(pd.Index(["chr1:100-200", "chr2-300-400", "chrUn_KI270742v1_5_60"]))
    assert parsed["chrom"].tolist() == ["1", "2", "Un_KI270742v1"]
    assert parsed["start"].tolist() == [100, 300, 5]
    assert parsed["end"].tolist() == [200, 400, 60]


def test_var_coordinates_are_used_before_names():
    var = pd.DataFrame(
        {"chrom": ["chr3"], "chromStart": [10], "chromEnd": [20]}, index=["peak_one"]
    )
    parsed = parse_peaks(var.index, var)
    assert parsed.iloc[0].tolist() == ["3", 10, 20]


def test_upstream_window_is_strand_aware():
    peaks = [
        "chr1:8500-8600",  # 1.4-1.5 kb upstream of G1 (+): linked
        "chr1:7000-7100",  # 2.9 kb upstream of G1: not linked
        "chr1:20500-20600",  # downstream of G1: not linked with downstream=0
        "chr1:61000-61100",  # 1 kb upstream of G2 (-, TSS at 60000): linked
        "chr1:49200-49300",  # downstream of G2 (-): not linked
        "chr1:15000-15100",  # inside G1
    ]
    mdata = _mdata(peaks)
    graph = add_guidance_graph(mdata, GENES)
    assert _links(graph) == {
        ("chr1:8500-8600", "G1"),
        ("chr1:61000-61100", "G2"),
        ("chr1:15000-15100", "G1"),
    }
    wider = add_guidance_graph(mdata, GENES, upstream=3000, downstream=1000)
    assert _links(wider) == _links(graph) | {
        ("chr1:7000-7100", "G1"),
        ("chr1:20500-20600", "G1"),
        ("chr1:49200-49300", "G2"),
    }


def test_half_open_intervals_touching_do_not_overlap():
    mdata = _mdata(["chr1:7900-8000", "chr1:7900-8001"])
    assert _links(add_guidance_graph(mdata, GENES)) == {("chr1:7900-8001", "G1")}


def test_decay_weights_by_distance_to_the_body():
    mdata = _mdata(["chr1:15000-15100", "chr1:8900-9000"])
    graph = add_guidance_graph(mdata, GENES, decay=1000.0)
    cross = graph[graph["target_modality"] == "rna"]
    weight = dict(zip(cross["source"], cross["weight"]))
    assert weight["chr1:15000-15100"] == 1.0
    assert weight["chr1:8900-9000"] == pytest.approx(0.5)  # 1000 bp before the body


def test_graph_is_stored_for_the_model_with_self_loops():
    mdata = _mdata(["chr1:15000-15100", "chr1:900000-900100"])
    graph = add_guidance_graph(mdata, GENES)
    assert list(graph.columns) == list(mmaavi.graph.GRAPH_COLUMNS)
    pd.testing.assert_frame_equal(mdata.uns[GUIDANCE_KEY], graph)
    loops = graph[graph["source"] == graph["target"]]
    assert len(loops) == 4  # 2 genes + 2 peaks
    index, weight, sign = graph_tensors(graph, {m: a.var_names for m, a in mdata.mod.items()})
    assert index.shape[1] == 4 + 2  # self-loops + one link in both directions
    assert set(sign.tolist()) == {1.0}


def test_coordinates_from_rna_var_without_annotation():
    var = GENES.set_index("gene_name")[["chrom", "chromStart", "chromEnd", "strand"]]
    mdata = md.MuData({"rna": _features(var.index, var), "atac": _features(["chr1:9000-9100"])})
    assert _links(add_guidance_graph(mdata)) == {("chr1:9000-9100", "G1")}


def test_genes_match_by_ensembl_id_and_chromosome_style():
    rna = _features(
        ["first", "second"],
        pd.DataFrame(
            {"gene_id": ["ENSG00000000001.5", "ENSG00000000002"]}, index=["first", "second"]
        ),
    )
    mdata = md.MuData({"rna": rna, "atac": _features(["1:15000-15100"])})  # Ensembl-style chrom
    assert _links(add_guidance_graph(mdata, GENES)) == {("1:15000-15100", "first")}


def test_gtf_and_bed_annotations(tmp_path):
    gtf = tmp_path / "genes.gtf"
    gtf.write_text(
        "#!genome-build test\n"
        'chr1\ttest\tgene\t10001\t20000\t.\t+\t.\tgene_id "ENSG00000000001"; gene_name "G1";\n'
        'chr1\ttest\texon\t10001\t10500\t.\t+\t.\tgene_id "ENSG00000000001"; gene_name "G1";\n'
        'chr1\ttest\tgene\t50001\t60000\t.\t-\t.\tgene_id "ENSG00000000002"; gene_name "G2";\n'
    )
    table = load_annotation(gtf)
    assert table[["gene_name", "chromStart", "chromEnd", "strand"]].values.tolist() == [
        ["G1", 10000, 20000, "+"],
        ["G2", 50000, 60000, "-"],
    ]
    bed = tmp_path / "genes.bed"
    bed.write_text("chr1\t10000\t20000\tG1\t0\t+\nchr1\t50000\t60000\tG2\t0\t-\n")
    mdata = _mdata(["chr1:61000-61100"])
    assert _links(add_guidance_graph(mdata, bed)) == {("chr1:61000-61100", "G2")}


def test_shipped_annotations_load():
    hg38, mm10 = load_annotation("hg38"), load_annotation("mm10")
    assert len(hg38) > 40000 and len(mm10) > 50000
    cd4 = hg38[hg38["gene_name"] == "CD4"].iloc[0]
    assert (cd4["chrom"], cd4["strand"]) == ("chr12", "+")


def test_overlap_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    a_start = rng.integers(0, 10000, 300)
    a_end = a_start + rng.integers(1, 500, 300)
    b_start = rng.integers(0, 10000, 200)
    b_end = b_start + rng.integers(1, 3000, 200)
    i, j = overlap_pairs(a_start, a_end, b_start, b_end)
    found = set(zip(i.tolist(), j.tolist()))
    expected = {
        (x, y)
        for x in range(300)
        for y in range(200)
        if a_start[x] < b_end[y] and b_start[y] < a_end[x]
    }
    assert found == expected and len(found) == len(i)


# --- bad input -------------------------------------------------------------------------------


def test_unparseable_peak_names_fail_with_examples():
    mdata = _mdata(["chr1:100-200", "peak_7", "chr1:abc-def"])
    with pytest.raises(ValueError, match=r"2 of 3 peak names cannot be parsed.*peak_7"):
        add_guidance_graph(mdata, GENES)


def test_peak_with_end_before_start_fails():
    with pytest.raises(ValueError, match="end not after their start"):
        parse_peaks(pd.Index(["chr1:500-100"]))


def test_unknown_annotation_name_lists_choices():
    with pytest.raises(ValueError, match=r"Unknown annotation 'hg19'.*\['hg38', 'mm10'\]"):
        add_guidance_graph(_mdata(["chr1:1-2"]), "hg19")


def test_annotation_of_wrong_type_fails():
    with pytest.raises(TypeError, match="annotation must be"):
        add_guidance_graph(_mdata(["chr1:1-2"]), 38)


def test_empty_overlap_fails_and_names_chromosomes():
    mdata = _mdata(["chr2:100-200", "chr2:5000-6000"])
    with pytest.raises(ValueError, match=r"No peak of 'atac' overlaps.*genome build"):
        add_guidance_graph(mdata, GENES)


def test_species_mismatch_suggests_the_other_genome():
    mouse = ["Cd4", "Cd8a", "Gapdh", "Actb", "Ptprc", "Cd19", "Ms4a1", "Lyz2", "Nkg7", "Cd3e"]
    mdata = _mdata(["chr1:100-200"], genes=mouse)
    with pytest.raises(ValueError, match=r"Species mismatch\?.*mm10 matches 10.*annotation='mm10'"):
        add_guidance_graph(mdata, "hg38")


def test_missing_coordinates_without_annotation_fails():
    with pytest.raises(ValueError, match="No gene coordinates.*annotation='hg38'"):
        add_guidance_graph(_mdata(["chr1:100-200"]))


def test_negative_extension_fails():
    with pytest.raises(ValueError, match="upstream and downstream must be >= 0"):
        add_guidance_graph(_mdata(["chr1:15000-15100"]), GENES, upstream=-1)
