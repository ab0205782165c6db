"""Building and reading the graph file (``results/{dataset}/graph/graph.h5``) that the
multimodal graph recommenders train on (Table 8): interactions, the normalised user-item
adjacency and per-modality kNN item graphs, built once per dataset. The models are in
:mod:`crossan.models.graph`, their training in :mod:`crossan.train.graph`."""
