"""Small helpers shared by test files (imported as ``from _helpers import ...``)."""

from __future__ import annotations

import pandas as pd


def rank_in_modality(table: pd.DataFrame, modality: str, feature: str) -> tuple[int, float]:
    """1-based rank of ``feature`` among its modality's rows of a differential table (sorted by
    Bayes factor), and its Bayes factor."""
    rows = table[table.modality == modality].reset_index(drop=True)
    hit = rows.index[rows.feature == feature]
    assert len(hit) == 1, f"{feature} not found in {modality}"
    return int(hit[0]) + 1, float(rows.bayes_factor[hit[0]])
