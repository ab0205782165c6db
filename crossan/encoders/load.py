"""Load one frozen encoder and its preprocessor, from a Hugging Face id or a local directory.

One architecture per modality, loaded with its concrete class so that a checkpoint of the
wrong kind fails at once instead of producing numbers:

=========  ===============  ===========================  =======================================
modality   model class      preprocessor class           paper checkpoint
=========  ===============  ===========================  =======================================
text       ``BertModel``    ``BertTokenizerFast``        ``bert-base-uncased``
image      ``ViTModel``     ``ViTImageProcessorPil``     ``google/vit-base-patch16-224``
video      ``VideoMAEModel`` ``VideoMAEImageProcessorPil`` ``MCG-NJU/videomae-base``
audio      ``ASTModel``     ``ASTFeatureExtractor``      ``MIT/ast-finetuned-audioset-10-10-0.4593``
=========  ===============  ===========================  =======================================

The ``*Pil`` image processors are used because transformers 5's default (torchvision)
processors need torchvision, which crossan does not install. Each preprocessor is read from
the checkpoint's own saved config, so its normalisation is exactly the checkpoint's.

Models are loaded in float32 (whatever dtype the checkpoint was saved in), in eval mode,
with ``requires_grad_(False)``; mixed precision, where used, is autocast on CUDA only.

**AST input length.** The AST checkpoint was trained on 1024 filterbank frames (10.24 s), so
its position embeddings cover ``f x t = 12 x 101`` patches. crossan feeds 3 s of audio
(298 frames). By default (``audio_max_length=None``) the feature extractor zero-pads the
filterbank to the checkpoint's ``max_length``, exactly as in training: faithful, but
attention runs over all 1214 tokens although ~70 % of the patches are padding.
``audio_max_length=N`` (``16 <= N <= checkpoint's``) instead builds the model with
``max_length=N`` and keeps only the position embeddings of the first ``(N - 16) // 10 + 1``
time patches of every frequency row (see :func:`truncate_ast_positions`); the extractor
then produces N frames. For N = 300 that is 12 x 29 = 348 patches: about 3.5x fewer tokens,
so roughly 3-4x cheaper layers and ~12x cheaper attention scores, at the price of inputs the
checkpoint never saw (the [CLS]/distillation tokens no longer attend to the padding patches
the model learnt to expect), so features shift away from the checkpoint's own. N equal to
the checkpoint's length gives exactly the default.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossan.config import dataset_modalities, encoder_spec
from crossan.encoders.pooling import validate_layers
from crossan.encoders.options import built_model_root
from crossan.encoders.tiny import TinySpec
from crossan.errors import ConfigError
from crossan.runs.vocabulary import MODALITIES

if TYPE_CHECKING:  # heavy imports stay lazy so ``crossan --help`` is fast
    import torch
    from transformers import ASTModel, PreTrainedModel

log = logging.getLogger(__name__)

DEFAULT_MODELS: dict[str, str] = {
    "text": "bert-base-uncased",
    "image": "google/vit-base-patch16-224",
    "video": "MCG-NJU/videomae-base",
    "audio": "MIT/ast-finetuned-audioset-10-10-0.4593",
}
MODEL_CLASSES: dict[str, str] = {
    "text": "BertModel",
    "image": "ViTModel",
    "video": "VideoMAEModel",
    "audio": "ASTModel",
}
PREPROCESSOR_CLASSES: dict[str, str] = {
    "text": "BertTokenizerFast",
    "image": "ViTImageProcessorPil",
    "video": "VideoMAEImageProcessorPil",
    "audio": "ASTFeatureExtractor",
}
AST_POSITION_KEY = "embeddings.position_embeddings"
# Weights that never touch ``output_hidden_states``: BERT/ViT's pooler and the final LayerNorm
# of ViT/VideoMAE/AST. A checkpoint may lack them (ViT's pooler is not in the classification
# checkpoint); they are then randomly initialised, so they stay out of the weights hash.
UNUSED_PREFIXES: tuple[str, ...] = ("pooler.", "layernorm.")
AST_SPECIAL_TOKENS = 2  # [CLS] and distillation, before the patch tokens
# The shape of a Hugging Face repository id ("bert-base-uncased", "google/vit-base-patch16-224").
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass
class Encoder:
    """A frozen model with its preprocessor, and fingerprints of everything that decides its
    numbers (used in the feature file's config hash)."""

    modality: str
    source: str  # the Hugging Face id or directory as given
    model: PreTrainedModel
    preprocessor: Any
    fingerprint: dict[str, Any] = field(default_factory=dict)
    checkpoint_max_length: int | None = None  # audio: the checkpoint's filterbank frames

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the tensors of ``model.state_dict()`` (names, dtypes, shapes, bytes) in
    name order, :data:`UNUSED_PREFIXES` left out: identifies the weights that decide the
    hidden states, independently of the file format they came from."""
    # deferred: torch is not in the workflow env, and the Snakefile imports this module
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith(UNUSED_PREFIXES):
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}\n".encode())
        if data.dtype == torch.bfloat16:  # numpy has no bfloat16
            data = data.view(torch.int16)
        digest.update(data.numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def preprocessor_sha256(preprocessor: Any) -> str:
    """SHA-256 of what the preprocessor does: a tokenizer's full ``tokenizers`` pipeline
    (normaliser, vocabulary, post-processor), else the processor's saved JSON settings."""
    backend = getattr(preprocessor, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else preprocessor.to_json_string()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _config_json_sha256(source: str) -> str:
    # deferred: transformers is not in the workflow env, and the Snakefile imports this module
    from transformers.utils import cached_file

    path = cached_file(source, "config.json")
    if path is None:
        raise ConfigError(f"model {source!r} has no config.json")
    return _sha256_file(path)


def _load_preprocessor(modality: str, source: str, audio_max_length: int | None) -> Any:
    # deferred: transformers is not in the workflow env, and the Snakefile imports this module
    import transformers

    cls = getattr(transformers, PREPROCESSOR_CLASSES[modality])
    if modality == "audio" and audio_max_length is not None:
        return cls.from_pretrained(source, max_length=audio_max_length)
    return cls.from_pretrained(source)


def truncate_ast_positions(model: ASTModel, max_length: int) -> ASTModel:
    """An ``ASTModel`` for ``max_length`` filterbank frames with ``model``'s weights.

    ``ASTPatchEmbeddings`` turns ``[B, T, F]`` into ``[B, 1, F, T]`` before its convolution
    and flattens the ``[f, t]`` output grid row by row, so patch ``k`` is frequency row
    ``k // t``, time column ``k % t`` (frequency-major). The position embeddings
    ``[1, 2 + f * t_ckpt, D]`` are therefore reshaped to ``[f, t_ckpt, D]`` and the first
    ``t_new`` time columns of every frequency row kept: ``[1, 2 + f * t_new, D]``. The patches
    of those columns see only the first ``max_length`` frames, so they are the checkpoint's
    patches of the same audio. Built on the meta device and filled from the sliced state dict
    (no second random initialisation).
    """
    # deferred: torch, transformers: not in the workflow env; the Snakefile imports this module
    import torch
    from transformers import ASTModel

    checkpoint, patch = int(model.config.max_length), int(model.config.patch_size)
    if not patch <= max_length <= checkpoint:  # below one patch, or beyond trained positions
        raise ConfigError(
            f"audio max_length must be between {patch} (one patch) and the checkpoint's "
            f"{checkpoint} frames, got {max_length}"
        )
    config = copy.deepcopy(model.config)
    config.max_length = max_length
    freq, time_full = model.embeddings.get_shape(model.config)
    _, time_new = model.embeddings.get_shape(config)
    state = model.state_dict()
    positions = state[AST_POSITION_KEY]  # [1, 2 + f * t_ckpt, D]
    width = positions.shape[-1]
    grid = positions[:, AST_SPECIAL_TOKENS:].reshape(1, freq, time_full, width)[:, :, :time_new]
    state[AST_POSITION_KEY] = torch.cat(
        [positions[:, :AST_SPECIAL_TOKENS], grid.reshape(1, freq * time_new, width)], dim=1
    ).contiguous()
    with torch.device("meta"):
        truncated = ASTModel(config)
    truncated.load_state_dict(state, strict=True, assign=True)
    return truncated


def _check_loaded(source: str, class_name: str, loading: dict[str, Any]) -> None:
    """Refuse a checkpoint that leaves weights of the hidden states randomly initialised."""
    missing = sorted(k for k in loading.get("missing_keys", ()) if not k.startswith(UNUSED_PREFIXES))
    mismatched = sorted(str(k) for k in loading.get("mismatched_keys", ()))
    if missing or mismatched:
        shown = ", ".join((missing + mismatched)[:6])
        raise ConfigError(
            f"{source} is not a complete {class_name} checkpoint: {len(missing)} missing and "
            f"{len(mismatched)} mismatched weights (e.g. {shown}) would be random"
        )
    unused = sorted(loading.get("missing_keys", ()))
    if unused:
        log.info("%s: unused weights not in the checkpoint (not hashed): %s", source, unused)


def load_encoder(
    modality: str, source: str, *, audio_max_length: int | None = None
) -> Encoder:
    """Load ``modality``'s model and preprocessor from ``source`` (Hugging Face id or local
    ``save_pretrained`` directory), on the CPU, in eval mode and frozen.

    ``audio_max_length``: audio only, filterbank frames per item; ``None`` keeps the
    checkpoint's (see the module docstring for the trade-off).
    """
    _check_modality(modality)
    if audio_max_length is not None and modality != "audio":
        raise ConfigError(f"max_length of the feature extractor is an audio option, not {modality}")
    # deferred: torch, transformers: not in the workflow env; the Snakefile imports this module
    import torch
    import transformers

    model_cls = getattr(transformers, MODEL_CLASSES[modality])
    try:
        model, loading = model_cls.from_pretrained(
            source, dtype=torch.float32, output_loading_info=True
        )
        preprocessor = _load_preprocessor(modality, source, None)
        config_sha = _config_json_sha256(source)
    except OSError as error:
        raise ConfigError(
            f"encoders.{modality}.model: cannot load {source!r} as a {model_cls.__name__} with "
            f"a {PREPROCESSOR_CLASSES[modality]} (not a local save_pretrained directory, and not "
            f"a Hugging Face id in the cache or reachable): {error}"
        ) from error
    _check_loaded(source, model_cls.__name__, loading)
    checkpoint_max_length = None
    if modality == "audio":
        checkpoint_max_length = int(model.config.max_length)
        if preprocessor.max_length != checkpoint_max_length:
            raise ConfigError(
                f"{source}: the feature extractor makes {preprocessor.max_length} frames but the "
                f"model was built for {checkpoint_max_length}"
            )
        if audio_max_length is not None and audio_max_length != checkpoint_max_length:
            model = truncate_ast_positions(model, audio_max_length)
            preprocessor = _load_preprocessor(modality, source, audio_max_length)
    model.eval().requires_grad_(False)
    fingerprint = {
        "config_json_sha256": config_sha,
        "weights_sha256": state_dict_sha256(model),
        "preprocessor_sha256": preprocessor_sha256(preprocessor),
        "model_class": type(model).__name__,
        "preprocessor_class": PREPROCESSOR_CLASSES[modality],
    }
    log.info(
        "%s encoder: %s (%s, %d layers, hidden %d)",
        modality, source, type(model).__name__,
        model.config.num_hidden_layers, model.config.hidden_size,
    )
    return Encoder(modality, source, model, preprocessor, fingerprint, checkpoint_max_length)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    # deferred: torch is not in the workflow env, and the Snakefile imports this module
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {device} requested but torch sees no CUDA device")
        return torch.device(device)
    raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")


# ---------------------------------------------------------------- checks before any job


def is_local_folder(model: str) -> bool:
    """Whether ``model`` names a folder on this machine rather than a Hugging Face id: it
    exists, it cannot be an id (absolute, ``./``, ``~``, two or more ``/``), or its first
    folder exists here (``models/my-bert`` next to an existing ``models/``)."""
    path = Path(model)
    if path.exists() or not HUB_ID.fullmatch(model):
        return True
    return len(path.parts) == 2 and path.parent.is_dir()


def model_depth(model: str) -> int | None:
    """``num_hidden_layers`` of a local model folder's ``config.json`` (None when it has none).

    Raises ``ConfigError`` for a missing folder or ``config.json``, or an unreadable one."""
    folder = Path(model)
    if not folder.is_dir():
        raise ConfigError(f"model folder '{model}' does not exist")
    config_file = folder / "config.json"
    try:
        depth = json.loads(config_file.read_text(encoding="utf-8")).get("num_hidden_layers")
    except FileNotFoundError as error:
        raise ConfigError(f"'{model}' has no config.json (save_pretrained writes one)") from error
    except (OSError, ValueError, AttributeError) as error:
        raise ConfigError(f"{config_file} is not a readable JSON object: {error}") from error
    return depth if isinstance(depth, int) else None


def _config_key(config: Mapping[str, Any], name: str, modality: str, key: str) -> str:
    """The dotted key a dataset's effective encoder setting comes from."""
    if key in config["catalog"][name]["encoders"].get(modality, {}):
        return f"catalog.{name}.encoders.{modality}.{key}"
    return f"encoders.{modality}.{key}"


def check_encoder_models(config: Mapping[str, Any]) -> None:
    """Check, before any job, what can be checked cheaply of the encoders of the modalities
    every dataset in ``config["datasets"]`` declares (a validated config): a model the workflow builds
    (``resources/models/...``) has the tiny encoders' depth; a local folder exists, has a
    ``config.json``, and its ``num_hidden_layers`` covers every kept layer (hidden states
    ``0..num_hidden_layers``); kept layers increase. A Hugging Face id is left to extraction
    (its depth would need a download).

    Raises ``ConfigError`` listing every problem with its dataset, modality and key.
    """
    problems = []
    for name in config["datasets"]:
        for modality in dataset_modalities(config, name):  # an undeclared modality's encoder never runs
            spec = encoder_spec(config, name, modality)
            model, layers = str(spec["model"]), spec["layers"]
            where = f"dataset '{name}', {modality} encoder '{model}'"
            depth = None
            if built_model_root(model) is not None:
                depth = TinySpec().num_layers  # what the tiny_encoders rule builds
            elif is_local_folder(model):
                try:
                    depth = model_depth(model)
                except ConfigError as error:
                    problems.append(f"key '{_config_key(config, name, modality, 'model')}' ({where}): {error}")
                    continue
            try:
                validate_layers(layers, max(layers) if depth is None else depth,
                                where=f"key '{_config_key(config, name, modality, 'layers')}' ({where})")
            except ConfigError as error:
                problems.append(str(error))
    if problems:
        raise ConfigError("invalid config.yaml:\n  " + "\n  ".join(problems))
