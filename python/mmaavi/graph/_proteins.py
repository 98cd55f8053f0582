"""Protein (ADT) ↔ gene links by name: exact symbol or alias, never substring.

An antibody name is first cleaned of panel decorations (``Hu.``, ``anti-``, ``_TotalSeqB``,
``(clone)``), then compared, upper-cased and without punctuation, with the alias table and the
RNA gene symbols. A trailing copy number after a digit (``CD3-1``, ``cd4.2``) is dropped when the
name without it is a known antibody or gene, so ``CD3-1`` is CD3 and never CD31; after a letter
(``LOX-1``, ``PD-1``) the whole name is tried first. Isotype controls are never linked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._aliases import ANTIBODY_ALIASES

_ISOTYPE = re.compile(
    r"isotype|ctrl|control|(?:mouse|rat|hamster|^ms|^rt)[-_. ]*ig[gma]\d?|^igg\d?[a-z]?(?:$|[-_. ])",
    re.IGNORECASE,
)
_PREFIX = re.compile(r"^(?:anti|hu|human|mu|ms|adt|ab|cite)[-_. ]+", re.IGNORECASE)
_SUFFIX = re.compile(
    r"(?:\s*\([^)]*\)|[-_. ]+(?:totalseq[-_. ]?[abc]?|ts[abc]|prot(?:ein)?|adt|antibody))$",
    re.IGNORECASE,
)
_COPY = re.compile(r"^(?P<base>.+?)[-_.](?P<copy>\d{1,2})$")


def name_key(name: str) -> str:
    """Upper case without punctuation: ``hla.dr`` -> ``HLADR``."""
    return re.sub(r"[^0-9A-Z]", "", name.upper())


def clean_antibody_name(name: str) -> str:
    """Drop panel decorations around an antibody name (``Hu.CD3_TotalSeqB`` -> ``CD3``)."""
    out = name.strip()
    while True:
        stripped = _SUFFIX.sub("", _PREFIX.sub("", out)).strip()
        if stripped == out or not stripped:
            return out
        out = stripped


def is_isotype_control(name: str) -> bool:
    """Whether an antibody name is an isotype control (``Mouse-IgG1``, ``IgG2a_isotype``)."""
    return bool(_ISOTYPE.search(name))


def alias_table(aliases: Mapping[str, str | Iterable[str]] | None = None) -> dict[str, tuple]:
    """The shipped alias table keyed by :func:`name_key`, extended/overridden by ``aliases``.

    Parameters
    ----------
    aliases
        Antibody name -> gene symbol or list of symbols; an empty list unlinks an antibody.

    Returns
    -------
    dict
        Normalised antibody key -> tuple of gene symbols.
    """
    table: dict[str, tuple] = {}
    for source in (ANTIBODY_ALIASES, aliases or {}):
        if not isinstance(source, Mapping):
            raise TypeError(
                "aliases must be a mapping of antibody name to gene symbol(s), e.g. "
                f"{{'CD3': ['CD3E', 'CD3D']}}; found {type(source).__name__}."
            )
        for antibody, genes in source.items():
            genes = (genes,) if isinstance(genes, str) else tuple(genes)
            if not all(isinstance(g, str) for g in genes):
                raise TypeError(
                    f"aliases[{antibody!r}] must be a gene symbol or a list of symbols; found "
                    f"{genes!r}."
                )
            table[name_key(str(antibody))] = genes
    return table


@dataclass
class ProteinMatch:
    """ADT ↔ RNA name matches: ``links`` (``source`` antibody, ``target`` gene), the isotype
    controls and the antibodies left without a gene."""

    links: pd.DataFrame
    isotypes: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def protein_gene_links(
    antibodies: Iterable[str],
    genes: Iterable[str],
    aliases: Mapping[str, str | Iterable[str]] | None = None,
) -> ProteinMatch:
    """Link antibodies to the genes coding their targets.

    Parameters
    ----------
    antibodies
        ADT feature names.
    genes
        RNA feature names (gene symbols; compared case-insensitively).
    aliases
        Extra antibody -> gene symbol(s) entries (see :func:`alias_table`).

    Returns
    -------
    ProteinMatch
        Links with columns ``source`` (antibody) and ``target`` (gene), one row per pair.
    """
    table = alias_table(aliases)
    genes = pd.Series(np.asarray(list(genes), dtype=str))
    upper = genes.str.upper()
    keys = upper.str.replace(r"[^0-9A-Z]", "", regex=True)
    by_upper: dict[str, list[str]] = {}
    by_key: dict[str, list[str]] = {}
    for gene, gene_upper, gene_key in zip(genes.tolist(), upper.tolist(), keys.tolist()):
        by_upper.setdefault(gene_upper, []).append(gene)
        by_key.setdefault(gene_key, []).append(gene)

    def resolve(name: str) -> list[str] | None:
        """Genes for a name; None when the name is neither a known antibody nor a gene."""
        key = name_key(name)
        if not key:
            return None
        known = key in table or name.upper() in by_upper or key in by_key
        if not known:
            return None
        if key in table and not table[key]:
            return []  # unlinked on purpose through aliases={name: []}
        hits = [h for symbol in table.get(key, ()) for h in by_upper.get(symbol.upper(), [])]
        hits += by_upper.get(name.upper(), []) or by_key.get(key, [])
        return list(dict.fromkeys(hits))

    sources, targets, isotypes, unmatched = [], [], [], []
    for antibody in dict.fromkeys(str(a) for a in antibodies):
        if is_isotype_control(antibody):
            isotypes.append(antibody)
            continue
        name = clean_antibody_name(antibody)
        copy = _COPY.match(name)
        tries = [name]
        if copy:
            # "CD3-1" is copy 1 of CD3 (never CD31); "LOX-1" / "cd11b.1" end in a letter before
            # the number, so the whole name is tried first
            tries = [name, copy["base"]] if copy["base"][-1].isalpha() else [copy["base"], name]
        hits = next((h for h in map(resolve, tries) if h is not None), None)
        if not hits:
            unmatched.append(antibody)
            continue
        sources += [antibody] * len(hits)
        targets += hits
    links = pd.DataFrame({"source": sources, "target": targets}, dtype=str)
    return ProteinMatch(links=links, isotypes=isotypes, unmatched=unmatched)
