"""Read a stored guidance graph back as an edge list, and check it against the data."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._keys import GUIDANCE_KEY, MODALITY_COLUMNS

logger = logging.getLogger(__name__)

#: columns of a stored guidance graph (what :func:`mmaavi.graph.graph_tensors` consumes)
GRAPH_COLUMNS = ("source", "target", "weight", "sign", *MODALITY_COLUMNS)


def var_names_of(mdata) -> dict[str, pd.Index]:
    """Feature names per modality of a MuData, in ``mdata.mod`` order."""
    mods = getattr(mdata, "mod", None)
    if not isinstance(mods, Mapping):
        raise TypeError(
            "Expected a mudata.MuData (one AnnData per modality in .mod); found "
            f"{type(mdata).__name__}. Build one with mmaavi.data.mosaic({{'rna': ..., ...}})."
        )
    return {m: pd.Index(np.asarray(a.var_names, dtype=str)) for m, a in mods.items()}


def _lookup(var_names: Mapping[str, pd.Index]) -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"modality": m, "feature": names}) for m, names in var_names.items()],
        ignore_index=True,
    )


def node_ids(
    modality: np.ndarray, feature: np.ndarray, var_names: Mapping[str, pd.Index]
) -> np.ndarray:
    """Position of each (modality, feature) in the concatenated features; -1 when unknown."""
    modality, feature = np.asarray(modality, dtype=object), np.asarray(feature, dtype=object)
    ids = np.full(len(feature), -1, dtype=np.int64)
    offset = 0
    for m, names in var_names.items():
        if not names.is_unique:
            raise ValueError(
                f"Feature names of modality {m!r} are not unique (e.g. "
                f"{list(names[names.duplicated()][:3])}); make them unique first, e.g. "
                f"mdata.mod[{m!r}].var_names_make_unique()."
            )
        rows = np.flatnonzero(modality == m)
        pos = names.get_indexer(feature[rows])
        ids[rows[pos >= 0]] = pos[pos >= 0] + offset
        offset += len(names)
    return ids


def _fill_modalities(
    names: pd.Series, lookup: pd.DataFrame, side: str, on_unknown: str
) -> pd.Series:
    """Modality of each feature name; raises when a name is in several modalities."""
    counts = lookup["feature"].value_counts()
    ambiguous = names[names.map(counts).fillna(0) > 1].unique()
    if len(ambiguous):
        raise ValueError(
            f"Graph {side} names {list(ambiguous[:5])} exist in more than one modality; add "
            f"'{side}_modality' columns to say which feature is meant."
        )
    modality = names.map(lookup.drop_duplicates("feature").set_index("feature")["modality"])
    if on_unknown == "raise" and modality.isna().any():
        _raise_unknown(names[modality.isna().to_numpy()].unique(), side, lookup)
    return modality


def _raise_unknown(unknown, side: str, lookup: pd.DataFrame) -> None:
    raise ValueError(
        f"The guidance graph names {len(unknown)} {side} feature(s) that are not in the data, "
        f"e.g. {list(unknown[:5])}. Expected feature names of the modalities "
        f"{list(lookup['modality'].unique())}; remove those edges or fix the names."
    )


def as_edge_table(
    graph: pd.DataFrame | sp.spmatrix | sp.sparray,
    var_names: Mapping[str, pd.Index],
    on_unknown: str = "raise",
) -> pd.DataFrame:
    """Any accepted graph form as an edge list with the columns :data:`GRAPH_COLUMNS`.

    Parameters
    ----------
    graph
        An edge-list DataFrame (``source``, ``target``, optional ``weight``, ``sign`` and
        modality columns) or a square sparse matrix over the features of ``var_names``
        concatenated in order, with values ``sign * weight``.
    var_names
        Feature names per modality.
    on_unknown
        ``"raise"``: a ValueError for names not in ``var_names``; ``"keep"``: keep them (with a
        missing modality when it cannot be known), for :func:`check_graph` to report.
    """
    lookup = _lookup(var_names)
    if isinstance(graph, pd.DataFrame):
        missing = [c for c in ("source", "target") if c not in graph.columns]
        if missing:
            raise KeyError(
                f"A guidance-graph edge list needs columns 'source' and 'target'; missing "
                f"{missing}, found {list(graph.columns)}."
            )
        out = pd.DataFrame(
            {
                "source": graph["source"].astype(str).to_numpy(),
                "target": graph["target"].astype(str).to_numpy(),
                "weight": (
                    graph["weight"].to_numpy(float) if "weight" in graph else np.ones(len(graph))
                ),
                "sign": graph["sign"].to_numpy(float) if "sign" in graph else np.ones(len(graph)),
            }
        )
        for side in ("source", "target"):
            column = f"{side}_modality"
            if column in graph.columns:
                out[column] = graph[column].astype(str).to_numpy()
            else:
                out[column] = _fill_modalities(out[side], lookup, side, on_unknown).to_numpy()
        if on_unknown == "raise":
            for side in ("source", "target"):
                bad = node_ids(out[f"{side}_modality"], out[side], var_names) < 0
                if bad.any():
                    _raise_unknown(out.loc[bad, side].unique(), side, lookup)
    elif sp.issparse(graph):
        n = len(lookup)
        if graph.shape != (n, n):
            raise ValueError(
                f"A sparse guidance graph must be square over all features ({n} x {n}, "
                f"modalities {list(var_names)} concatenated in order); found shape {graph.shape}."
            )
        coo = sp.coo_matrix(graph)
        keep = coo.data != 0
        row, col, value = coo.row[keep], coo.col[keep], coo.data[keep]
        out = pd.DataFrame(
            {
                "source": lookup["feature"].to_numpy()[row],
                "target": lookup["feature"].to_numpy()[col],
                "weight": np.abs(value).astype(float),
                "sign": np.sign(value).astype(float),
                "source_modality": lookup["modality"].to_numpy()[row],
                "target_modality": lookup["modality"].to_numpy()[col],
            }
        )
    else:
        raise TypeError(
            "A guidance graph must be a pandas DataFrame edge list or a scipy sparse adjacency; "
            f"found {type(graph).__name__}."
        )
    out["sign"] = (
        out["sign"].astype(np.int64) if np.isin(out["sign"], (-1, 1)).all() else out["sign"]
    )
    return out[list(GRAPH_COLUMNS)].reset_index(drop=True)


def edges(mdata) -> pd.DataFrame:
    """The guidance graph stored in ``mdata.uns["mmaavi_guidance"]`` as an edge list.

    Parameters
    ----------
    mdata
        A MuData on which :func:`mmaavi.graph.add_guidance_graph` ran, or whose
        ``uns["mmaavi_guidance"]`` holds a user's edge list or sparse adjacency.

    Returns
    -------
    pandas.DataFrame
        Columns ``source``, ``target``, ``weight``, ``sign``, ``source_modality``,
        ``target_modality``; feature names as in the data. A copy: editing it does not change
        the stored graph.

    Raises
    ------
    KeyError
        When no graph is stored.
    ValueError
        When the stored graph names features that are not in the data.
    """
    var_names = var_names_of(mdata)
    if GUIDANCE_KEY not in mdata.uns:
        raise KeyError(
            f"No guidance graph in mdata.uns[{GUIDANCE_KEY!r}]. Build one with "
            "mmaavi.graph.add_guidance_graph(mdata, annotation='hg38') (or 'mm10')."
        )
    return as_edge_table(mdata.uns[GUIDANCE_KEY], var_names)


@dataclass
class GraphReport:
    """What :func:`check_graph` found; ``str(report)`` is a readable summary.

    Attributes
    ----------
    n_features
        Modality -> number of features.
    unlinked
        Modality -> names of the features with no link to another modality.
    links
        ``(modality_a, modality_b)`` -> number of undirected links (self-loops excluded).
    missing_self_loops
        Modality -> number of features without a self-loop in the graph (mmaavi adds them when
        it builds the model's edge tensors).
    asymmetric
        Number of feature pairs listed in both directions with a different weight or sign.
    unknown_features
        ``(modality, name)`` of graph features that are not in the data (modality None when
        it cannot be told).
    """

    n_features: dict[str, int]
    unlinked: dict[str, list[str]]
    links: dict[tuple[str, str], int]
    missing_self_loops: dict[str, int]
    asymmetric: int
    unknown_features: list[tuple[str | None, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every graph feature exists and no pair is asymmetric."""
        return not self.unknown_features and self.asymmetric == 0

    @property
    def covered(self) -> dict[str, int]:
        """Modality -> number of features with at least one cross-modality link."""
        return {m: n - len(self.unlinked[m]) for m, n in self.n_features.items()}

    def __str__(self) -> str:
        lines = ["Guidance graph check:"]
        for m, n in self.n_features.items():
            lines.append(
                f"  {m}: {self.covered[m]}/{n} features linked to another modality, "
                f"{len(self.unlinked[m])} unlinked, {self.missing_self_loops[m]} without self-loop"
            )
        for (a, b), n in self.links.items():
            lines.append(f"  links {a}-{b}: {n}")
        lines.append(f"  asymmetric pairs: {self.asymmetric}")
        lines.append(f"  unknown features: {len(self.unknown_features)}")
        if self.unknown_features:
            lines[-1] += f", e.g. {self.unknown_features[:5]}"
        return "\n".join(lines)


def _asymmetric_pairs(src: np.ndarray, dst: np.ndarray, weight, sign, n: int) -> int:
    """Pairs listed both ways (a->b and b->a) whose weight or sign differ."""
    keep = src != dst
    forward = pd.DataFrame(
        {"k": src[keep] * n + dst[keep], "w": weight[keep], "s": sign[keep]}
    ).drop_duplicates()
    backward = forward.assign(k=dst[keep] * n + src[keep])
    both = forward.merge(backward, on="k", suffixes=("", "_rev"))
    differ = (both["w"] != both["w_rev"]) | (both["s"] != both["s_rev"])
    return int(both.loc[differ, "k"].nunique() // 2)


def check_graph(mdata, graph: pd.DataFrame | sp.spmatrix | sp.sparray | None = None) -> GraphReport:
    """Check a guidance graph against the data and summarise it.

    Parameters
    ----------
    mdata
        The MuData the graph is for.
    graph
        An edge list or sparse adjacency; default the graph stored in
        ``mdata.uns["mmaavi_guidance"]``.

    Returns
    -------
    GraphReport
        Unlinked features, links per modality pair, missing self-loops, asymmetric pairs and
        unknown feature names; also logged at INFO level. It does not raise for problems it
        reports: ``report.ok`` tells whether the model would accept the graph's names.

    Raises
    ------
    KeyError
        When ``graph`` is None and no graph is stored.
    """
    var_names = var_names_of(mdata)
    if graph is None:
        if GUIDANCE_KEY not in mdata.uns:
            raise KeyError(
                f"No graph given and none stored in mdata.uns[{GUIDANCE_KEY!r}]. Build one "
                "with mmaavi.graph.add_guidance_graph(mdata, annotation='hg38') (or 'mm10')."
            )
        graph = mdata.uns[GUIDANCE_KEY]
    table = as_edge_table(graph, var_names, on_unknown="keep")
    src = node_ids(table["source_modality"], table["source"], var_names)
    dst = node_ids(table["target_modality"], table["target"], var_names)
    unknown: list[tuple[str | None, str]] = []
    for side, ids in (("source", src), ("target", dst)):
        rows = table.loc[ids < 0, [f"{side}_modality", side]]
        unknown += [(None if pd.isna(m) else str(m), str(f)) for m, f in rows.itertuples(False)]
    exists = (src >= 0) & (dst >= 0)
    src, dst = src[exists], dst[exists]
    weight, sign = table["weight"].to_numpy(float)[exists], table["sign"].to_numpy(float)[exists]
    order = list(var_names)
    sizes = np.array([len(var_names[m]) for m in order], dtype=np.int64)
    n = int(sizes.sum())
    modality = np.repeat(np.arange(len(order)), sizes)
    loop = src == dst
    cross = modality[src] != modality[dst]
    linked = np.zeros(n, dtype=bool)
    linked[src[cross]] = linked[dst[cross]] = True
    looped = np.zeros(n, dtype=bool)
    looped[src[loop]] = True
    a, b = np.minimum(src[~loop], dst[~loop]), np.maximum(src[~loop], dst[~loop])
    pairs = np.unique(a * n + b)
    ma, mb = modality[pairs // n], modality[pairs % n]
    pair_codes, counts = np.unique(
        np.minimum(ma, mb) * len(order) + np.maximum(ma, mb), return_counts=True
    )
    starts = np.concatenate([[0], np.cumsum(sizes)])
    report = GraphReport(
        n_features={m: int(k) for m, k in zip(order, sizes)},
        unlinked={
            m: list(var_names[m][~linked[starts[i] : starts[i + 1]]]) for i, m in enumerate(order)
        },
        links={
            (order[c // len(order)], order[c % len(order)]): int(k)
            for c, k in zip(pair_codes, counts)
        },
        missing_self_loops={
            m: int((~looped[starts[i] : starts[i + 1]]).sum()) for i, m in enumerate(order)
        },
        asymmetric=_asymmetric_pairs(src, dst, weight, sign, n),
        unknown_features=list(dict.fromkeys(unknown)),
    )
    logger.info("%s", report)
    return report
