"""Guidance graphs linking features across modalities (MODEL.md §5)."""

from ._tensors import EDGE_COLUMNS, graph_tensors

#: key in ``mdata.uns`` where a guidance-graph edge list is stored for the model to find
GUIDANCE_KEY = "mmaavi_guidance"

__all__ = ["EDGE_COLUMNS", "GUIDANCE_KEY", "graph_tensors"]
