"""Stage 2 models, one family per folder: the side adapters on cached states and ID-SASRec
(here: towers, fusions, the SASRec sequence encoder), the end-to-end baselines
(:mod:`crossan.models.e2e`) and the graph recommenders (:mod:`crossan.models.graph`).

``build_model(ModelConfig(...))`` gives a cached-state :class:`SequentialRecommender`;
:mod:`crossan.models.counts` gives its trainable parameters at the paper's configuration, and
:mod:`crossan.models.params` (``crossan params``) those of every method, the end-to-end ones
too (it imports transformers and peft, which this package leaves out so that cached-state
training starts fast). Method names and choices come from :mod:`crossan.runs.vocabulary`.
"""

from crossan.models.adapters import parse_modalities
from crossan.models.recommender import ModelConfig, SequentialRecommender, build_model
from crossan.models.trainable import count_trainable

__all__ = ["ModelConfig", "SequentialRecommender", "build_model", "count_trainable", "parse_modalities"]
