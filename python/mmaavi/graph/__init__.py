"""Guidance graphs linking features across modalities (MODEL.md §5).

- :func:`add_guidance_graph`: build the graph from prior knowledge (peak ↔ gene by genomic
  proximity, antibody ↔ gene by name, user edges) and store it in ``mdata.uns["mmaavi_guidance"]``,
  where :class:`mmaavi.MMAAVI` finds it.
- :func:`edges`, :func:`check_graph`: read the stored graph back and check it.
- :func:`subset_linked`: a copy of the data without features that have no cross-modality link.
- :func:`load_annotation`: the shipped ``"hg38"`` / ``"mm10"`` gene tables, or a user's file.
- :func:`graph_tensors`: the model's edge tensors from any accepted graph form.
"""

from ._aliases import ANTIBODY_ALIASES
from ._annotation import SHIPPED_ANNOTATIONS, load_annotation
from ._build import add_guidance_graph, subset_linked
from ._check import GRAPH_COLUMNS, GraphReport, check_graph, edges
from ._genomic import parse_peaks
from ._keys import EDGE_COLUMNS, GUIDANCE_KEY, REMOVED_KEY
from ._tensors import graph_tensors

__all__ = [
    "ANTIBODY_ALIASES",
    "EDGE_COLUMNS",
    "GRAPH_COLUMNS",
    "GUIDANCE_KEY",
    "REMOVED_KEY",
    "SHIPPED_ANNOTATIONS",
    "GraphReport",
    "add_guidance_graph",
    "check_graph",
    "edges",
    "graph_tensors",
    "load_annotation",
    "parse_peaks",
    "subset_linked",
]
