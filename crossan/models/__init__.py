"""Stage 2 models: side-adapter towers, fusions, the SASRec sequence encoder, and counts.

``build_model(ModelConfig(...))`` gives a :class:`SequentialRecommender`;
``paper_configuration_count(...)`` gives Table 4's trainable-parameter counts.
"""

from crossan.models.adapters import MODALITIES, MODALITY_LETTERS, parse_modalities
from crossan.models.fusion import FUSIONS
from crossan.models.params import count_trainable, paper_configuration_count
from crossan.models.recommender import (
    METHODS,
    ModelConfig,
    SequentialRecommender,
    build_model,
)

__all__ = [
    "FUSIONS",
    "METHODS",
    "MODALITIES",
    "MODALITY_LETTERS",
    "ModelConfig",
    "SequentialRecommender",
    "build_model",
    "count_trainable",
    "paper_configuration_count",
    "parse_modalities",
]
