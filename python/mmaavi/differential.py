"""Differential features between groups of cells with Bayes factors (MODEL.md §10).

For two groups of cells, cells are drawn with replacement from each group, a latent ``z`` is
sampled from q(z|x) for every draw and ``V`` from q(V); **every** requested modality is then
decoded for every draw, also for cells that never measured it, at a fixed library size
(normalised expression) and averaged over the batches (a counterfactual marginalisation). The
comparison is therefore biased neither by missing modalities, nor by library size, nor by batch,
unlike the original mmAAVI code (Rong et al. 2024, doi 10.1093/bib/bbae540), which decodes missing
modalities at library size 0 and compares raw-count means.

The decision rule follows scvi-tools' documented ``differential_expression`` (Boyeau et al. 2019,
doi 10.1101/794289): a posterior probability of differential expression per feature, its
natural-log Bayes factor, and a call by the posterior expected false discovery rate.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .data import sequential_batches

logger = logging.getLogger(__name__)

#: modes of :func:`differential`
MODES = ("change", "vanilla")
#: name of the "all other cells" group in one-vs-rest comparisons
REST = "rest"
#: the lfc_* summary columns use this fraction of the decision's pseudocount (as scvi-tools
#: does): the pseudocount keeps features near zero in both groups from being called on noise,
#: but it would also shrink the reported fold change of a feature that is low in one group
#: and absent in the other (CD19 in B cells: 6e-4 against 7e-7, log2 ratio ~10, not ~2.7)
LFC_SUMMARY_PSEUDOCOUNT_FACTOR = 1e-3


@dataclass(frozen=True)
class _Comparison:
    """Two groups of cells (positions in the model's cell order) and their names."""

    name1: str
    name2: str
    cells1: np.ndarray
    cells2: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.name1} vs {self.name2}"


def differential(
    model,
    groupby: str,
    group1: Hashable | None = None,
    group2: Hashable | None = None,
    *,
    modality: str | Sequence[str] | None = None,
    mode: str = "change",
    delta: float = 0.25,
    fdr_target: float = 0.05,
    n_samples: int = 5000,
    batch_correction: bool = True,
    pseudocount: float = 1e-4,
    seed: int = 0,
    batch_size: int = 1000,
) -> pd.DataFrame:
    """Bayes-factor differential features between groups of cells, for every modality.

    For each comparison, ``n_samples`` cells are drawn with replacement from each group and paired
    draw by draw. For every draw a latent ``z`` is sampled from q(z|x) (in eval mode) and every
    requested modality is decoded as normalised expression ρ (proportions summing to 1 over the
    modality's features for count likelihoods; probabilities for Bernoulli; means for Normal),
    also where the cell never measured that modality. One ``V`` is sampled from q(V) per chunk of
    ``batch_size`` paired draws and shared by the pair.

    Parameters
    ----------
    model
        A trained :class:`~mmaavi.MMAAVI`.
    groupby
        Column of ``model.mdata.obs`` holding the groups. Cells with a missing value belong to
        no group (not even "rest").
    group1
        The group to test. ``None``: every group in turn (one comparison each, concatenated).
    group2
        The reference group. ``None``: all other cells with a group ("rest").
    modality
        Modality or list of modalities to test; ``None``: all of them.
    mode
        ``"change"``: a feature is DE in a draw when ``|lfc| > delta``; ``"vanilla"``: the event is
        ``ρ1 > ρ2`` (feature higher in group1).
    delta
        Minimal absolute log2 fold change that counts as a change (``"change"`` mode), > 0.
    fdr_target
        Target posterior expected false discovery rate, in (0, 1).
    n_samples
        Draws per group. Memory: the lfc of all draws is held, ``n_samples x n_features x 4``
        bytes per modality.
    batch_correction
        ``True``: ρ is averaged over the batches that measured the modality (the decoder's
        per-batch parameters of a batch without the modality are never trained). ``False``: the
        cell's own batch when it measured the modality, else the same average.
    pseudocount
        ε of the log fold change that decides ``proba_de`` (``"change"`` mode), on the scale of ρ
        (for count models 1e-4 is one count per 10,000). The ``lfc_*`` columns are summarised
        with ``pseudocount * 1e-3`` instead (as in scvi-tools), so that they report the fold
        change of lowly expressed features without shrinking it towards 0.
    seed
        Seeds the draws of cells, z and V. Each comparison starts from this seed, so one
        comparison's result does not depend on which other comparisons or modalities are asked for.
    batch_size
        Paired draws decoded at once; bounds memory, and sets how many V samples are drawn
        (``ceil(n_samples / batch_size)``).

    Returns
    -------
    pandas.DataFrame
        One row per (comparison, modality, feature), sorted by ``bayes_factor`` (descending)
        within each comparison, ties (e.g. the features with ``proba_de`` 1) by ``|lfc_mean|``
        (descending: among equally certain features, the larger change first); a fresh integer
        index and the columns

        ``feature``, ``modality``
            Feature name and its modality.
        ``proba_de``
            Posterior probability p of the event: ``P(|lfc| > delta)`` in ``"change"`` mode,
            ``P(ρ1 > ρ2)`` in ``"vanilla"`` mode, estimated over the paired draws.
        ``proba_not_de``
            ``1 - proba_de``.
        ``bayes_factor``
            Natural-log Bayes factor ``log p - log(1 - p)``, with p clipped to
            ``[1 / (2 n_samples), 1 - 1 / (2 n_samples)]`` (the resolution of the Monte Carlo
            estimate), so it lies within about ±log(2 n_samples). Above 3 (odds ~20:1) is strong
            evidence; 0 means no evidence either way.
        ``scale1``, ``scale2``
            Mean normalised expression ρ of the feature over the draws of group1 / group2.
        ``lfc_mean``, ``lfc_median``, ``lfc_std``, ``lfc_min``, ``lfc_max``
            Summary of ``log2((ρ1 + ε') / (ρ2 + ε'))`` over the paired draws (group1 over
            group2; positive = higher in group1), with ``ε' = pseudocount * 1e-3``. A feature
            close to 0 in both groups may show a large ``lfc_mean`` here and still have a low
            ``proba_de``, which is decided with ``ε``: read the two together. For ``"normal"``
            modalities, whose means may be negative, both are the difference ``ρ1 - ρ2``.
        ``raw_mean1``, ``raw_mean2``
            Mean raw count of the feature over the group's cells that measured it (the modality,
            and the feature where blocks measured different features); NaN when none did.
        ``non_zeros_proportion1``, ``non_zeros_proportion2``
            Fraction of those cells with a non-zero count; NaN when none.
        ``is_de_fdr_<fdr_target>``
            True for the features called DE: features sorted by ``proba_de`` (descending) are
            called while the running mean of ``proba_not_de`` (the posterior expected FDR of
            the called set) stays at most ``fdr_target``. Computed per comparison and per
            modality, so a modality's calls do not depend on which other modalities are tested.
        ``comparison``, ``group1``, ``group2``
            ``"<group1> vs <group2>"`` and the two group names (``"rest"`` for one-vs-rest).

    Raises
    ------
    RuntimeError
        The model is not trained.
    KeyError
        ``groupby`` is not a column, a group or a modality is unknown.
    ValueError
        A group has no cells, ``group1 == group2``, nothing is left for "rest", or an argument
        is out of range.

    Examples
    --------
    >>> table = differential(model, "cell_type", "B")  # B cells vs all others
    >>> table[table["is_de_fdr_0.05"]].groupby("modality").head(10)
    """
    modalities = _check_arguments(
        model, mode, delta, fdr_target, n_samples, pseudocount, batch_size, modality
    )
    comparisons = _comparisons(model, groupby, group1, group2)
    data = model.data
    module = model.module
    was_training = module.training
    module.eval()
    try:
        posterior = model._encode(batch_size)
        qz_loc = torch.from_numpy(posterior["z"])
        qz_scale = torch.from_numpy(posterior["z_scale"])
        tables = []
        for comp in comparisons:
            stats = _posterior_stats(
                model,
                comp,
                modalities,
                qz_loc,
                qz_scale,
                mode=mode,
                delta=delta,
                n_samples=n_samples,
                batch_correction=batch_correction,
                pseudocount=pseudocount,
                seed=seed,
                batch_size=batch_size,
            )
            parts = []
            for m in modalities:
                table = stats[m]
                raw1 = _raw_stats(data, m, comp.cells1)
                raw2 = _raw_stats(data, m, comp.cells2)
                table["raw_mean1"], table["non_zeros_proportion1"] = raw1
                table["raw_mean2"], table["non_zeros_proportion2"] = raw2
                table[f"is_de_fdr_{fdr_target}"] = _fdr_calls(
                    table["proba_de"].to_numpy(), fdr_target
                )
                parts.append(table)
            table = pd.concat(parts, ignore_index=True)
            table["comparison"] = comp.label
            table["group1"] = comp.name1
            table["group2"] = comp.name2
            table = table.assign(_abs_lfc=table["lfc_mean"].abs())
            table = table.sort_values(
                ["bayes_factor", "_abs_lfc"], ascending=False, kind="stable"
            ).drop(columns="_abs_lfc")
            tables.append(table)
            logger.info(
                "differential %s: %d of %d features DE at fdr %s",
                comp.label,
                int(table[f"is_de_fdr_{fdr_target}"].sum()),
                len(table),
                fdr_target,
            )
    finally:
        module.train(was_training)
    return pd.concat(tables, ignore_index=True)[_columns(fdr_target)]


def _columns(fdr_target: float) -> list[str]:
    return [
        "feature",
        "modality",
        "proba_de",
        "proba_not_de",
        "bayes_factor",
        "scale1",
        "scale2",
        "lfc_mean",
        "lfc_median",
        "lfc_std",
        "lfc_min",
        "lfc_max",
        "raw_mean1",
        "raw_mean2",
        "non_zeros_proportion1",
        "non_zeros_proportion2",
        f"is_de_fdr_{fdr_target}",
        "comparison",
        "group1",
        "group2",
    ]


# ---------------------------------------------------------------------- validation
def _check_arguments(
    model,
    mode: str,
    delta: float,
    fdr_target: float,
    n_samples: int,
    pseudocount: float,
    batch_size: int,
    modality: str | Sequence[str] | None,
) -> list[str]:
    """Check every scalar argument and the model; return the modalities to test."""
    if not getattr(model, "is_trained", False):
        raise RuntimeError(
            "The model is not trained yet: call model.train() before differential()."
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; found {mode!r}.")
    if mode == "change" and not float(delta) > 0:
        raise ValueError(
            f"delta must be > 0 in 'change' mode (the smallest |log2 fold change| that counts); "
            f"found {delta!r}. Use e.g. delta=0.25, or mode='vanilla'."
        )
    if not 0.0 < float(fdr_target) < 1.0:
        raise ValueError(f"fdr_target must be in (0, 1), e.g. 0.05; found {fdr_target!r}.")
    for name, value in {"n_samples": n_samples, "batch_size": batch_size}.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; found {value!r}.")
    if not float(pseudocount) >= 0:
        raise ValueError(f"pseudocount must be >= 0; found {pseudocount!r}.")
    available = list(model.data.modalities)
    if modality is None:
        return available
    wanted = [modality] if isinstance(modality, str) else list(modality)
    unknown = [m for m in wanted if m not in available]
    if unknown or not wanted:
        raise KeyError(
            f"Unknown modality {unknown[0] if unknown else wanted!r}; expected one or more of "
            f"{available} (or None for all)."
        )
    return list(dict.fromkeys(wanted))


def _comparisons(
    model, groupby: str, group1: Hashable | None, group2: Hashable | None
) -> list[_Comparison]:
    """The comparisons asked for, with each group's cell positions (checked non-empty)."""
    obs = model.mdata.obs
    if not isinstance(groupby, str) or groupby not in obs.columns:
        raise KeyError(
            f"groupby={groupby!r} is not a column of mdata.obs; its columns are "
            f"{list(obs.columns)}. Add the groups as a column, e.g. mdata.obs['group'] = ..."
        )
    if not obs.index.equals(model.data.obs_names):
        raise ValueError(
            "mdata.obs no longer lists the cells the model was built on (were cells added, "
            "removed or reordered?); build the model on the data you compare."
        )
    values = pd.Categorical(obs[groupby])
    categories = list(values.categories)
    codes = values.codes
    labelled = codes >= 0
    members = {c: np.flatnonzero(codes == k) for k, c in enumerate(categories)}

    def find(group: Hashable, arg: str) -> Hashable:
        if group in members:
            return group
        by_name = [c for c in categories if str(c) == str(group)]
        if by_name:
            return by_name[0]
        raise KeyError(
            f"{arg}={group!r} is not a group of mdata.obs[{groupby!r}]; expected one of "
            f"{[str(c) for c in categories]}."
        )

    def cells(group: Hashable, arg: str) -> np.ndarray:
        idx = members[group]
        if idx.size == 0:
            raise ValueError(
                f"{arg}={group!r} has no cells in mdata.obs[{groupby!r}]; groups with cells: "
                f"{[str(c) for c in categories if members[c].size]}."
            )
        return idx

    reference = None if group2 is None else find(group2, "group2")
    if group1 is None:
        tested = [c for c in categories if members[c].size and c != reference]
    else:
        tested = [find(group1, "group1")]
        if reference is not None and tested[0] == reference:
            raise ValueError(
                f"group1 and group2 are the same group ({group1!r}); compare two different "
                "groups, or leave group2=None to compare against all other cells."
            )
    out = []
    for g in tested:
        idx1 = cells(g, "group1")
        if reference is None:
            idx2 = np.flatnonzero(labelled & (codes != categories.index(g)))
            if idx2.size == 0:
                raise ValueError(
                    f"mdata.obs[{groupby!r}] has only one group with cells ({g!r}), so "
                    f"'{g} vs rest' has no rest; expected at least two groups."
                )
            name2 = REST
        else:
            idx2, name2 = cells(reference, "group2"), str(reference)
        out.append(_Comparison(str(g), name2, idx1, idx2))
    if not out:
        raise ValueError(
            f"mdata.obs[{groupby!r}] has no group with cells other than group2={group2!r}; "
            "nothing to compare."
        )
    return out


# ---------------------------------------------------------------------- posterior
@torch.no_grad()
def _decode(
    model,
    modality: str,
    z: torch.Tensor,
    v: torch.Tensor,
    own_batch: np.ndarray,
    batches: np.ndarray,
    batch_correction: bool,
) -> torch.Tensor:
    """Normalised expression of ``modality`` for latents ``z``, (n_draws, n_features), on CPU."""
    n = z.shape[0]
    per_batch = []
    for b in batches:
        index = torch.full((n,), int(b), dtype=torch.long, device=z.device)
        per_batch.append(model.module.decode_normalised(modality, z, v, index, 1.0))
    rho = torch.stack(per_batch).mean(dim=0)
    if not batch_correction:
        for k, b in enumerate(batches):
            own = torch.as_tensor(own_batch == b, device=z.device)
            rho = torch.where(own.unsqueeze(1), per_batch[k], rho)
    return rho.cpu()


@torch.no_grad()
def _posterior_stats(
    model,
    comp: _Comparison,
    modalities: list[str],
    qz_loc: torch.Tensor,
    qz_scale: torch.Tensor,
    *,
    mode: str,
    delta: float,
    n_samples: int,
    batch_correction: bool,
    pseudocount: float,
    seed: int,
    batch_size: int,
) -> dict[str, pd.DataFrame]:
    """Posterior columns (proba_de ... lfc_max) per modality for one comparison."""
    data = model.data
    device = model.device
    rng = np.random.default_rng(seed)
    draws1 = rng.choice(comp.cells1, size=n_samples, replace=True)
    draws2 = rng.choice(comp.cells2, size=n_samples, replace=True)
    generator = torch.Generator().manual_seed(int(seed))
    qv = model.module.feature_embeddings()
    v_loc, v_scale = qv.loc.cpu(), qv.scale.cpu()
    batches = {m: data.measuring_batches(m) for m in modalities}
    lfcs: dict[str, list[torch.Tensor]] = {m: [] for m in modalities}
    sums = {m: [0.0, 0.0, 0.0] for m in modalities}  # scale1, scale2, event count
    for chunk in sequential_batches(n_samples, batch_size):
        idx1, idx2 = draws1[chunk], draws2[chunk]
        eps = torch.randn((2, chunk.size, qz_loc.shape[1]), generator=generator)
        z1 = qz_loc[idx1] + qz_scale[idx1] * eps[0]
        z2 = qz_loc[idx2] + qz_scale[idx2] * eps[1]
        v = v_loc + v_scale * torch.randn(v_loc.shape, generator=generator)
        z1, z2, v = z1.to(device), z2.to(device), v.to(device)
        for m in modalities:
            rho1 = _decode(model, m, z1, v, data.batch[idx1], batches[m], batch_correction)
            rho2 = _decode(model, m, z2, v, data.batch[idx2], batches[m], batch_correction)
            if data.likelihoods[m] == "normal":
                lfc = decided = rho1 - rho2
            else:
                decided = _log2_ratio(rho1, rho2, pseudocount)
                lfc = _log2_ratio(rho1, rho2, pseudocount * LFC_SUMMARY_PSEUDOCOUNT_FACTOR)
            event = decided.abs() > delta if mode == "change" else rho1 > rho2
            acc = sums[m]
            acc[0] = acc[0] + rho1.double().sum(dim=0)
            acc[1] = acc[1] + rho2.double().sum(dim=0)
            acc[2] = acc[2] + event.double().sum(dim=0)
            lfcs[m].append(lfc)
    out = {}
    low, high = 0.5 / n_samples, 1.0 - 0.5 / n_samples
    for m in modalities:
        lfc = torch.cat(lfcs[m]).double()
        scale1, scale2, events = (s.numpy() / n_samples for s in sums[m])
        p = np.clip(events, low, high)
        out[m] = pd.DataFrame(
            {
                "feature": np.asarray(data.var_names[m], dtype=str).astype(object),
                "modality": m,
                "proba_de": events,
                "proba_not_de": 1.0 - events,
                "bayes_factor": np.log(p) - np.log1p(-p),
                "scale1": scale1,
                "scale2": scale2,
                "lfc_mean": lfc.mean(dim=0).numpy(),
                "lfc_median": lfc.median(dim=0).values.numpy(),
                "lfc_std": lfc.std(dim=0).numpy(),
                "lfc_min": lfc.min(dim=0).values.numpy(),
                "lfc_max": lfc.max(dim=0).values.numpy(),
            }
        )
    return out


def _log2_ratio(rho1: torch.Tensor, rho2: torch.Tensor, pseudocount: float) -> torch.Tensor:
    """``log2((rho1 + pseudocount) / (rho2 + pseudocount))``, finite also where a ρ underflowed
    to 0 with ``pseudocount`` 0 (ρ is floored at the smallest normal float there)."""
    tiny = torch.finfo(rho1.dtype).tiny
    return torch.log2((rho1 + pseudocount).clamp_min(tiny)) - torch.log2(
        (rho2 + pseudocount).clamp_min(tiny)
    )


# ---------------------------------------------------------------------- raw data and calls
def _raw_stats(data, modality: str, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean raw count and non-zero fraction per feature over ``cells`` that measured it.

    The counts are read in sorted chunks of cells (a chunk of counts at a time, also when they
    are on disk). Returns two float arrays (n_features,), NaN for features no cell of ``cells``
    measured.
    """
    from .data._counts import row_chunks

    j = data.modalities.index(modality)
    cells = np.sort(cells[data.obs_mask[cells, j]])
    counts = data.counts[modality]
    measured = data.block_measured[modality]
    if measured is None:
        measured = np.ones((1, counts.shape[1]), dtype=bool)
        blocks = np.zeros(cells.size, dtype=np.int64)
    else:
        blocks = data.block[modality][cells]
    total = np.zeros(counts.shape[1])
    nonzero = np.zeros(counts.shape[1])
    offset = 0
    for part, x in row_chunks(counts, cells):
        if data.block_measured[modality] is not None:
            x = x.multiply(measured[blocks[offset : offset + part.size]]).tocsr()
        offset += part.size
        total += np.asarray(x.sum(axis=0)).ravel()
        nonzero += np.asarray((x > 0).sum(axis=0)).ravel()
    n_measured = np.bincount(blocks, minlength=measured.shape[0]) @ measured.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_measured > 0, total / n_measured, np.nan)
        frac = np.where(n_measured > 0, nonzero / n_measured, np.nan)
    return mean, frac


def _fdr_calls(proba_de: np.ndarray, fdr_target: float) -> np.ndarray:
    """DE calls controlling the posterior expected FDR at ``fdr_target``.

    Features are ranked by ``proba_de``; the largest prefix whose mean ``1 - proba_de`` is at
    most ``fdr_target`` is called.
    """
    order = np.argsort(-proba_de, kind="stable")
    expected_fdr = np.cumsum(1.0 - proba_de[order]) / np.arange(1, proba_de.size + 1)
    passing = np.flatnonzero(expected_fdr <= fdr_target)
    calls = np.zeros(proba_de.size, dtype=bool)
    if passing.size:
        calls[order[: passing[-1] + 1]] = True
    return calls
