"""``crossan tiny-encoders``: tiny randomly initialised stand-ins for the four frozen encoders.

The paper runs ``bert-base-uncased``, ``google/vit-base-patch16-224``, ``MCG-NJU/videomae-base``
and ``MIT/ast-finetuned-audioset-10-10-0.4593`` once per dataset. The demo and the tests need
the same code path without downloads, so this module writes, under ``out_dir``::

    bert/      BertModel      + BertTokenizerFast (WordPiece vocabulary built from the titles)
    vit/       ViTModel       + ViTImageProcessorPil      (size, mean/std of the ViT checkpoint)
    videomae/  VideoMAEModel  + VideoMAEImageProcessorPil (shortest edge/crop, ImageNet mean/std)
    ast/       ASTModel       + ASTFeatureExtractor       (128 mel bins, AudioSet mean/std)

Each directory is a ``save_pretrained`` checkpoint of the same architecture class as the
paper's, only smaller (:class:`TinySpec`), and loads back with ``from_pretrained``. All four
share one hidden size, as the real ones do (768), because CROSSAN mixes modalities without
projections. Weights are seeded per model (``torch.manual_seed(seed + k)``, ``k`` the model's
position in :data:`ARCHITECTURES`), so a rebuild gives identical tensors.

Vocabulary: ``tokenizers``' ``WordPieceTrainer`` is not deterministic across processes (its
merge ties are broken in hash-map order: five runs on 400 demo titles gave five different
vocabularies), so the vocabulary is built here deterministically instead: the titles go
through ``tokenizers``' BERT normaliser (lowercase) and BERT pre-tokenizer; the vocabulary is
the five special tokens (``[PAD]`` = 0), then every single character seen (``c`` word-initial,
``##c`` inside a word) and then every whole word, each group by descending count (ties in
code-point order), truncated at ``vocab_size``. Frequent title words therefore get their own
id; others are split into characters by WordPiece's greedy longest match, or ``[UNK]``.

The ``*Pil`` processors are used because transformers 5's default (torchvision) processors
need torchvision, which crossan does not install.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossan.atomic import atomic_directory
from crossan.data.readers import read_item_table
from crossan.encoders.options import AST_PATCH_SIZE, SPECIAL_TOKENS, TinySpec
from crossan.errors import ConfigError

if TYPE_CHECKING:  # heavy imports stay lazy so ``crossan --help`` is fast
    import tokenizers
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

ARCHITECTURES: dict[str, str] = {
    "text": "bert",
    "image": "vit",
    "video": "videomae",
    "audio": "ast",
}

# Models the workflow builds itself: a model path resources/models/NAME/ARCH makes the rule
# tiny_encoders write resources/models/NAME (NAME = tiny-{dataset}) with the default spec.
CONTINUATION_PREFIX = "##"
VIT_MEAN = VIT_STD = (0.5, 0.5, 0.5)  # google/vit-base-patch16-224's processor
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # MCG-NJU/videomae-base's processor
IMAGENET_STD = (0.229, 0.224, 0.225)
AUDIO_SAMPLING_RATE = 16000
AST_STRIDE = 10  # MIT/ast-finetuned-audioset-10-10-0.4593: frequency and time strides 10


# ---------------------------------------------------------------- vocabulary and tokenizer


def _bert_splitter() -> tokenizers.Tokenizer:
    """An empty WordPiece tokenizer with the BERT-uncased normaliser and pre-tokenizer."""
    # deferred: tokenizers is not in the workflow env, and common.smk imports this module
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def _title_words(titles: Iterable[str]) -> list[str]:
    """Every word of every title, after BERT normalisation and pre-tokenisation."""
    splitter = _bert_splitter()
    normalizer, pre_tokenizer = splitter.normalizer, splitter.pre_tokenizer
    words: list[str] = []
    for title in titles:
        text = normalizer.normalize_str(title or "")
        words.extend(word for word, _span in pre_tokenizer.pre_tokenize_str(text))
    return words


def _by_count(counts: Counter[str]) -> list[str]:
    """Keys by descending count, ties in code-point order."""
    return sorted(counts, key=lambda key: (-counts[key], key))


def build_vocabulary(titles: Iterable[str], vocab_size: int) -> list[str]:
    """The WordPiece vocabulary of ``titles`` in id order (see the module docstring)."""
    words = Counter(_title_words(titles))
    characters: Counter[str] = Counter()
    for word, count in words.items():
        characters[word[0]] += count
        for char in word[1:]:
            characters[CONTINUATION_PREFIX + char] += count
    whole = Counter({word: count for word, count in words.items() if len(word) > 1})
    vocabulary = list(SPECIAL_TOKENS) + _by_count(characters) + _by_count(whole)
    return vocabulary[:vocab_size]


def build_wordpiece(titles: Iterable[str], vocab_size: int) -> tokenizers.Tokenizer:
    """A ``tokenizers`` WordPiece tokenizer (BERT-uncased pipeline, ``[CLS] $A [SEP]``) over
    :func:`build_vocabulary`; identical for identical titles."""
    # deferred: tokenizers is not in the workflow env, and common.smk imports this module
    from tokenizers import decoders, models, processors

    vocabulary = build_vocabulary(titles, vocab_size)
    ids = {token: index for index, token in enumerate(vocabulary)}
    tokenizer = _bert_splitter()
    tokenizer.model = models.WordPiece(
        vocab=ids, unk_token="[UNK]", continuing_subword_prefix=CONTINUATION_PREFIX
    )
    cls, sep = ("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[cls, sep]
    )
    tokenizer.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    return tokenizer


def _save_tokenizer(titles: Sequence[str], spec: TinySpec, directory: Path) -> int:
    """Write the fast BERT tokenizer and ``vocab.txt`` into ``directory``; return the
    vocabulary size."""
    # deferred: transformers is not in the workflow env, and common.smk imports this module
    from transformers import BertTokenizerFast

    raw = build_wordpiece(titles, spec.vocab_size)
    # transformers 5 ignores ``vocab_file=``; ``tokenizer_object=`` really carries the vocabulary.
    tokenizer = BertTokenizerFast(
        tokenizer_object=raw,
        do_lower_case=True,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=spec.max_position,
    )
    tokenizer.save_pretrained(directory)
    by_id = sorted(raw.get_vocab().items(), key=lambda pair: pair[1])
    (directory / "vocab.txt").write_text("".join(f"{tok}\n" for tok, _ in by_id), encoding="utf-8")
    return len(by_id)


# ---------------------------------------------------------------- processors and models


def _save_preprocessor(arch: str, spec: TinySpec, directory: Path) -> None:
    """Write the preprocessor of ``arch`` (not BERT) into ``directory``."""
    # deferred: transformers is not in the workflow env, and common.smk imports this module
    from transformers import (
        ASTFeatureExtractor,
        VideoMAEImageProcessorPil,
        ViTImageProcessorPil,
    )
    from transformers.image_utils import PILImageResampling

    side = spec.image_size
    if arch == "vit":
        processor: Any = ViTImageProcessorPil(
            size={"height": side, "width": side},
            image_mean=list(VIT_MEAN),
            image_std=list(VIT_STD),
            resample=PILImageResampling.BILINEAR,
        )
    elif arch == "videomae":
        processor = VideoMAEImageProcessorPil(
            size={"shortest_edge": side},
            crop_size={"height": side, "width": side},
            image_mean=list(IMAGENET_MEAN),
            image_std=list(IMAGENET_STD),
            resample=PILImageResampling.BILINEAR,
        )
    elif arch == "ast":
        processor = ASTFeatureExtractor(
            num_mel_bins=spec.num_mel_bins,
            max_length=spec.audio_max_length,
            sampling_rate=AUDIO_SAMPLING_RATE,
        )
    else:
        raise ValueError(f"no preprocessor for {arch!r}")
    processor.save_pretrained(directory)


def _model(arch: str, spec: TinySpec, text_vocab_size: int) -> PreTrainedModel:
    """A randomly initialised model of ``arch`` with the spec's sizes (RNG seeded by caller)."""
    # deferred: transformers is not in the workflow env, and common.smk imports this module
    import transformers as tf

    # No dropout: item differences in a random encoder's [CLS] are ~1% of its scale, below the
    # noise dropout 0.1 adds when fft/adapter/lora train through it (stage 1 runs in eval mode,
    # so its features do not depend on this).
    shared = {
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "intermediate_size": spec.intermediate_size,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    if arch == "bert":
        config = tf.BertConfig(
            vocab_size=text_vocab_size,
            max_position_embeddings=spec.max_position,
            pad_token_id=0,
            **shared,
        )
        return tf.BertModel(config)
    if arch == "vit":
        config = tf.ViTConfig(image_size=spec.image_size, patch_size=spec.patch_size, **shared)
        return tf.ViTModel(config)
    if arch == "videomae":
        # use_mean_pooling=False as in the pre-trained (not fine-tuned) videomae-base checkpoint
        config = tf.VideoMAEConfig(
            image_size=spec.image_size,
            patch_size=spec.patch_size,
            num_frames=spec.num_frames,
            tubelet_size=spec.tubelet_size,
            use_mean_pooling=False,
            **shared,
        )
        return tf.VideoMAEModel(config)
    if arch == "ast":
        config = tf.ASTConfig(
            max_length=spec.audio_max_length,
            num_mel_bins=spec.num_mel_bins,
            patch_size=AST_PATCH_SIZE,
            frequency_stride=AST_STRIDE,
            time_stride=AST_STRIDE,
            **shared,
        )
        return tf.ASTModel(config)
    raise ValueError(f"unknown architecture {arch!r}")


def parameter_count(model: PreTrainedModel) -> int:
    """Number of parameters of ``model``."""
    return sum(parameter.numel() for parameter in model.parameters())


def _write_all(root: Path, titles: Sequence[str], seed: int, spec: TinySpec) -> dict[str, int]:
    """Every checkpoint under the existing empty directory ``root``; ``{arch: parameters}``."""
    # deferred: torch is not in the workflow env, and common.smk imports this module
    import torch

    counts: dict[str, int] = {}
    text_vocab_size = 0
    for k, arch in enumerate(ARCHITECTURES.values()):
        directory = root / arch
        directory.mkdir()
        if arch == "bert":
            text_vocab_size = _save_tokenizer(titles, spec, directory)
        else:
            _save_preprocessor(arch, spec, directory)
        torch.manual_seed(seed + k)
        model = _model(arch, spec, text_vocab_size).eval()
        model.save_pretrained(directory)
        counts[arch] = parameter_count(model)
    return counts


def build_tiny_encoders(
    out_dir: Path, titles: Sequence[str], *, seed: int = 0, spec: TinySpec = TinySpec()
) -> dict[str, Path]:
    """Write the four tiny checkpoints under ``out_dir`` (replacing it); ``{modality: dir}``.

    Built in ``out_dir.partial`` (a leftover one is removed first) and renamed at the end.
    Deterministic in ``titles``, ``seed`` and ``spec``. Empty titles are allowed.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"tiny encoders: {out_dir} exists and is not a directory")
    began = time.perf_counter()
    with atomic_directory(out_dir) as building:
        counts = _write_all(building, list(titles), seed, spec)
    for arch, count in counts.items():
        log.info("tiny %s: %s parameters -> %s", arch, f"{count:,}", out_dir / arch)
    log.info("tiny encoders (seed %d) written in %.1f s", seed, time.perf_counter() - began)
    return {modality: out_dir / arch for modality, arch in ARCHITECTURES.items()}


# ---------------------------------------------------------------- command line


def run_cli(args: argparse.Namespace) -> int:
    """Run ``crossan tiny-encoders`` (:mod:`crossan.commands.encoders`); returns the exit status."""
    spec = replace(
        TinySpec(),
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        image_size=args.image_size,
        audio_max_length=args.audio_max_length,
    )
    titles = read_item_table(args.items).titles
    paths = build_tiny_encoders(args.out, titles, seed=args.seed, spec=spec)
    log.info("tiny encoders for %d titles: %s", len(titles), ", ".join(map(str, paths.values())))
    return 0
