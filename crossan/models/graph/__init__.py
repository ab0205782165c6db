"""Multimodal graph recommenders (paper Table 8), one module per model, on the training graph
and one cached layer of item content (:mod:`crossan.graph_file.build`). The models are loaded by
name through :mod:`crossan.models.graph.registry`; their names are
:data:`crossan.runs.vocabulary.GRAPH_METHODS`."""
