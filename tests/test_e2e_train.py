"""End-to-end runs (fft, adapter, lora) on tiny checkpoints: the outputs every run writes, inputs
read and tokenised once, only a batch's distinct items through the encoders, masked covers
counted, and the same numbers for the same seed."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_extract import BAD, make_items, make_media
from test_train_data import random_sequences, write_dataset

from crossan.encoders import inputs as inputs_module
from crossan.encoders.load import load_encoder
from crossan.encoders.tiny import build_tiny_encoders
from crossan.errors import ConfigError
from crossan.media.spec import MediaSpec
from crossan.media.store import PartialStore
from crossan.models.e2e.item_encoder import EndToEndConfig, build_e2e_model
from crossan.models.trainable import count_trainable
from crossan.runs.identity import settings_digest
from crossan.runs.run_config import RunConfig
from crossan.train import e2e_inputs
from crossan.train.e2e import autocast_dtype, fit_cls_standardization, make_e2e_encoder
from crossan.train.entry import train
from crossan.train.evaluation import all_item_embeddings
from crossan.train.loop import optimizer_step

pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filter:UserWarning")
N_USERS, N_ITEMS = 30, 24


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Sequences, items.csv (item 7's title empty), tiny checkpoints and media (covers 3 and 17
    unreadable, as the media stage marks them)."""
    root = tmp_path_factory.mktemp("e2e")
    data = write_dataset(root / "data", random_sequences(N_USERS, N_ITEMS, seed=5), N_ITEMS)
    ids, titles = make_items(data / "items.csv", N_ITEMS)
    models = build_tiny_encoders(root / "models", titles, seed=0)
    make_media(root / "media", ids)
    return {"data": data, "media": root / "media", "text": models["text"], "image": models["image"]}


def config(world: dict[str, Path], out: Path, **kw) -> RunConfig:
    defaults = {"method": "lora", "modalities": "TI", "hidden": 4, "lr": 1e-3, "text_lr": 1e-3, "image_lr": 1e-3,
                "seed": 0, "batch_size": 8, "max_epochs": 1, "patience": 1, "device": "cpu", "dataset": "demo",
                "eval_batch_size": 7}
    return RunConfig(data_dir=world["data"], features_dir="", out_dir=out, media_dir=world["media"],
                     text_model=world["text"], image_model=world["image"], **(defaults | kw))


@pytest.mark.parametrize("method", ["fft", "adapter", "lora"])
def test_a_run_writes_every_output_and_counts_masked_inputs(world, tmp_path: Path, method: str) -> None:
    result = train(config(world, tmp_path / method, method=method))
    out = tmp_path / method
    for name in ("metrics.json", "per_user_valid.parquet", "per_user_test.parquet", "gates.json",
                 "item_towers.h5", "train_log.csv"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    # text+image, concat and (fft) no adapters: not in the name; config()'s settings are in its digest
    changed = {"e2e_batch_size": 8, "max_epochs": 1, "patience": 1, "eval_batch_size": 7, "e2e_text_lr": 1e-3,
               "e2e_image_lr": 1e-3}
    fields = "-lr1e-03-s0" if method == "fft" else "-h4-lr1e-03-s0"
    assert metrics["run_name"] == f"demo__{method}{fields}-x{settings_digest(changed)}"
    assert metrics["trainable_parameters"] == count_trainable(result.model)
    assert metrics["inputs"]["masked_covers"] == len(BAD["image"])
    assert metrics["inputs"]["empty_titles"] == 1
    assert metrics["inputs"]["masked_cover_examples"][0] == f"i3: {BAD['image'][3]}"
    assert metrics["precision"] == "float32" and metrics["learning_rates"]["recommender"] == 1e-3
    assert 0 <= metrics["test"]["HR@10"] <= 1 and metrics["epochs_run"] == 1
    assert json.loads((out / "gates.json").read_text(encoding="utf-8")) == {}


def test_same_seed_same_numbers(world, tmp_path: Path) -> None:
    first = train(config(world, tmp_path / "a", max_epochs=2, patience=2))
    second = train(config(world, tmp_path / "b", max_epochs=2, patience=2))
    assert first.test == second.test and first.valid == second.valid
    assert [r["train_loss"] for r in first.log] == [r["train_loss"] for r in second.log]


def test_inputs_are_read_and_tokenised_once_and_batches_hold_distinct_items(
    world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened, tokenised, gathered = [], [], []
    real_file, real_prepare, real_gather = inputs_module.h5py.File, inputs_module.TextInputs.prepare, \
        e2e_inputs.ItemInputs.gather

    def counting_file(path, *args, **kw):
        opened.append(Path(path).name)
        return real_file(path, *args, **kw)

    def counting_prepare(self, titles):
        tokenised.append(len(titles))
        return real_prepare(self, titles)

    def recording_gather(self, ids):
        gathered.append(ids.tolist())
        return real_gather(self, ids)

    monkeypatch.setattr(inputs_module.h5py, "File", counting_file)
    monkeypatch.setattr(inputs_module.TextInputs, "prepare", counting_prepare)
    monkeypatch.setattr(e2e_inputs.ItemInputs, "gather", recording_gather)
    result = train(config(world, tmp_path / "run", max_epochs=2, patience=2))
    assert [name for name in opened if not name.endswith(".partial")] == ["image.h5"]  # once, at load
    assert tokenised == [N_ITEMS + 1]  # every title (and the padding row) in one call
    assert len(result.log) == 2
    for ids in gathered:
        assert 0 not in ids and len(ids) == len(set(ids))  # distinct items, never the padding row
    # each evaluation (2 epochs + the final one, valid and test together) and the tower file
    # encode every item exactly once, eval_batch_size (7) at a time
    evaluation = [ids for ids in gathered if len(ids) <= 7 and ids == list(range(ids[0], ids[0] + len(ids)))]
    assert sum(len(ids) for ids in evaluation) >= 4 * N_ITEMS


def test_missing_inputs_are_named(world, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="media_dir.*--media"):
        train(dataclasses.replace(config(world, tmp_path / "x"), media_dir=""))
    with pytest.raises(ConfigError, match="text\\+image only"):
        config(world, tmp_path / "y", modalities="TIV")


def test_lora_item_embeddings_start_at_the_frozen_encoders(world, tmp_path: Path) -> None:
    """Zero B: the untrained LoRA model's item table is the frozen model's (same heads)."""
    text, image = load_encoder("text", str(world["text"])), load_encoder("image", str(world["image"]))
    inputs = e2e_inputs.load_item_inputs(world["data"], world["media"], text, image, 30)
    torch.manual_seed(0)
    lora = build_e2e_model(EndToEndConfig.of("lora", 4), text.model, image.model).eval()
    frozen_text, frozen_image = load_encoder("text", str(world["text"])), load_encoder("image", str(world["image"]))
    frozen = build_e2e_model(EndToEndConfig(method="fft"), frozen_text.model, frozen_image.model).eval()
    frozen.load_state_dict({k: v for k, v in lora.state_dict().items() if ".lora_" not in k and "base_layer" not in k},
                           strict=False)
    for name in ("text", "image"):  # the pretrained q/v weights sit under base_layer in the LoRA model
        getattr(frozen.item_encoder, name).load_state_dict(
            {k.replace(".base_layer", ""): v for k, v in getattr(lora.item_encoder, name).state_dict().items()
             if ".lora_" not in k})
    with torch.inference_mode():
        a = all_item_embeddings(make_e2e_encoder(lora, inputs, None), N_ITEMS, torch.device("cpu"), 7)
        b = all_item_embeddings(make_e2e_encoder(frozen, inputs, None), N_ITEMS, torch.device("cpu"), 7)
    assert torch.equal(a, b)


def test_cls_standardization_uses_the_step0_states_of_usable_items(world) -> None:
    """Fitted on the untrained model's [CLS] states: every item's text, readable covers only;
    afterwards those states have mean 0 and std 1 per feature, and nothing trainable is added."""
    text, image = load_encoder("text", str(world["text"])), load_encoder("image", str(world["image"]))
    inputs = e2e_inputs.load_item_inputs(world["data"], world["media"], text, image, 30)
    torch.manual_seed(0)
    model = build_e2e_model(EndToEndConfig.of("adapter", 4), text.model, image.model).train()
    trainable = count_trainable(model)
    counts = fit_cls_standardization(model, inputs, chunk=7, dtype=None)
    assert counts == {"text": N_ITEMS, "image": N_ITEMS - len(BAD["image"])}
    assert model.training and count_trainable(model) == trainable
    encoder = model.eval().item_encoder
    with torch.inference_mode():
        batch, _ = inputs.gather(torch.arange(1, N_ITEMS + 1))
        rows = batch.has_image.nonzero().squeeze(1)
        states = {"text": encoder.text.cls_state(**batch.text),
                  "image": encoder.image.cls_state(pixel_values=batch.pixels.index_select(0, rows))}
    for name, raw in states.items():
        z = getattr(encoder, name).standardize(raw).double()
        varying = raw.std(0) > 1e-6
        assert varying.any()
        assert torch.allclose(z.mean(0), torch.zeros_like(z[0]), atol=1e-5)
        assert torch.allclose(z.std(0, unbiased=False)[varying], torch.ones(int(varying.sum()), dtype=z.dtype), atol=1e-4)


def test_standardize_states_reaches_end_to_end_runs(world, tmp_path: Path) -> None:
    result = train(config(world, tmp_path / "z", method="fft", standardize_states=True))
    metrics = json.loads((tmp_path / "z" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["standardized_cls_items"] == {"text": N_ITEMS, "image": N_ITEMS - len(BAD["image"])}
    assert float(result.model.item_encoder.text.standardize.scale.abs().sum()) > 0
    assert not torch.equal(result.model.item_encoder.text.standardize.mean, torch.zeros(32))


# ---------------------------------------------------------------- GPU paths, forced on the CPU


def test_autocast_dtype_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(cuda, True) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype(cuda, True) == torch.float16
    assert autocast_dtype(cuda, False) is None and autocast_dtype(torch.device("cpu"), True) is None


def test_bfloat16_autocast_encodes_in_float32_close_to_full_precision(world) -> None:
    """The autocast branch of the encoder (CUDA's) run with CPU bfloat16: float32 out, ~bf16 error."""
    text, image = load_encoder("text", str(world["text"])), load_encoder("image", str(world["image"]))
    inputs = e2e_inputs.load_item_inputs(world["data"], world["media"], text, image, 30)
    torch.manual_seed(0)
    model = build_e2e_model(EndToEndConfig.of("adapter", 4), text.model, image.model).eval()
    ids = torch.tensor([0, 1, 3, 5])  # padding, an item, a masked cover, another item
    with torch.inference_mode():
        full = make_e2e_encoder(model, inputs, None)(ids)
        half = make_e2e_encoder(model, inputs, torch.bfloat16)(ids)
    assert half.dtype == torch.float32 and torch.equal(half[0], torch.zeros_like(half[0]))
    assert torch.allclose(half, full, atol=0.05, rtol=0.05) and not torch.equal(half, full)


def test_grad_scaler_step_updates_like_a_plain_step() -> None:
    """The float16 path's scaler (enabled on the CPU here): same update as without it."""
    torch.manual_seed(0)
    plain = torch.nn.Linear(3, 1)
    scaled = copy.deepcopy(plain)
    x = torch.randn(4, 3)
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.1) for m in (plain, scaled)]
    optimizer_step(plain(x).pow(2).mean(), optimizers[0])
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    optimizer_step(scaled(x).pow(2).mean(), optimizers[1], scaler)
    assert scaler.get_scale() == 1024.0  # finite gradients: no back-off
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_run(world, tmp_path: Path) -> None:
    plain = train(config(world, tmp_path / "a", method="adapter", max_epochs=2, patience=2))
    checkpointed = train(config(world, tmp_path / "b", method="adapter", max_epochs=2, patience=2,
                                gradient_checkpointing=True))
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["gradient_checkpointing"] is True
    encoder = checkpointed.model.item_encoder
    assert encoder.text.backbone.is_activation_checkpointing and encoder.image.backbone.is_activation_checkpointing
    assert not plain.model.item_encoder.text.backbone.is_activation_checkpointing
    assert [r["train_loss"] for r in checkpointed.log] == pytest.approx([r["train_loss"] for r in plain.log], rel=1e-5)
    assert checkpointed.test == pytest.approx(plain.test, abs=1e-9)


def test_covers_are_read_decoded_and_an_old_raw_image_file_as_before(world, tmp_path: Path) -> None:
    """read_covers gives the stored JPEG covers decoded as every reader gets them, zero where
    masked; an image.h5 written before the compact store (raw pixels, no media_format) reads
    exactly as it did."""
    image = load_encoder("image", str(world["image"]))
    ids = [f"i{row}" for row in range(1, N_ITEMS + 1)]
    cpu = torch.device("cpu")
    pixels, has_image, _, reasons = e2e_inputs.read_covers(world["media"] / "image.h5", image, ids, cpu)
    source = inputs_module.MediaSource(world["media"] / "image.h5", "image", ids)
    try:
        stored = source.read(1, N_ITEMS + 1)
    finally:
        source.close()
    assert pixels.dtype == torch.uint8 and pixels.shape == (N_ITEMS + 1, 64, 64, 3)
    assert has_image[1:].tolist() == stored.valid.tolist() and not has_image[0]
    assert torch.equal(pixels[1:][has_image[1:]], torch.from_numpy(stored.payload))
    assert not pixels[~has_image].any() and reasons[3] == BAD["image"][3]

    old = tmp_path / "image.h5"
    spec = MediaSpec(video_size=64, image_size=64, jpeg_quality=0)
    store, _ = PartialStore.open(old, spec.fields("image"), spec.attrs("image"), ids)
    raw = np.random.default_rng(3).integers(0, 256, (N_ITEMS, 64, 64, 3), dtype=np.uint8)
    store.write(list(range(1, N_ITEMS + 1)), {"pixels": raw}, [""] * N_ITEMS)
    store.commit(list(range(1, N_ITEMS + 1)))
    store.finalize()
    with h5py.File(old, "r+") as file:
        for key in ("media_format", "jpeg_quality", "storage"):
            del file.attrs[key]
    pixels, has_image, _, _ = e2e_inputs.read_covers(old, image, ids, cpu)
    assert has_image[1:].all() and torch.equal(pixels[1:], torch.from_numpy(raw))


def test_lora_biases_get_iisans_fine_tuning_rates_and_the_lora_matrices_the_adapter_rates() -> None:
    from test_e2e_models import build, item_batch

    from crossan.runs.settings import training_default
    from crossan.train.e2e import parameter_groups

    # the defaults: IISAN Code_Uncached/scripts/run_{fft,adapter,lora}.py
    assert training_default("e2e_text_lr") == {"fft": 5e-5, "adapter": 4e-4, "lora": 4e-4}
    assert training_default("e2e_image_lr") == {"fft": 1e-4, "adapter": 4e-4, "lora": 4e-4}
    assert (training_default("lora_text_bias_lr"), training_default("lora_image_bias_lr")) == (5e-5, 1e-4)
    model = build("lora")  # 2-layer BERT and ViT, hidden 16, rank 4
    run = RunConfig(data_dir="d", features_dir="", out_dir="o", method="lora", modalities="TI", hidden=4, lr=2e-4,
                    text_lr=4e-4, image_lr=4e-4)
    groups = {g["name"]: g for g in parameter_groups(model, run)}
    assert {name: g["lr"] for name, g in groups.items()} == {
        "recommender": 2e-4, "text encoder": 4e-4, "text LoRA biases": 5e-5, "image encoder": 4e-4,
        "image LoRA biases": 1e-4}
    # 2 layers x (query, value): 4 biases and 8 LoRA factors per encoder
    for tower, prefix, (q, v) in (("text", "encoder.layer.{}.attention.self.", ("query", "value")),
                                  ("image", "layers.{}.attention.", ("q_proj", "v_proj"))):
        backbone = getattr(model.item_encoder, tower).backbone
        name_of = {id(p): n for n, p in backbone.named_parameters()}
        biases = {name_of[id(p)] for p in groups[f"{tower} LoRA biases"]["params"]}
        assert biases == {prefix.format(i) + f"{w}.base_layer.bias" for i in (0, 1) for w in (q, v)}
        factors = sorted(tuple(p.shape) for p in groups[f"{tower} encoder"]["params"])
        assert factors == [(4, 16)] * 4 + [(16, 4)] * 4
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in model.parameters() if p.requires_grad)

    # Adam's first step moves each weight with a gradient by its group's rate (g / (|g| + eps), eps 1e-8)
    before = {id(p): p.detach().clone() for p in model.parameters()}
    optimizer = torch.optim.Adam(list(groups.values()))
    model.train()
    model.item_encoder(item_batch(3)).square().sum().backward()
    optimizer.step()
    for name, group in groups.items():
        moved = torch.cat([(p.detach() - before[id(p)]).abs().flatten()[p.grad.flatten().abs() > 1e-5]
                           for p in group["params"] if p.grad is not None])
        assert len(moved) and torch.allclose(moved, torch.full_like(moved, group["lr"]), rtol=1e-3), name

    # fft and adapter: no bias group (every trainable encoder weight at the encoder's rate)
    for method in ("fft", "adapter"):
        other = RunConfig(data_dir="d", features_dir="", out_dir="o", method=method, modalities="TI", hidden=4)
        assert [g["name"] for g in parameter_groups(build(method), other)] == [
            "recommender", "text encoder", "image encoder"]
