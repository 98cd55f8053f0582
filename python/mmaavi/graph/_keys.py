"""Where guidance-graph results live in a MuData."""

#: key in ``mdata.uns`` where a guidance-graph edge list is stored for the model to find
GUIDANCE_KEY = "mmaavi_guidance"

#: key in ``mdata.uns`` recording the features removed by ``keep_only_linked=True``
REMOVED_KEY = "mmaavi_guidance_removed"
