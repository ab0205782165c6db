"""Multimodal graph recommenders (paper Table 8), one module per model, on the training graph
and one cached layer of item content (:mod:`crossan.graph.build`). Constants only: the models
are in :mod:`crossan.models.graph.registry`."""

GRAPH_METHODS: tuple[str, ...] = ("mmgcn", "grcn", "bm3", "freedom", "mgcn", "mhcr")
