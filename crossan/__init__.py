"""crossan: CROSSAN side-adapter recommendation on cached multimodal foundation-model states."""

__version__ = "0.1.0"
