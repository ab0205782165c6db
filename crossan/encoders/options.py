"""The options of the encoder steps, without torch, transformers or polars: the tiny encoders'
sizes (:class:`TinySpec`, checked on construction) and the mixed-precision modes of feature
extraction (:data:`AUTOCAST`). The command line offers them (:mod:`crossan.commands.encoders`);
:mod:`crossan.encoders.tiny` and :mod:`crossan.encoders.extract` use them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from crossan.errors import ConfigError

AUTOCAST: tuple[str, ...] = ("float16", "bfloat16", "off")

BUILT_MODELS = Path("resources/models")


def built_model_root(model: str) -> Path | None:
    """``resources/models/NAME`` when ``model`` lies under it (a model the workflow builds), else
    None (a Hugging Face id or a user's own folder)."""
    parts = Path(model).parts
    if parts[: len(BUILT_MODELS.parts)] == BUILT_MODELS.parts and len(parts) > len(BUILT_MODELS.parts):
        return Path(*parts[: len(BUILT_MODELS.parts) + 1])
    return None

TITLE_MAX_LENGTH = 30  # the pipeline tokenizes titles to 30 tokens, so BERT needs >= 30 positions
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
AST_PATCH_SIZE = 16  # MIT/ast-finetuned-audioset-10-10-0.4593: 16x16 patches


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny encoders; the defaults give four 61k-100k-parameter models, built in
    about 0.2 s once torch and transformers are imported (about 7 s cold).

    Raises :class:`ConfigError` on construction for sizes the architectures cannot take.
    """

    hidden_size: int = 32
    num_layers: int = 6
    num_heads: int = 2
    intermediate_size: int = 64
    image_size: int = 64
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    audio_max_length: int = 1024
    num_mel_bins: int = 128
    vocab_size: int = 1000
    max_position: int = 64

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"tiny encoders: {item.name} must be a positive int, got {value!r}"
                )
        checks = [
            (self.hidden_size % self.num_heads == 0, "hidden_size must be a multiple of num_heads"),
            (self.image_size % self.patch_size == 0, "image_size must be a multiple of patch_size"),
            (
                self.num_frames % self.tubelet_size == 0,
                "num_frames must be a multiple of tubelet_size",
            ),
            (
                self.audio_max_length >= AST_PATCH_SIZE,
                f"audio_max_length must be >= {AST_PATCH_SIZE}",
            ),
            (self.num_mel_bins >= AST_PATCH_SIZE, f"num_mel_bins must be >= {AST_PATCH_SIZE}"),
            (self.max_position >= TITLE_MAX_LENGTH, f"max_position must be >= {TITLE_MAX_LENGTH}"),
            (self.vocab_size > len(SPECIAL_TOKENS), f"vocab_size must be > {len(SPECIAL_TOKENS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"tiny encoders: {message} ({self})")
