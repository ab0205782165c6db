"""Graphs the multimodal graph recommenders train on (Table 8): interactions, the normalised
user-item adjacency and per-modality kNN item graphs, built once per dataset."""
