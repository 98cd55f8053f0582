"""Antibody ↔ gene links by name: standard markers right, never substring, CITE naming styles."""

from __future__ import annotations

import anndata as ad
import mudata as md
import pandas as pd
import pytest
import scipy.sparse as sp

import mmaavi
from mmaavi.graph import ANTIBODY_ALIASES, add_guidance_graph, load_annotation
from mmaavi.graph._proteins import is_isotype_control, name_key, protein_gene_links


def _features(names) -> ad.AnnData:
    var = pd.DataFrame(index=pd.Index(list(names), dtype=str))
    return ad.AnnData(X=sp.csr_matrix((1, len(var))), obs=pd.DataFrame(index=["c"]), var=var)


def _targets(links: pd.DataFrame) -> dict[str, set[str]]:
    return links.groupby("source")["target"].agg(set).to_dict()


@pytest.fixture(scope="module")
def bmmc():
    return mmaavi.datasets.bmmc_mosaic()


@pytest.fixture(scope="module")
def hg38_symbols():
    return load_annotation("hg38")["gene_name"].unique()


def test_bmmc_panel_against_all_hg38_genes(bmmc, hg38_symbols):
    """The bundled RNA keeps 1966 HVGs only (no CD19, CD14, CD3E...), so the marker links are
    checked for the BMMC antibody panel against every hg38 gene symbol."""
    match = protein_gene_links(bmmc["adt"].var_names, hg38_symbols)
    targets = _targets(match.links)
    assert targets["CD19"] == {"CD19"}
    assert targets["CD14"] == {"CD14"}
    assert targets["CD3"] == {"CD3E", "CD3D", "CD3G"}
    assert targets["CD16"] == {"FCGR3A", "FCGR3B"}
    assert targets["CD56"] == {"NCAM1"}
    assert targets["CD4"] == {"CD4"}
    assert targets["CD8"] == {"CD8A", "CD8B"}
    assert targets["HLA-DR"] == {"HLA-DRA", "HLA-DRB1"}
    assert targets["CD45RA"] == targets["CD45RO"] == {"PTPRC"}
    assert targets["LOX-1"] == {"OLR1"}
    assert targets["CD40"] == {"CD40"} and targets["CD44"] == {"CD44"}
    # exact names only: nothing but CD4 for CD4, and no CD4x gene reached from any antibody
    linked_genes = set(match.links["target"])
    assert not {"CD40", "CD44", "CD48"} & targets["CD4"]
    assert all(len(t) <= 4 for t in targets.values())
    assert "CD4" in linked_genes and len(match.links) < 2 * len(bmmc["adt"].var_names)


def test_bmmc_mosaic_graph_links_and_no_substring(bmmc):
    mdata = bmmc.copy()
    graph = add_guidance_graph(mdata, "hg38")
    adt = graph[(graph["source_modality"] == "adt") & (graph["target_modality"] == "rna")]
    pairs = set(zip(adt["source"], adt["target"]))
    genes = set(mdata["rna"].var_names)
    # markers whose genes are in the bundled RNA
    assert {
        ("CD3", "CD3D"),
        ("CD20", "MS4A1"),
        ("CD62L", "SELL"),
        ("CD45RA", "PTPRC"),
        ("HLA-DR", "HLA-DRA"),
        ("HLA-DR", "HLA-DRB1"),
        ("CD94", "KLRD1"),
        ("CD161", "KLRB1"),
    } <= pairs
    # every link is an exact symbol or an alias entry
    for antibody, gene in pairs:
        assert gene in genes
        assert gene.upper() == antibody.upper() or gene in ANTIBODY_ALIASES.get(antibody, ())
    assert not any(a == "CD4" and g in {"CD40", "CD44", "CD48"} for a, g in pairs)
    assert not any(g.startswith("CD4") and g != a for a, g in pairs if a == "CD4")


@pytest.mark.parametrize(
    ("antibody", "expected"),
    [
        ("CD3-1", {"CD3E", "CD3D", "CD3G"}),  # copy 1 of CD3, never CD31
        ("cd4.2", {"CD4"}),
        ("Hu.CD19", {"CD19"}),
        ("CD8a", {"CD8A"}),
        ("cd19", {"CD19"}),
        ("hla.dr", {"HLA-DRA", "HLA-DRB1"}),
        ("CD14_TotalSeqB", {"CD14"}),
        ("anti-CD56", {"NCAM1"}),
        ("CD158 (KIR2DL1/S1/S3/S5)", {"KIR2DL1"}),
        ("cd11b.1", {"ITGAM"}),
        ("lox.1", {"OLR1"}),
        ("CD31", {"PECAM1"}),
    ],
)
def test_cite_naming_styles(antibody, expected):
    genes = ["CD3E", "CD3D", "CD3G", "CD4", "CD40", "CD19", "CD8A", "CD8B", "HLA-DRA"]
    genes += ["HLA-DRB1", "CD14", "NCAM1", "KIR2DL1", "ITGAM", "OLR1", "LOX", "PECAM1"]
    assert _targets(protein_gene_links([antibody], genes).links) == {antibody: expected}


def test_mouse_genes_match_case_insensitively():
    links = protein_gene_links(["CD3", "CD4"], ["Cd3e", "Cd3g", "Cd4", "Cd40"]).links
    assert _targets(links) == {"CD3": {"Cd3e", "Cd3g"}, "CD4": {"Cd4"}}


def test_isotype_controls_are_never_linked():
    names = ["Mouse-IgG1", "IgG2a_isotype", "Rat_IgG2b_kappa_Ctrl", "IgG1", "IgM", "IgD"]
    assert [is_isotype_control(n) for n in names] == [True, True, True, True, False, False]
    match = protein_gene_links(names, ["IGHG1", "IGHM", "IGHD"])
    assert _targets(match.links) == {"IgM": {"IGHM"}, "IgD": {"IGHD"}}
    assert match.isotypes == names[:4]


def test_user_aliases_extend_and_override():
    genes = ["CD4", "MYGENE", "CD3E"]
    match = protein_gene_links(
        ["CD4", "MyAntibody", "CD3"], genes, aliases={"MyAntibody": "MYGENE", "CD4": []}
    )
    assert _targets(match.links) == {"MyAntibody": {"MYGENE"}, "CD3": {"CD3E"}}


def test_alias_keys_do_not_collide_with_different_targets():
    seen: dict[str, tuple] = {}
    for antibody, genes in ANTIBODY_ALIASES.items():
        key = name_key(antibody)
        assert seen.setdefault(key, genes) == genes, antibody


def test_bad_aliases_fail():
    with pytest.raises(TypeError, match="aliases must be a mapping"):
        protein_gene_links(["CD3"], ["CD3E"], aliases=[("CD3", "CD3E")])
    with pytest.raises(TypeError, match=r"aliases\['CD3'\] must be a gene symbol"):
        protein_gene_links(["CD3"], ["CD3E"], aliases={"CD3": [1]})


def test_adt_only_mosaic_needs_no_annotation():
    mdata = md.MuData({"rna": _features(["CD4", "CD40"]), "adt": _features(["CD4", "CD40"])})
    graph = add_guidance_graph(mdata)
    cross = graph[graph["source_modality"] != graph["target_modality"]]
    assert set(zip(cross["source"], cross["target"])) == {("CD4", "CD4"), ("CD40", "CD40")}
