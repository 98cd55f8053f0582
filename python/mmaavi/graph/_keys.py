"""Where guidance-graph results live in a MuData, and the columns of an edge list."""

#: key in ``mdata.uns`` where a guidance-graph edge list is stored for the model to find
GUIDANCE_KEY = "mmaavi_guidance"

#: key in ``mdata.uns`` recording the features removed by ``keep_only_linked=True``
REMOVED_KEY = "mmaavi_guidance_removed"

#: columns of an edge-list DataFrame; the modality columns are optional on input
EDGE_COLUMNS = ("source", "target", "weight", "sign")
MODALITY_COLUMNS = ("source_modality", "target_modality")
