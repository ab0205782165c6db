"""Stage 1b feature extraction with the tiny encoders: stored rows equal a direct forward of
the same model, masks carry over, options are validated, and the AST length option slices
the position embeddings on the right grid."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from transformers import (
    ASTFeatureExtractor,
    ASTModel,
    BertModel,
    BertTokenizerFast,
    VideoMAEImageProcessorPil,
    VideoMAEModel,
    ViTImageProcessorPil,
    ViTModel,
)

from crossan.cli import build_parser, handler_of
from crossan.encoders import extract as extract_module
from crossan.encoders.extract import batch_ranges, chunk_ranges, extract, shard_rows
from crossan.encoders.inputs import PixelInputs, TextInputs
from crossan.encoders.load import load_encoder, truncate_ast_positions
from crossan.encoders.tiny import build_tiny_encoders
from crossan.errors import ConfigError, DataError
from crossan.media.spec import MediaSpec
from crossan.media.store import PartialStore, read_valid, stack_rows

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter:UserWarning")

NUM_ITEMS = 60
LAYERS = [0, 1, 2, 3, 4, 5, 6]
SIDE = 64
MEDIA_SPEC = MediaSpec(video_size=SIDE, image_size=SIDE, num_frames=16, seconds=3.0)
WORDS = ["cute", "puppy", "pasta", "recipe", "guitar", "lesson", "street", "food", "tokyo", "kitten"]
# Invalid media rows per modality (dense ids), with the media stage's reasons.
BAD = {
    "image": {3: "missing file: covers/i3.jpg", 17: "corrupt: synthetic"},
    "video": {4: "corrupt: synthetic", 5: "missing file: videos/i5.mp4", 41: "corrupt: x"},
    "audio": {4: "corrupt: synthetic", 9: "no audio track", 30: "no audio track"},
}
SHORT_AUDIO = {2: 20_000, 12: 100}  # rows whose track is shorter than 3 s (100 < one window)


# ---------------------------------------------------------------- fixtures


def make_items(path: Path, count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """An items.csv of ``count`` items with word titles; item 7's title is empty."""
    rng = np.random.default_rng(seed)
    ids = [f"i{row}" for row in range(1, count + 1)]
    titles = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 6)))) for _ in ids]
    titles[6] = ""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dense_id", "item_id", "title"])
        writer.writerows((row, item, title) for row, (item, title) in enumerate(zip(ids, titles), 1))
    return ids, titles


def _media_rows(modality: str, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    fields = MEDIA_SPEC.fields(modality)
    data = {name: np.full((count, *f.shape), f.fill, dtype=f.dtype) for name, f in fields.items()}
    if modality == "image":
        data["pixels"] = rng.integers(0, 256, data["pixels"].shape, dtype=np.uint8)
    elif modality == "video":
        data["frames"] = rng.integers(0, 256, data["frames"].shape, dtype=np.uint8)
        data["frame_index"][:] = np.arange(16)
    else:
        samples = MEDIA_SPEC.audio_samples
        t = np.arange(samples) / MEDIA_SPEC.sample_rate
        freq = rng.uniform(200, 2000, (count, 1))
        data["waveform"] = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        data["waveform"] += rng.normal(0, 0.01, data["waveform"].shape).astype(np.float32)
        data["num_samples"][:] = samples
        for row, length in SHORT_AUDIO.items():
            data["waveform"][row - 1, length:] = 0
            data["num_samples"][row - 1] = length
    return data


def make_media(out_dir: Path, item_ids: list[str], seed: int = 0) -> dict[str, Path]:
    """Media files in the stage-1a layout (written by the media stage's own store)."""
    rng = np.random.default_rng(seed)
    paths = {}
    for modality in ("image", "video", "audio"):
        final = out_dir / f"{modality}.h5"
        fields = MEDIA_SPEC.fields(modality)
        attrs = MEDIA_SPEC.attrs(modality) | {"dataset": "synthetic", "source_dir": "none"}
        store, _ = PartialStore.open(final, fields, attrs, item_ids)
        data = _media_rows(modality, len(item_ids), rng)
        reasons = [BAD[modality].get(row, "") for row in range(1, len(item_ids) + 1)]
        for index, reason in enumerate(reasons):
            if reason:
                for name, field in fields.items():
                    data[name][index] = field.fill
        rows = list(range(1, len(item_ids) + 1))
        data = {name: stack_rows(field, list(data[name]), [reason == "" for reason in reasons])
                for name, field in fields.items()}
        store.write(rows, data, reasons)
        store.commit(rows)
        store.finalize(digest=True)
        paths[modality] = final
    return paths


def build_world(root: Path) -> dict:
    """Items, tiny encoders and media for NUM_ITEMS items under ``root``."""
    item_ids, titles = make_items(root / "items.csv", NUM_ITEMS)
    models = build_tiny_encoders(root / "models", titles, seed=0)
    media = make_media(root / "media", item_ids)
    return {"root": root, "items": root / "items.csv", "titles": titles, "ids": item_ids,
            "models": models, "media": media}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_world(tmp_path_factory.mktemp("extract"))


def run(world: dict, modality: str, out: Path, **options) -> extract_module.ExtractReport:
    defaults = {"layers": LAYERS, "batch_size": 7, "chunk_batches": 2, "device": "cpu",
                "progress": False}
    return extract(
        modality,
        str(world["models"][modality]),
        items_csv=world["items"],
        media=None if modality == "text" else world["media"][modality],
        out=out,
        **(defaults | options),
    )


@pytest.fixture(scope="module")
def extracted(world: dict) -> dict[str, Path]:
    out = world["root"] / "features"
    return {m: Path(run(world, m, out / f"{m}.h5").path) for m in ("text", "image", "video", "audio")}


# ---------------------------------------------------------------- direct forward


def direct_forward(world: dict, modality: str, row: int) -> np.ndarray:
    """float32 ``[7, 32]``: the model on item ``row`` alone, inputs built here from scratch."""
    directory = world["models"][modality]
    if modality == "text":
        tokenizer = BertTokenizerFast.from_pretrained(directory)
        batch = tokenizer([world["titles"][row - 1]], max_length=30, padding="max_length",
                          truncation=True, return_tensors="pt")
        model = BertModel.from_pretrained(directory)
    else:
        with h5py.File(world["media"][modality], "r") as file:
            one = np.ones(1, dtype=bool)
            if modality == "image":  # the stored JPEG, decoded
                processor = ViTImageProcessorPil.from_pretrained(directory)
                pixels = read_valid(file["pixels"], row, row + 1, one)[0]
                batch = processor(images=[pixels], return_tensors="pt")
                model = ViTModel.from_pretrained(directory)
            elif modality == "video":
                processor = VideoMAEImageProcessorPil.from_pretrained(directory)
                frames = read_valid(file["frames"], row, row + 1, one)[0]
                batch = processor([list(frames)], return_tensors="pt")
                model = VideoMAEModel.from_pretrained(directory)
            else:
                count = max(int(file["num_samples"][row]), 400)
                extractor = ASTFeatureExtractor.from_pretrained(directory)
                batch = extractor([file["waveform"][row][:count]], sampling_rate=16000,
                                  return_tensors="pt")
                model = ASTModel.from_pretrained(directory)
    with torch.no_grad():
        states = model.eval()(**batch, output_hidden_states=True).hidden_states
    if modality in ("text", "image"):
        pooled = [h[0, 0] for h in states]  # [CLS]
    elif modality == "video":
        pooled = [h[0].mean(dim=0) for h in states]  # all tokens
    else:
        pooled = [(h[0, 0] + h[0, 1]) / 2 for h in states]  # [CLS] and distillation
    return torch.stack(pooled).numpy()


@pytest.mark.parametrize("modality", ["text", "image", "video", "audio"])
def test_stored_rows_equal_a_direct_forward(world: dict, extracted: dict, modality: str) -> None:
    with h5py.File(extracted[modality], "r") as file:
        features, valid = file["features"][:], file["valid"][:]
        reasons, ids = list(file["reason"].asstr()[:]), list(file["item_id"].asstr()[:])
        attrs = dict(file.attrs)
    assert features.shape == (NUM_ITEMS + 1, len(LAYERS), 32) and features.dtype == np.float16
    assert ids == ["", *world["ids"]] and "_done" not in h5py.File(extracted[modality], "r")
    assert not valid[0] and reasons[0] == "padding" and not features[0].any()
    bad = BAD.get(modality, {})
    for row in range(1, NUM_ITEMS + 1):
        assert valid[row] == (row not in bad) and reasons[row] == bad.get(row, "")
        assert features[row].any() == (row not in bad), row
    rng = np.random.default_rng(len(modality))
    good = [row for row in range(1, NUM_ITEMS + 1) if row not in bad]
    checked = list(rng.choice(good, size=2, replace=False))
    checked += {"text": [7], "audio": list(SHORT_AUDIO)}.get(modality, [])  # empty title, short clips
    for row in checked:
        expected = direct_forward(world, modality, int(row))
        # fp16 storage: half an ulp is 2**-11 relative; a batch of 7 vs one item adds ~1e-6
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(
            features[row].astype(np.float32), expected, rtol=1e-3, atol=1e-3 * scale
        )
    assert list(attrs["layers"]) == LAYERS and attrs["model"] == str(world["models"][modality])
    assert attrs["pooling"] == {"text": "cls", "image": "cls", "video": "mean"}.get(modality, "cls_dist")
    config = json.loads(attrs["config_json"])
    assert config["layers"] == LAYERS and len(attrs["config_hash"]) == 64
    for key in ("input_spec", "media_spec", "pooling_rule", "torch_version",
                "transformers_version", "crossan_version", "device", "created", "completed"):
        assert key in attrs, key
    if modality == "text":
        assert attrs["empty_titles"] == 1 and json.loads(attrs["input_spec"])["max_length"] == 30


def test_titles_are_padded_to_the_longest_of_their_batch(world: dict) -> None:
    builder = TextInputs(load_encoder("text", str(world["models"]["text"])), max_length=12)
    tokenizer = builder.tokenizer
    titles = [title for title in world["titles"] if title][:5]
    lengths = [len(tokenizer(title)["input_ids"]) for title in titles]
    batch = builder.prepare(titles)
    assert batch["input_ids"].shape == (5, min(max(lengths), 12))
    assert batch["attention_mask"].sum(dim=1).tolist() == [min(n, 12) for n in lengths]
    assert builder.prepare([""])["input_ids"].shape == (1, 2)  # [CLS] [SEP]
    long_title = " ".join(world["titles"])
    assert builder.prepare([long_title, ""])["input_ids"].shape == (2, 12)  # cut at max_length


def test_the_job_computes_with_the_threads_it_is_given(world: dict, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    try:
        for threads in (1, 3):
            report = run(world, "text", tmp_path / f"t{threads}.h5", threads=threads)
            assert torch.get_num_threads() == threads
            assert report.device == f"cpu ({threads} threads)"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads must be >= 1, got 0"):
        run(world, "text", tmp_path / "t0.h5", threads=0)


def test_pixel_table_equals_the_processor_bit_for_bit(world: dict) -> None:
    for modality, shape in (("image", (5, SIDE, SIDE, 3)), ("video", (2, 16, SIDE, SIDE, 3))):
        encoder = load_encoder(modality, str(world["models"][modality]))
        builder = PixelInputs(encoder, shape[1:], Path("media.h5"))
        assert builder.table is not None
        pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        fast = builder.to_device(builder.prepare(pixels), torch.device("cpu"))["pixel_values"]
        if modality == "video":
            slow = encoder.preprocessor([list(v) for v in pixels], return_tensors="pt")
        else:
            slow = encoder.preprocessor(images=list(pixels), return_tensors="pt")
        assert torch.equal(fast, slow["pixel_values"])
        builder.table = None  # the processor itself, used when no table reproduces it
        called = builder.to_device(builder.prepare(pixels), torch.device("cpu"))["pixel_values"]
        assert torch.equal(called, slow["pixel_values"])


# ---------------------------------------------------------------- validation


def test_layer_indices_are_validated(world: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[8, 10, 12\] out of range.*num_hidden_layers=6"):
        run(world, "text", tmp_path / "t.h5", layers=[0, 2, 4, 6, 8, 10, 12])
    with pytest.raises(ConfigError, match="strictly increasing"):
        run(world, "text", tmp_path / "t.h5", layers=[2, 1])
    assert not list(tmp_path.iterdir())


def test_image_size_mismatch_names_the_config_key(world: dict, tmp_path: Path) -> None:
    spec = MediaSpec(video_size=32, image_size=32, num_frames=16)
    final = tmp_path / "image.h5"
    fields = spec.fields("image")
    store, _ = PartialStore.open(final, fields, spec.attrs("image"), world["ids"])
    rows = list(range(1, NUM_ITEMS + 1))
    pixels = stack_rows(fields["pixels"], list(np.zeros((NUM_ITEMS, 32, 32, 3), np.uint8)), [True] * NUM_ITEMS)
    store.write(rows, {"pixels": pixels}, [""] * NUM_ITEMS)
    store.commit(rows)
    store.finalize(digest=True)
    with pytest.raises(ConfigError, match=r"32x32.*takes 64x64: set media\.image_size to 64"):
        extract("image", str(world["models"]["image"]), items_csv=world["items"], media=final,
                out=tmp_path / "f.h5", layers=LAYERS, device="cpu", progress=False)
    # A preprocessor that would resize the (right-sized) media is refused, not obeyed.
    directory = tmp_path / "vit"
    shutil.copytree(world["models"]["image"], directory)
    config = json.loads((directory / "preprocessor_config.json").read_text(encoding="utf-8"))
    config["size"] = {"height": 48, "width": 48}
    (directory / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"would resize 64x64 inputs to 48x48.*media\.image_size"):
        extract("image", str(directory), items_csv=world["items"], media=world["media"]["image"],
                out=tmp_path / "f.h5", layers=LAYERS, device="cpu", progress=False)
    assert not (tmp_path / "f.h5").exists() and not (tmp_path / "f.h5.partial").exists()


def test_media_of_another_item_list_is_rejected(world: dict, tmp_path: Path) -> None:
    make_items(tmp_path / "items.csv", NUM_ITEMS - 1)
    with pytest.raises(DataError, match="not items.csv's 59"):
        extract("image", str(world["models"]["image"]), items_csv=tmp_path / "items.csv",
                media=world["media"]["image"], out=tmp_path / "f.h5", layers=LAYERS,
                device="cpu", progress=False)


def test_an_unreadable_media_file_is_named_with_what_to_do(world: dict, tmp_path: Path) -> None:
    whole = world["media"]["image"].read_bytes()
    cut = tmp_path / "image.h5"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as caught:
        extract("image", str(world["models"]["image"]), items_csv=world["items"], media=cut,
                out=tmp_path / "f.h5", layers=LAYERS, device="cpu", progress=False)
    assert str(caught.value).startswith(f"media file {cut} is unreadable (cut short or damaged: ")
    assert str(caught.value).endswith("delete it and rerun snakemake, which samples it again")
    assert not (tmp_path / "f.h5").exists()


# ---------------------------------------------------------------- AST length


def test_ast_max_length_at_checkpoint_length_equals_the_default(world: dict, tmp_path: Path) -> None:
    default = run(world, "audio", tmp_path / "default.h5", chunk_batches=9)
    same = run(world, "audio", tmp_path / "same.h5", chunk_batches=9, max_length=1024)
    with h5py.File(default.path, "r") as a, h5py.File(same.path, "r") as b:
        assert np.array_equal(a["features"][:], b["features"][:])
    short = run(world, "audio", tmp_path / "short.h5", chunk_batches=9, max_length=300)
    assert short.config_hash != default.config_hash
    with h5py.File(short.path, "r") as file:
        spec = json.loads(file.attrs["input_spec"])
        assert spec["max_length"] == 300 and spec["checkpoint_max_length"] == 1024
        assert file["features"][1].any() and not file["features"][4].any()


def test_ast_truncation_keeps_the_first_time_patches_of_every_frequency_row(world: dict) -> None:
    full = ASTModel.from_pretrained(world["models"]["audio"]).eval()
    with torch.no_grad():  # distinct positions, so a wrong slice cannot pass by symmetry
        full.embeddings.position_embeddings.normal_(generator=torch.Generator().manual_seed(0))
    short = truncate_ast_positions(full, 300)
    assert short.config.max_length == 300 and full.config.max_length == 1024
    assert short.embeddings.position_embeddings.shape == (1, 2 + 12 * 29, 32)
    frames = torch.randn(1, 300, 128, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(frames, (0, 0, 0, 1024 - 300))
    with torch.no_grad():
        embedded_short = short.embeddings(frames)[0]  # [2 + 12 * 29, D]
        embedded_full = full.embeddings(padded)[0]  # [2 + 12 * 101, D]
    grid = embedded_full[2:].reshape(12, 101, 32)[:, :29].reshape(12 * 29, 32)
    torch.testing.assert_close(embedded_short[:2], embedded_full[:2])
    torch.testing.assert_close(embedded_short[2:], grid)
    with pytest.raises(ConfigError, match="between 16 .* and the checkpoint's 1024"):
        truncate_ast_positions(full, 2048)


# ---------------------------------------------------------------- planning and reruns


def test_batches_chunks_and_shards_are_aligned_to_absolute_batches() -> None:
    assert batch_ranges(1, 18, 7) == [(1, 8), (8, 15), (15, 18)]
    assert batch_ranges(8, 18, 7) == [(8, 15), (15, 18)]
    assert chunk_ranges(1, 61, 7, 2) == [(1, 15), (15, 29), (29, 43), (43, 57), (57, 61)]
    assert chunk_ranges(22, 43, 7, 2) == [(22, 29), (29, 43)]
    shards = [shard_rows(60, 7, k, 3) for k in range(3)]
    assert shards == [(1, 22), (22, 43), (43, 61)]
    assert [shard_rows(5, 7, k, 3) for k in range(3)] == [(1, 1), (1, 1), (1, 6)]
    with pytest.raises(ConfigError):
        shard_rows(60, 7, 3, 3)


def test_rerun_is_up_to_date_and_a_stale_partial_is_discarded(
    world: dict, extracted: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    again = run(world, "text", extracted["text"])
    assert again.up_to_date and again.items_computed == 0
    out = tmp_path / "text.h5"
    with h5py.File(tmp_path / "text.h5.partial", "w") as file:
        file.attrs["config_hash"] = "0" * 64
    with caplog.at_level(logging.WARNING):
        report = run(world, "text", out, batch_size=60)
    assert report.discarded_partial.startswith("config hash changed (0000")
    assert "config hash changed" in caplog.text and report.items_computed == NUM_ITEMS
    with h5py.File(out, "r") as a, h5py.File(extracted["text"], "r") as b:
        assert a.attrs["config_hash"] != b.attrs["config_hash"]  # batch size is in the hash
        np.testing.assert_allclose(a["features"][:], b["features"][:], atol=2e-3, rtol=2e-3)


def test_cli_flags(world: dict, tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args([
        "extract-features", "--modality", "text", "--model", str(world["models"]["text"]),
        "--layers", "0,3,6", "--batch-size", "16", "--max-length", "20", "--items",
        str(world["items"]), "--out", str(tmp_path / "t.h5"), "--shard", "1", "--num-shards",
        "2", "--chunk-batches", "1", "--device", "cpu", "--no-progress",
    ])
    assert (args.layers, args.batch_size, args.max_length, args.shard) == ([0, 3, 6], 16, 20, 1)
    assert handler_of(args)(args) == 0
    with h5py.File(tmp_path / "t.h5", "r") as file:
        assert file["features"].shape == (28 + 1, 3, 32)  # shard 1 of 2: batches 2..3 (rows 33-60)
        assert (file.attrs["first_row"], file.attrs["shard"], file.attrs["num_shards"]) == (33, 1, 2)
    merge = parser.parse_args(["merge-features", "--out", "m.h5", "a.h5", "b.h5"])
    assert merge.shards == [Path("a.h5"), Path("b.h5")] and merge.handler == "crossan.encoders.extract:run_merge"
    with pytest.raises(SystemExit):
        parser.parse_args(["extract-features", "--modality", "smell", "--model", "m",
                           "--items", "i", "--out", "o"])


def test_checkpoints_missing_hidden_state_weights_are_refused(world: dict, tmp_path: Path) -> None:
    original = load_encoder("image", str(world["models"]["image"]))
    weights = ViTModel.from_pretrained(world["models"]["image"]).state_dict()
    for name, dropped in (("no-pooler", "pooler."), ("no-cls", "embeddings.cls_token")):
        directory = tmp_path / name
        shutil.copytree(world["models"]["image"], directory)
        kept = {key: value for key, value in weights.items() if not key.startswith(dropped)}
        ViTModel.from_pretrained(directory).save_pretrained(directory, state_dict=kept)
        if name == "no-pooler":  # randomly initialised but unused: loads, same fingerprint
            loaded = load_encoder("image", str(directory))
            assert loaded.fingerprint["weights_sha256"] == original.fingerprint["weights_sha256"]
        else:
            with pytest.raises(ConfigError, match="not a complete ViTModel.*embeddings.cls_token"):
                load_encoder("image", str(directory))
