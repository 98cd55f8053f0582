"""Property-based tests over random mosaic layouts (hypothesis).

Which batches measured which modalities, which cells of a batch lack a modality, batch sizes down
to one cell, all-zero features and cells, optional partial labels: whatever the layout, mmaavi
either refuses it with a clear ``ValueError`` or trains and returns a finite embedding with one row
per input cell, in input order, whose attention is non-zero exactly for the modalities each cell
measured.

The number of examples is bounded and the draws are derandomised, so CI runs the same examples
every time (~10 s on one thread).
"""

from __future__ import annotations

import re
import warnings

import anndata as ad
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

import mmaavi
from mmaavi.data import mosaic

MODALITIES = ("rna", "adt", "atac")
TINY = {"n_latent": 3, "n_latent_u": 2, "encoder_hidden": (8, 6), "dropout": 0.0}
PROPERTIES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def layouts(draw):
    """A random mosaic: per batch a set of modalities and a cell count; per cell, which of its
    batch's modalities it has; per modality, a feature count, some all-zero features."""
    n_batches = draw(st.integers(1, 3))
    batches = []
    for b in range(n_batches):
        mods = draw(st.sets(st.sampled_from(MODALITIES), min_size=1))
        n_cells = draw(st.integers(1, 6))
        cells = []
        for c in range(n_cells):
            has = draw(st.sets(st.sampled_from(sorted(mods)), min_size=1))
            cells.append((f"b{b}_c{c}", frozenset(has)))
        batches.append((f"b{b}", cells))
    n_features = {m: draw(st.integers(1, 5)) for m in MODALITIES}
    zero_features = {m: draw(st.sets(st.integers(0, n_features[m] - 1))) for m in MODALITIES}
    order_seed = draw(st.integers(0, 2**16))
    labels = draw(st.sampled_from([None, "partial", "one_class"]))
    return batches, n_features, zero_features, order_seed, labels


def build(layout):
    """The per-modality AnnData (cells in a random order) and the expected global cell order."""
    batches, n_features, zero_features, order_seed, labels = layout
    rng = np.random.default_rng(order_seed)
    rows = [(name, batch, has) for batch, cells in batches for name, has in cells]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    adatas = {}
    for m in MODALITIES:
        mine = [(name, batch) for name, batch, has in rows if m in has]
        if not mine:
            continue
        x = rng.poisson(1.5, (len(mine), n_features[m])).astype(np.float32)
        x[:, sorted(zero_features[m])] = 0
        obs = pd.DataFrame({"batch": [b for _, b in mine]}, index=[n for n, _ in mine])
        if labels == "partial":
            obs["cell_type"] = [["t0", "t1", None][i % 3] for i in range(len(mine))]
        elif labels == "one_class":
            obs["cell_type"] = "t0"
        var = pd.DataFrame(index=[f"{m}{i}" for i in range(n_features[m])])
        adatas[m] = ad.AnnData(X=x, obs=obs, var=var)
    # global order: first appearance over the modalities, in the order they are given
    expected = list(dict.fromkeys(n for a in adatas.values() for n in a.obs_names))
    has = {name: h for name, _, h in rows}
    return adatas, expected, has, labels


def check(layout) -> str:
    """Run the property on one layout; return ``"trained"`` or ``"refused"``."""
    adatas, expected, has, labels = build(layout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 1-cell batches, empty cells: warned, not refused
        try:
            mdata = mosaic(adatas)
            model = mmaavi.MMAAVI(
                mdata,
                n_components=2 if labels is None else None,
                label_key=None if labels is None else "cell_type",
                **TINY,
            )
            model.train(max_epochs=1, progress="none", seed=0)
        except ValueError as err:
            message = str(err)
            assert len(message) > 40 and re.search(
                r"expected|found|needs?|Make|Pass|Use|Drop|Add", message
            ), message
            _event(f"refused: {message[:40]}")
            return "refused"
    z = model.get_latent_representation()
    assert list(mdata.obs_names) == expected
    assert z.shape == (len(expected), TINY["n_latent"]) and np.isfinite(z).all()
    attention = model.get_attention()
    assert list(attention.index) == expected
    observed = np.array([[m in has[c] for m in attention.columns] for c in expected])
    np.testing.assert_array_equal(attention.to_numpy() > 0, observed)
    _event("trained")
    return "trained"


def _event(name: str) -> None:
    """Count outcomes in hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(name)


@PROPERTIES
@given(layouts())
def test_random_mosaic_gives_a_clear_error_or_a_finite_ordered_embedding(layout):
    check(layout)


def test_the_property_sees_both_outcomes():
    """Controls: a 1-cell mosaic is refused; a 3-batch mosaic with a 1-cell batch, a partly
    measured batch, all-zero features and partial labels trains."""
    no_zero = {m: set() for m in MODALITIES}
    sizes = {"rna": 4, "adt": 2, "atac": 3}
    single = ([("b0", [("b0_c0", frozenset({"rna"}))])], sizes, no_zero, 0, None)
    assert check(single) == "refused"
    rna, both = frozenset({"rna"}), frozenset({"rna", "adt"})
    layout = (
        [
            ("b0", [(f"b0_c{i}", rna) for i in range(5)]),
            ("b1", [("b1_c0", both), ("b1_c1", both), ("b1_c2", rna), ("b1_c3", both)]),
            ("b2", [("b2_c0", frozenset({"atac"}))]),
        ],
        sizes,
        {"rna": {1}, "adt": set(), "atac": {0, 2}},
        7,
        "partial",
    )
    assert check(layout) == "trained"
