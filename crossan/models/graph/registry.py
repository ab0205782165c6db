"""Method name -> (config dataclass, model class) of every graph recommender.

Each model lives in ``crossan/models/graph/{method}.py`` and names its class ``MODEL`` (whose
``config_type`` is its config dataclass); only the module of the method asked for is imported
(a run trains one model). The methods are :data:`crossan.runs.vocabulary.GRAPH_METHODS`."""

from __future__ import annotations

import importlib

from crossan.models.graph.base import GraphRecommender
from crossan.runs.vocabulary import GRAPH_METHODS


def graph_model(method: str) -> tuple[type, type[GraphRecommender]]:
    """``(config class, model class)`` of ``method``."""
    if method not in GRAPH_METHODS:
        raise ValueError(f"unknown graph recommender {method!r}; choose from {', '.join(GRAPH_METHODS)}")
    model: type[GraphRecommender] = importlib.import_module(f"crossan.models.graph.{method}").MODEL
    return model.config_type, model
