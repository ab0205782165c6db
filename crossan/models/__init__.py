"""Stage 2 models: side-adapter towers, fusions, the SASRec sequence encoder, and counts.

``build_model(ModelConfig(...))`` gives a :class:`SequentialRecommender`;
``crossan.models.params.paper_configuration_count(...)`` gives Table 4's trainable-parameter
counts (it imports the end-to-end family, :mod:`crossan.models.e2e`, hence transformers and
peft, which this package leaves out so that cached-state training starts fast).
"""

from crossan.models.adapters import MODALITIES, MODALITY_LETTERS, parse_modalities
from crossan.models.fusion import FUSIONS
from crossan.models.recommender import (
    METHODS,
    ModelConfig,
    SequentialRecommender,
    build_model,
)
from crossan.models.trainable import count_trainable

__all__ = [
    "FUSIONS",
    "METHODS",
    "MODALITIES",
    "MODALITY_LETTERS",
    "ModelConfig",
    "SequentialRecommender",
    "build_model",
    "count_trainable",
    "parse_modalities",
]
