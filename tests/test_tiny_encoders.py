"""Tiny random encoders: they load back as the paper's classes, are deterministic, and their
tokenizer and processors carry exactly what was built (vocabulary, sizes, mean/std)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    ASTFeatureExtractor,
    ASTModel,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModel,
    AutoTokenizer,
    BertModel,
    BertTokenizerFast,
    VideoMAEImageProcessorPil,
    VideoMAEModel,
    ViTImageProcessorPil,
    ViTModel,
)
from transformers.image_utils import PILImageResampling

from crossan.cli import build_parser, handler_of
from crossan.encoders import tiny
from crossan.encoders.tiny import ARCHITECTURES, TinySpec, build_tiny_encoders
from crossan.errors import ConfigError, DataError

# The real AST extractor warns that some of its 128 mel filters are empty; so does the checkpoint's.
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter:UserWarning")

TITLES = [
    "Cute puppy learns a new trick",
    "Puppy and kitten become best friends",
    "Easy pasta recipe for beginners",
    "Street food tour: spicy ramen in Tokyo",
    "",
    "Guitar lesson for beginners, part 2",
    'Piano cover of a "classic" song',
    "Kitten vs. cucumber",
]
MODEL_CLASSES = {"text": BertModel, "image": ViTModel, "video": VideoMAEModel, "audio": ASTModel}
SPEC = TinySpec()
BATCH = 2


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_encoders(tmp_path_factory.mktemp("tiny") / "encoders", TITLES, seed=0)


def _model_input(modality: str, directory: Path) -> dict[str, torch.Tensor]:
    """A batch of the shape the pipeline feeds each model."""
    generator = torch.Generator().manual_seed(1)
    side, frames = SPEC.image_size, SPEC.num_frames
    if modality == "text":
        tokenizer = BertTokenizerFast.from_pretrained(directory)
        return dict(
            tokenizer(
                TITLES[:BATCH],
                max_length=30,
                padding="max_length",
                truncation=True,
                return_tensors="pt",
            )
        )
    shapes = {
        "image": ("pixel_values", (BATCH, 3, side, side)),
        "video": ("pixel_values", (BATCH, frames, 3, side, side)),
        "audio": ("input_values", (BATCH, SPEC.audio_max_length, SPEC.num_mel_bins)),
    }
    name, shape = shapes[modality]
    return {name: torch.randn(shape, generator=generator)}


def _state(directory: Path, modality: str) -> dict[str, torch.Tensor]:
    return MODEL_CLASSES[modality].from_pretrained(directory).state_dict()


def _vocab_lines(directory: Path) -> list[str]:
    return (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------- layout and models


def test_writes_one_directory_per_architecture(built: dict[str, Path]) -> None:
    root = built["text"].parent
    assert ARCHITECTURES == {"text": "bert", "image": "vit", "video": "videomae", "audio": "ast"}
    assert built == {modality: root / arch for modality, arch in ARCHITECTURES.items()}
    assert sorted(p.name for p in root.iterdir()) == ["ast", "bert", "videomae", "vit"]
    assert not (root.parent / "encoders.partial").exists()
    for directory in built.values():
        assert (directory / "config.json").is_file()
        assert (directory / "model.safetensors").is_file()


@pytest.mark.parametrize("modality", list(ARCHITECTURES))
def test_model_loads_back_with_spec_sizes_and_hidden_states(
    built: dict[str, Path], modality: str
) -> None:
    directory = built[modality]
    model = MODEL_CLASSES[modality].from_pretrained(directory)
    assert type(model) is MODEL_CLASSES[modality]
    assert type(AutoModel.from_pretrained(directory)) is MODEL_CLASSES[modality]
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers) == (32, 6)
    assert (config.num_attention_heads, config.intermediate_size) == (2, 64)

    with torch.no_grad():
        out = model(**_model_input(modality, directory), output_hidden_states=True)
    tokens = {"text": 30, "image": 1 + 4 * 4, "video": 8 * 4 * 4, "audio": 2 + 12 * 101}
    assert len(out.hidden_states) == SPEC.num_layers + 1
    for hidden in out.hidden_states:
        assert hidden.shape == (BATCH, tokens[modality], SPEC.hidden_size)
        assert torch.isfinite(hidden).all()


def test_configs_match_the_spec_and_the_real_checkpoints(built: dict[str, Path]) -> None:
    bert = BertModel.from_pretrained(built["text"]).config
    assert bert.max_position_embeddings == 64 and bert.pad_token_id == 0
    assert bert.vocab_size == len(_vocab_lines(built["text"]))
    vit = ViTModel.from_pretrained(built["image"]).config
    assert (vit.image_size, vit.patch_size) == (64, 16)
    video = VideoMAEModel.from_pretrained(built["video"]).config
    assert (video.image_size, video.patch_size, video.num_frames, video.tubelet_size) == (
        64,
        16,
        16,
        2,
    )
    ast = ASTModel.from_pretrained(built["audio"]).config
    assert (ast.max_length, ast.num_mel_bins, ast.patch_size) == (1024, 128, 16)
    assert (ast.frequency_stride, ast.time_stride) == (10, 10)
    for config in (bert, vit, video, ast):  # end-to-end training through them: no dropout noise
        assert config.hidden_dropout_prob == 0.0 and config.attention_probs_dropout_prob == 0.0


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_weights_and_vocabulary(
    built: dict[str, Path], tmp_path: Path
) -> None:
    again = build_tiny_encoders(tmp_path / "again", TITLES, seed=0)
    for modality in ARCHITECTURES:
        first, second = _state(built[modality], modality), _state(again[modality], modality)
        assert first.keys() == second.keys()
        for name, tensor in first.items():
            assert torch.equal(tensor, second[name]), f"{modality}: {name} differs"
    assert _vocab_lines(built["text"]) == _vocab_lines(again["text"])
    first_json = json.loads((built["text"] / "tokenizer.json").read_text(encoding="utf-8"))
    second_json = json.loads((again["text"] / "tokenizer.json").read_text(encoding="utf-8"))
    assert first_json == second_json


def test_other_seed_gives_other_weights(built: dict[str, Path], tmp_path: Path) -> None:
    other = build_tiny_encoders(tmp_path / "other", TITLES, seed=1)
    for modality in ARCHITECTURES:
        first, second = _state(built[modality], modality), _state(other[modality], modality)
        differing = [name for name in first if not torch.equal(first[name], second[name])]
        assert len(differing) > len(first) // 3, modality  # every randomly initialised matrix
    assert _vocab_lines(built["text"]) == _vocab_lines(other["text"])  # titles decide the vocab


def test_models_are_seeded_one_apart(tmp_path: Path) -> None:
    """Model ``k`` is built right after ``torch.manual_seed(seed + k)``: seeding by hand and
    constructing the model reproduces the built weights."""
    spec = TinySpec(num_layers=1)
    torch.manual_seed(7 + 1)
    expected = tiny._model("vit", spec, 0).state_dict()
    torch.manual_seed(123)  # the builder must not depend on the caller's RNG state
    paths = build_tiny_encoders(tmp_path / "e", TITLES, seed=7, spec=spec)
    state = _state(paths["image"], "image")
    for name, tensor in expected.items():
        assert torch.equal(tensor, state[name]), name


def test_vocabulary_is_identical_across_processes() -> None:
    """``tokenizers``' WordPieceTrainer breaks ties in random hash order, so this guards the
    deterministic construction: other processes (other hash seeds) build the same list."""
    script = (
        "import json,sys; from crossan.encoders.tiny import build_vocabulary; "
        "print(json.dumps(build_vocabulary(json.loads(sys.argv[1]), 1000)))"
    )
    here = tiny.build_vocabulary(TITLES, 1000)
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(TITLES)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(done.stdout) == here


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_loaded_back_uses_the_built_vocabulary(built: dict[str, Path]) -> None:
    directory = built["text"]
    vocab = _vocab_lines(directory)
    index = {token: i for i, token in enumerate(vocab)}
    tokenizer = BertTokenizerFast.from_pretrained(directory)
    raw = tiny.build_wordpiece(TITLES, SPEC.vocab_size)

    assert tokenizer.vocab_size == len(tokenizer) == len(vocab) == raw.get_vocab_size()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id) == (0, 1)
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id) == (2, 3)
    assert tokenizer.get_vocab() == index
    for title in TITLES:
        ids = tokenizer(title)["input_ids"]
        encoding = raw.encode(title)
        assert ids == encoding.ids
        assert ids == [index[token] for token in encoding.tokens]
        assert tokenizer.convert_ids_to_tokens(ids) == encoding.tokens
        assert ids[0] == 2 and ids[-1] == 3

    # a word of the titles is a token of its own, with the id of its vocab.txt line
    assert tokenizer.tokenize("PUPPY kitten") == ["puppy", "kitten"]
    assert tokenizer.convert_tokens_to_ids("puppy") == index["puppy"] > 4
    # an unseen word is split into pieces or is [UNK], never a single known token
    unseen = tokenizer.tokenize("zebra")
    assert "zebra" not in index and (len(unseen) > 1 or unseen == ["[UNK]"])
    assert tokenizer.tokenize("sweets") == ["s", "##w", "##e", "##e", "##t", "##s"]

    padded = tokenizer(TITLES, max_length=30, padding="max_length", truncation=True)
    assert {len(ids) for ids in padded["input_ids"]} == {30}
    assert padded["input_ids"][4][:3] == [2, 3, 0]  # the empty title: [CLS] [SEP] [PAD]...
    assert (
        AutoTokenizer.from_pretrained(directory)(TITLES)["input_ids"]
        == tokenizer(TITLES)["input_ids"]
    )


def test_vocabulary_cap_and_frequency_order() -> None:
    vocab = tiny.build_vocabulary(["b a b", "c b"], vocab_size=100)
    assert vocab == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "b", "a", "c"]
    vocab = tiny.build_vocabulary(["dog dog cat", "cow"], vocab_size=100)
    # counts: ##o 3; ##g, c, d 2 ("#" sorts before letters); ##a, ##t, ##w 1; then words
    assert vocab[5:] == ["##o", "##g", "c", "d", "##a", "##t", "##w", "dog", "cat", "cow"]
    assert tiny.build_vocabulary(["dog dog cat", "cow"], vocab_size=9) == vocab[:9]
    assert tiny.build_vocabulary(["", ""], vocab_size=100) == vocab[:5]


# ---------------------------------------------------------------- preprocessors


def test_image_processor_has_vit_size_and_normalisation(built: dict[str, Path]) -> None:
    processor = ViTImageProcessorPil.from_pretrained(built["image"])
    assert processor.size == {"height": 64, "width": 64}
    assert list(processor.image_mean) == [0.5, 0.5, 0.5]
    assert list(processor.image_std) == [0.5, 0.5, 0.5]
    assert processor.resample == PILImageResampling.BILINEAR
    assert processor.do_resize and processor.do_rescale and processor.do_normalize
    image = Image.new("RGB", (100, 80), (255, 0, 51))
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 64, 64)
    expected = torch.tensor([1.0, -1.0, 51 / 255 * 2 - 1]).view(3, 1, 1).expand(3, 64, 64)
    torch.testing.assert_close(pixels[0], expected, atol=1e-5, rtol=0)


def test_video_processor_has_videomae_size_and_imagenet_normalisation(
    built: dict[str, Path],
) -> None:
    processor = VideoMAEImageProcessorPil.from_pretrained(built["video"])
    assert processor.size == {"shortest_edge": 64}
    assert processor.crop_size == {"height": 64, "width": 64}
    np.testing.assert_allclose(processor.image_mean, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(processor.image_std, [0.229, 0.224, 0.225])
    assert processor.resample == PILImageResampling.BILINEAR
    frames = [np.full((48, 96, 3), 255, dtype=np.uint8)] * 16
    pixels = processor(frames, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 16, 3, 64, 64)
    white = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(pixels[0, 0, :, 32, 32], white, atol=1e-5, rtol=0)


def test_audio_extractor_has_ast_bins_length_and_audioset_normalisation(
    built: dict[str, Path],
) -> None:
    extractor = ASTFeatureExtractor.from_pretrained(built["audio"])
    assert (extractor.num_mel_bins, extractor.max_length) == (128, 1024)
    assert extractor.sampling_rate == 16000 and extractor.do_normalize
    assert (extractor.mean, extractor.std) == pytest.approx((-4.2677393, 4.5689974))
    assert (extractor.mean, extractor.std) == (
        ASTFeatureExtractor().mean,
        ASTFeatureExtractor().std,
    )
    wave = np.sin(np.linspace(0, 2 * np.pi * 440 * 3, 3 * 16000, dtype=np.float32))
    values = extractor(wave, sampling_rate=16000, return_tensors="pt")["input_values"]
    assert values.shape == (1, 1024, 128)


def test_auto_classes_pick_the_pil_processors(built: dict[str, Path]) -> None:
    """Without torchvision, AutoImageProcessor falls back to the *Pil processors."""
    assert type(AutoImageProcessor.from_pretrained(built["image"])) is ViTImageProcessorPil
    assert type(AutoImageProcessor.from_pretrained(built["video"])) is VideoMAEImageProcessorPil
    assert type(AutoFeatureExtractor.from_pretrained(built["audio"])) is ASTFeatureExtractor


# ---------------------------------------------------------------- spec, replacement, CLI


@pytest.mark.parametrize(
    "change",
    [
        {"hidden_size": 33},
        {"image_size": 60},
        {"num_frames": 15},
        {"max_position": 20},
        {"audio_max_length": 8},
        {"vocab_size": 5},
        {"num_layers": 0},
    ],
)
def test_impossible_spec_is_refused(change: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="tiny encoders"):
        TinySpec(**change)


def test_rebuild_replaces_the_directory_and_a_leftover_partial(tmp_path: Path) -> None:
    out = tmp_path / "enc"
    (out / "stale").mkdir(parents=True)
    (tmp_path / "enc.partial" / "junk").mkdir(parents=True)
    spec = TinySpec(num_layers=1, audio_max_length=64)
    build_tiny_encoders(out, TITLES, spec=spec)
    assert sorted(p.name for p in out.iterdir()) == ["ast", "bert", "videomae", "vit"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    return parser.parse_args(argv)


def test_cli_reads_items_csv_and_applies_sizes(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text(
        'dense_id,item_id,title\n1,a1,Puppy tricks\n2,a2,\n3,a3,"Ramen, spicy"\n', encoding="utf-8"
    )
    out = tmp_path / "enc"
    args = _cli(
        [
            "tiny-encoders",
            "--items",
            str(items),
            "--out",
            str(out),
            "--seed",
            "3",
            "--hidden-size",
            "16",
            "--layers",
            "2",
            "--image-size",
            "32",
            "--audio-max-length",
            "128",
        ]
    )
    assert handler_of(args)(args) == 0
    assert ViTModel.from_pretrained(out / "vit").config.image_size == 32
    ast = ASTModel.from_pretrained(out / "ast").config
    assert (ast.hidden_size, ast.num_hidden_layers, ast.max_length) == (16, 2, 128)
    assert ASTFeatureExtractor.from_pretrained(out / "ast").max_length == 128
    assert VideoMAEImageProcessorPil.from_pretrained(out / "videomae").crop_size["height"] == 32
    assert "ramen" in _vocab_lines(out / "bert") and "tricks" in _vocab_lines(out / "bert")


def test_cli_rejects_items_without_titles(tmp_path: Path) -> None:
    items = tmp_path / "items.csv"
    items.write_text("dense_id,item_id\n1,a1\n", encoding="utf-8")
    args = _cli(["tiny-encoders", "--items", str(items), "--out", str(tmp_path / "enc")])
    with pytest.raises(DataError, match="title"):
        handler_of(args)(args)
    args = _cli(["tiny-encoders", "--items", str(tmp_path / "nope.csv"), "--out", "x"])
    with pytest.raises(DataError, match="does not exist"):
        handler_of(args)(args)
