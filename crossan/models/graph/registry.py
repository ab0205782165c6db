"""Method name -> (config dataclass, model class) of every graph recommender.

Each model lives in ``crossan/models/graph/{method}.py``; only the module of the method asked
for is imported (a run trains one model)."""

from __future__ import annotations

import importlib

from crossan.models.graph.base import GraphRecommender

# method -> (config class name, model class name) in its module
CLASS_NAMES: dict[str, tuple[str, str]] = {
    "mmgcn": ("MMGCNConfig", "MMGCN"),
    "grcn": ("GRCNConfig", "GRCN"),
    "bm3": ("BM3Config", "BM3"),
    "freedom": ("FREEDOMConfig", "FREEDOM"),
    "mgcn": ("MGCNConfig", "MGCN"),
    "mhcr": ("MHCRConfig", "MHCR"),
}


def graph_model(method: str) -> tuple[type, type[GraphRecommender]]:
    """``(config class, model class)`` of ``method``."""
    if method not in CLASS_NAMES:
        raise ValueError(f"unknown graph recommender {method!r}; choose from {', '.join(CLASS_NAMES)}")
    module = importlib.import_module(f"crossan.models.graph.{method}")
    config_name, model_name = CLASS_NAMES[method]
    return getattr(module, config_name), getattr(module, model_name)
