"""Stage 2 training runs on a tiny synthetic dataset: determinism, early stopping, outputs,
deduplicated item encoding, the popularity baseline and run names."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from test_train_data import (
    random_features,
    random_sequences,
    write_dataset,
    write_features,
)

from crossan.cli import build_parser, handler_of, main
from crossan.config import load_schema
from crossan.errors import ConfigError
from crossan.models.adapters import IISANSideAdapters
from crossan.models.graph.base import GraphRecommender
from crossan.models.graph.registry import graph_model
from crossan.results.plan import experiment_runs
from crossan.runs.identity import (
    changed_settings,
    format_lr,
    name_digest,
    parse_run_name,
    run_name,
    settings_digest,
)
from crossan.runs.run_config import RunConfig
from crossan.runs.settings import CONVENTIONS, SETTING_FIELDS, default_training, training_settings
from crossan.runs.specs import (
    configured_run,
    method_training,
    planned_run_names,
    run_by_name,
    run_from_name,
)
from crossan.runs.vocabulary import (
    ALIGNMENTS,
    CACHED_STATE_METHODS,
    END_TO_END_METHODS,
    FAMILIES,
    FUSIONS,
    GRAPH_METHODS,
    METHODS,
    METRIC_NAMES,
    NAME_FIELDS,
    NO_FUSION,
    POPULARITY,
    RUN_METHODS,
)
from crossan.train import loop
from crossan.train.cached import item_encoder
from crossan.train.entry import train
from crossan.train.inputs import load_item_states, load_sequences
from crossan.train.loop import EarlyStopping
from crossan.train.loss import NonFiniteLossError
from crossan.train.popularity import evaluate_popularity
from crossan.train.towers import read_item_towers

N_USERS, N_ITEMS, LAYERS, HIDDEN = 40, 30, 3, 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("demo")
    data = write_dataset(root / "data", random_sequences(N_USERS, N_ITEMS, seed=3), N_ITEMS)
    ids = [str(100 + i) for i in range(1, N_ITEMS + 1)]
    for seed, name in enumerate(("text", "image", "video", "audio")):
        write_features(root / "features" / f"{name}.h5", *random_features(N_ITEMS, LAYERS, HIDDEN, seed), ids)
    return data, root / "features"


def config(dataset, out: Path, **kw) -> RunConfig:
    data, features = dataset
    defaults = {"method": "crossan", "modalities": "TIV", "hidden": 8, "lr": 1e-3, "seed": 0, "batch_size": 16,
                    "max_epochs": 2, "patience": 2, "device": "cpu", "dataset": "demo"}
    return RunConfig(data_dir=data, features_dir=features, out_dir=out, **(defaults | kw))


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "train_log.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_same_seed_same_metrics(dataset, tmp_path: Path) -> None:
    first = train(config(dataset, tmp_path / "a"))
    second = train(config(dataset, tmp_path / "b"))
    other = train(config(dataset, tmp_path / "c", seed=1))
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text(encoding="utf-8")) for d in "ab")
    assert a["valid"] == b["valid"] and a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    assert [r["train_loss"] for r in first.log] == [r["train_loss"] for r in second.log]
    assert [r["train_loss"] for r in other.log] != [r["train_loss"] for r in first.log]
    assert (pl.read_parquet(tmp_path / "a/per_user_test.parquet")
            .equals(pl.read_parquet(tmp_path / "b/per_user_test.parquet")))


def test_outputs_and_keys(dataset, tmp_path: Path) -> None:
    run = config(dataset, tmp_path / "run", method="crossan", modalities="TIVA")
    result = train(run)
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == [
        "gates.json", "item_towers.h5", "metrics.json", "per_user_test.parquet", "per_user_valid.parquet",
        "settings.json", "train_log.csv"]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for key in ("valid", "test", "best_epoch", "epochs_run", "trainable_parameters", "seconds_per_epoch",
                "eval_seconds", "peak_memory_mib", "peak_memory_kind", "device", "config", "versions",
                "run_name"):
        assert key in metrics, key
    by_pop = metrics["test_by_popularity"]  # every family writes it (write_outputs)
    assert sum(by_pop[b]["users"] for b in ("head", "torso", "tail")) == metrics["n_users"]["test"]
    assert set(metrics["valid"]) == set(metrics["test"]) == set(METRIC_NAMES)
    assert metrics["peak_memory_kind"] == "cpu_peak_rss" and metrics["peak_memory_mib"] > 10
    assert metrics["device"] == "cpu" and metrics["seconds_per_epoch"] > 0 and metrics["eval_seconds"] > 0
    assert metrics["trainable_parameters"] == sum(p.numel() for p in result.model.parameters())
    assert metrics["config"]["modalities"] == "TIVA" and metrics["config"]["hidden"] == 8
    assert metrics["versions"]["torch"] == torch.__version__
    # batch_size 16, max_epochs 2, patience 2 are not the defaults (64, 50, 5): digested into the name
    changed = {"batch_size": 16, "max_epochs": 2, "patience": 2}
    digest = hashlib.sha256(json.dumps(changed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:8]
    assert metrics["run_name"] == run_name(run) == f"demo__crossan-TIVA-momef-k2-h8-lr1e-03-s0-x{digest}"
    settings = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    assert settings["run_name"] == metrics["run_name"] and settings["digest"] == digest
    assert settings["changed"] == changed
    assert settings["settings"] == {
        "batch_size": 16, "max_epochs": 2, "patience": 2, "max_len": 10, "weight_decay": 0.0,
        "standardize_states": False, "layer0_previous": "zeros", "sequence_encoder": "microlens",
        "negatives": "window", "popularity_smoothing": "none", "repeat_targets": "miss", "lr_groups": "single",
        "cached_mixed_precision": False}
    for split, n in (("valid", N_USERS), ("test", N_USERS)):
        frame = pl.read_parquet(out / f"per_user_{split}.parquet").sort("user")
        assert frame.columns == ["user", "rank", *METRIC_NAMES]
        assert frame["user"].to_list() == list(range(n))
        assert frame["HR@10"].mean() == pytest.approx(metrics[split]["HR@10"])
    gates = json.loads((out / "gates.json").read_text(encoding="utf-8"))["towers"]
    assert list(gates) == ["text", "image", "video", "audio"]
    for tower in gates.values():
        assert tower["sources"] == ["H", "T", "I", "V", "A"]
        assert np.array(tower["values"]).shape == (LAYERS, 5)
        assert np.allclose(np.array(tower["values"]).sum(1), 1)
    # item_towers.h5 = the best checkpoint's tower outputs of every item, in items.csv order
    towers = read_item_towers(out / "item_towers.h5")
    states = load_item_states(dataset[1], "TIVA", "cpu")
    assert towers.towers == ("text", "image", "video", "audio") and towers.item_ids == states.item_ids
    with torch.inference_mode():
        gathered, has = states.gather(torch.arange(1, N_ITEMS + 1))
        expected = result.model.item_encoder.tower_outputs(gathered).numpy()
    np.testing.assert_allclose(towers.outputs, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(towers.available, np.stack([has[m].numpy() for m in towers.towers], 1))
    np.testing.assert_array_equal(towers.tower("image"), towers.outputs[:, 1])
    rows = read_log(out)
    assert list(rows[0]) == ["epoch", "train_loss", "valid_HR@10", "valid_NDCG@10", "valid_HR@20",
                             "valid_NDCG@20", "train_seconds", "eval_seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(math.isfinite(float(r["train_loss"])) for r in rows)


def test_early_stopping_restores_the_best_epoch(dataset, tmp_path: Path, monkeypatch) -> None:
    # Validation HR@10 is scripted, so when to stop does not hang on how training went on
    # this CPU; everything else about the evaluation is real.
    scripted = [0.2, 0.5, 0.4, 0.45, 0.9]  # best epoch 2; patience 2 stops after epoch 4
    real_evaluate, epochs = loop.evaluate_model, []

    def evaluate(model, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_evaluate(model, *args, **kwargs)
        if tuple(kwargs.get("splits", ("valid",))) == ("valid",):  # the per-epoch evaluation
            metrics, per_user = result["valid"]
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            epochs.append((dict(metrics), state))
            result["valid"] = ({**metrics, "HR@10": scripted[len(epochs) - 1]}, per_user)
        return result

    monkeypatch.setattr(loop, "evaluate_model", evaluate)
    out = tmp_path / "run"
    run = config(dataset, out, method="indsan", modalities="TI", max_epochs=25, patience=2)
    result = train(run)
    rows = read_log(out)
    assert [float(r["valid_HR@10"]) for r in rows] == scripted[:4]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["best_epoch"] == result.best_epoch == 2
    assert metrics["epochs_run"] == len(epochs) == 4 and metrics["stopped_early"] is True
    # the restored model is epoch 2's, and its final validation metrics are epoch 2's
    best_metrics, best_state = epochs[1]
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, best_state[name]), name
    assert metrics["valid"] == best_metrics
    # and the test metrics are those of the restored model
    data = load_sequences(Path(dataset[0]), 10)
    states = load_item_states(dataset[1], "TI", "cpu")
    again = real_evaluate(result.model, item_encoder(result.model, states, torch.device("cpu")).embed,
                          data, torch.device("cpu"), run.repeat_targets, splits=("test",))["test"][0]
    assert again == metrics["test"]


def test_only_unique_batch_items_are_encoded(dataset, tmp_path: Path, monkeypatch) -> None:
    batches, calls = [], []
    # the towers run once per encoding, in training (with the alignment loss or not) and evaluation
    real_batches, real_encode = loop.train_batches, IISANSideAdapters.forward

    def spy_batches(*args, **kw):
        for batch in real_batches(*args, **kw):
            batches.append(batch)
            yield batch

    def spy_encode(self, states, *args, **kw):
        calls.append((self.training, next(iter(states.values())).shape[0]))
        return real_encode(self, states, *args, **kw)

    monkeypatch.setattr(loop, "train_batches", spy_batches)
    monkeypatch.setattr(IISANSideAdapters, "forward", spy_encode)
    train(config(dataset, tmp_path / "run", method="iisan-e", modalities="TA", max_epochs=1))
    training = [n for is_training, n in calls if is_training]
    assert training == [len(b.unique_items) + 1 for b in batches]
    assert len(batches) > 1 and sum(training) > N_ITEMS + 1  # several batches, each deduplicated
    # evaluation: every item once per evaluation (one after the epoch, one at the end), then
    # once more without padding for item_towers.h5
    evaluation = [n for is_training, n in calls if not is_training]
    assert evaluation == [N_ITEMS + 1, N_ITEMS + 1, N_ITEMS]


def test_id_sasrec_runs_without_features(dataset, tmp_path: Path) -> None:
    data, _ = dataset
    run = RunConfig(data_dir=data, features_dir="", out_dir=tmp_path / "id", method="id-sasrec",
                    modalities="TIVA", lr=1e-3, max_epochs=1, batch_size=16, device="cpu")
    assert run.modalities == "" and run.fusion == "none"
    result = train(run)
    assert json.loads((tmp_path / "id" / "gates.json").read_text(encoding="utf-8")) == {}
    assert read_item_towers(tmp_path / "id" / "item_towers.h5").towers == ()
    assert result.metrics.trainable_parameters == (N_ITEMS + 1) * 64 + sum(
        p.numel() for p in result.model.sequence_encoder.parameters())
    assert parse_run_name(run_name(run))["modalities"] == ""


def test_non_finite_loss_stops_with_a_clear_error(dataset, tmp_path: Path, monkeypatch) -> None:
    real = loop.debiased_in_batch_loss
    monkeypatch.setattr(loop, "debiased_in_batch_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* epoch 1 step 0"):
        train(config(dataset, tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_popularity_by_hand(tmp_path: Path) -> None:
    # train = seq[:-2] = [1,2,3], [1,2], [1], [2]; counts: 1 -> 3, 2 -> 3, 3 -> 1, 4..6 -> 0.
    sequences = {0: [1, 2, 3, 5, 1], 1: [1, 2, 4, 6], 2: [1, 6, 5], 3: [2, 5, 3]}
    data_dir = write_dataset(tmp_path / "hand" / "data", sequences, n_items=6)
    # Test targets 1, 6, 5, 3; histories (masked) [1,2,3,5], [1,2,4], [1,6], [2,5].
    # Scores 3,3,1,0,0,0 for items 1..6; ties pessimistic.
    #  u0: target 1 is in its history: masked with it (IISAN), rank n_items = 6;
    #      with repeat_targets "ranked" the others left are 4, 6 (score 0): rank 1
    #  u1: target 6 (0), left 3 (1) and 5 (0): rank 3
    #  u2: target 5 (0), left 2 (3), 3 (1), 4 (0): rank 4
    #  u3: target 3 (1), left 1 (3), 4 (0), 6 (0): rank 2
    ranks = [6, 3, 4, 2]
    ranked = train(RunConfig(data_dir=data_dir, features_dir="", out_dir=tmp_path / "ranked",
                             method="popularity", repeat_targets="ranked"))
    assert ranked.per_user_test["rank"].tolist() == [1, 3, 4, 2]
    out = tmp_path / "pop"
    result = train(RunConfig(data_dir=data_dir, features_dir="", out_dir=out, method="popularity"))
    assert result.per_user_test["rank"].tolist() == ranks
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["config"]["repeat_targets"] == "miss"
    assert metrics["test"]["HR@10"] == 1.0
    assert metrics["test"]["NDCG@10"] == pytest.approx(np.mean([1 / math.log2(r + 1) for r in ranks]))
    assert metrics["trainable_parameters"] == 0 and metrics["best_epoch"] == 0
    # Long-tail buckets: counts 3,3,1,0,0,0 (items 1..6), 7 interactions: head >= 3 (items 1, 2
    # hold 6, >= 7/3); the tail would need count 3 to reach a third, cut to the lowest of the
    # three distinct counts: tail <= 0 (items 4..6), torso item 3. Test targets 1 (head, rank 6),
    # 6 and 5 (tail, ranks 3 and 4), 3 (torso, rank 2).
    by_pop = metrics["test_by_popularity"]
    assert (by_pop["head_min_count"], by_pop["tail_max_count"]) == (3, 0)
    assert by_pop["items"] == {"head": 2, "torso": 1, "tail": 3} and by_pop["empty_buckets"] == []
    assert by_pop["head"] == {"users": 1, "HR@10": 1.0, "NDCG@10": pytest.approx(1 / math.log2(7))}
    assert by_pop["torso"] == {"users": 1, "HR@10": 1.0, "NDCG@10": pytest.approx(1 / math.log2(3))}
    assert by_pop["tail"] == {"users": 2, "HR@10": 1.0,
                              "NDCG@10": pytest.approx((1 / math.log2(4) + 1 / math.log2(5)) / 2)}
    assert json.loads((out / "gates.json").read_text(encoding="utf-8")) == {}
    assert metrics["run_name"] == "hand__popularity"  # deterministic: no seed, no fields it ignores
    assert json.loads((out / "settings.json").read_text(encoding="utf-8")) == {
        "run_name": "hand__popularity", "digest": "", "changed": {}, "settings": {"repeat_targets": "miss"}}
    assert ranked.metrics.run_name == "hand__popularity-x" + settings_digest({"repeat_targets": "ranked"})
    assert read_log(out) == []
    data = load_sequences(data_dir)
    summary, _ = evaluate_popularity(data, data.valid)
    assert summary == metrics["valid"]


def test_popularity_misses_an_unpopular_target(tmp_path: Path) -> None:
    # Users 0-2 train on items 1..12 (count 3 each), validate on 13, test on 14 (count 0):
    # history 1..13 masked, only item 15 (count 0, tie) is left: rank 2.
    # User 3 trains on 13, validates on 14, tests on 15 (count 0): items 1..12 (count 3)
    # are all candidates ahead of it, and 13/14 are history: rank 13, a miss at 10, a hit at 20.
    sequences = {u: [*range(1, 13), 13, 14] for u in range(3)} | {3: [13, 14, 15]}
    data_dir = write_dataset(tmp_path / "p" / "data", sequences, n_items=15)
    result = train(RunConfig(data_dir=data_dir, features_dir="", out_dir=tmp_path / "o", method="popularity"))
    assert result.per_user_test["rank"].tolist() == [2, 2, 2, 13]
    assert result.test["HR@10"] == 0.75 and result.test["HR@20"] == 1.0
    assert result.test["NDCG@10"] == pytest.approx(3 / math.log2(3) / 4)
    assert result.test["NDCG@20"] == pytest.approx((3 / math.log2(3) + 1 / math.log2(14)) / 4)


# Every method, with values in every name field (those a method ignores differ from the defaults).
ROUND_TRIP = [
    {"method": "crossan", "modalities": "TIVA", "fusion": None, "topk": 2, "hidden": 512, "lr": 1e-4, "seed": 0},
    {"method": "indsan", "modalities": "VT", "fusion": "dynamic", "topk": 3, "hidden": 16, "lr": 3e-4, "seed": 2},
    {"method": "iisan-e", "modalities": "av", "fusion": "static", "topk": 3, "hidden": 1024, "lr": 2.5e-4, "seed": 12},
    {"method": "iisan", "modalities": "IT", "fusion": None, "topk": 1, "hidden": 64, "lr": 0.003, "seed": 1},
    {"method": "id-sasrec", "modalities": "TIVA", "fusion": None, "topk": 3, "hidden": 8, "lr": 1e-3, "seed": 4},
    {"method": "popularity", "modalities": "T", "fusion": None, "topk": 3, "hidden": 8, "lr": 1e-3, "seed": 5},
    {"method": "fft", "modalities": "TI", "fusion": None, "topk": 3, "hidden": 8, "lr": 1e-3, "seed": 1},
    {"method": "adapter", "modalities": "TI", "fusion": "concat", "topk": 3, "hidden": 32, "lr": 1e-3, "seed": 0},
    {"method": "lora", "modalities": "TI", "fusion": None, "topk": 1, "hidden": 8, "lr": 2e-4, "seed": 3},
] + [{"method": m, "modalities": "TIA", "fusion": None, "topk": 3, "hidden": 64, "lr": 1e-2, "seed": 1}
     for m in ("mmgcn", "grcn", "bm3", "freedom", "mgcn", "mhcr")]
# The fields each method's name carries (the others it does not use, or cannot vary).
USED = {**{m: {"modalities", "fusion", "topk", "hidden", "lr", "seed"} for m in ("crossan", "indsan", "iisan", "iisan-e")},
        "id-sasrec": {"lr", "seed"}, "popularity": set(), "fft": {"lr", "seed"}, "adapter": {"hidden", "lr", "seed"},
        "lora": {"hidden", "lr", "seed"},
        **{m: {"modalities", "hidden", "lr", "seed"} for m in ("mmgcn", "grcn", "bm3", "freedom", "mgcn", "mhcr")}}


@pytest.mark.parametrize("kw", ROUND_TRIP, ids=[kw["method"] for kw in ROUND_TRIP])
@pytest.mark.parametrize("settings", [{}, {"max_epochs": 7, "repeat_targets": "ranked",
                                           "lora_alpha": 2.0, "standardize_states": True}], ids=["defaults", "changed"])
def test_run_name_round_trip(tmp_path: Path, kw, settings) -> None:
    run = RunConfig(data_dir=tmp_path / "microlens-100k" / "data", features_dir="", out_dir=tmp_path, **kw, **settings)
    name = run_name(run)
    parsed = parse_run_name(name)
    assert parsed["dataset"] == "microlens-100k" and parsed["method"] == kw["method"]
    rebuilt = RunConfig(data_dir="x", features_dir="", out_dir=tmp_path, **parsed, **settings)
    assert run_name(rebuilt) == name  # name -> fields -> name
    used = USED[kw["method"]] - ({"topk"} if run.resolved_fusion() != "momef" else set())
    for field in used:  # fields -> name -> fields, for every field the method uses
        assert parsed[field] == (run.resolved_fusion() if field == "fusion" else getattr(run, field)), field
    for field in {"topk", "hidden", "lr", "seed"} - used:  # the others are not in the name
        assert parsed[field] == {"topk": 2, "hidden": 512, "lr": 1e-4, "seed": 0}[field], field
    assert parse_run_name(f"results/x/runs/{name}") == parsed
    # "-x{digest}" iff a setting the method uses is not the schema's default (RunConfig's own
    # defaults are not, for the end-to-end and graph methods); every method uses one of `settings`
    assert bool(re.search(r"-x[0-9a-f]{8}$", name)) == bool(changed_settings(run)) >= bool(settings)
    assert name_digest(name) == settings_digest(changed_settings(run))


def test_run_name_examples(tmp_path: Path) -> None:
    run = RunConfig(data_dir="d", features_dir="f", out_dir="o", dataset="demo")
    assert run_name(run) == "demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0"
    assert format_lr(1e-4) == "1e-04" and format_lr(2.5e-4) == "2.5e-04" and format_lr(0.1) == "1e-01"
    assert parse_run_name("my_set-1__iisan-e-TI-concat-h512-lr1e-04-s3")["dataset"] == "my_set-1"
    # no meaningless fields: popularity is deterministic (no seed) and reads no content; ID-SASRec
    # has no modalities, fusion, top-k or adapters; k belongs to MOMEF only
    name = {"dataset": "demo", "data_dir": "d", "features_dir": "", "out_dir": "o"}
    assert run_name(RunConfig(**name, method="popularity", seed=3, hidden=8, lr=1e-3, topk=1)) == "demo__popularity"
    assert run_name(RunConfig(**name, method="id-sasrec", seed=3, hidden=8, lr=1e-3)) == "demo__id-sasrec-lr1e-03-s3"
    assert run_name(RunConfig(**name, fusion="concat", topk=3)) == "demo__crossan-TIVA-concat-h512-lr1e-04-s0"
    assert run_name(RunConfig(**name, method="fft", modalities="TI")) == "demo__fft-lr1e-04-s0-x" + settings_digest(
        {"e2e_batch_size": 64, "e2e_text_lr": 1e-4})  # RunConfig's defaults; the schema's are 32 and 5e-5
    assert run_name(RunConfig(**name, method="bm3", hidden=64, lr=1e-3, batch_size=2048, max_epochs=1000, patience=20,
                              graph_grid={"n_layers": [1, 2], "dropout": [0.3, 0.5], "reg_weight": [0.1, 0.01]}
                              )) == "demo__bm3-TIVA-h64-lr1e-03-s0"
    for bad in ("crossan-TIVA-momef-k2-h512-lr1e-04-s0", "demo__popularity-none-none-k2-h512-lr1e-04-s0",
                "demo__crossan-TIVA-concat-k2-h512-lr1e-04-s0", "demo__crossan-TIVA-momef-h512-lr1e-04-s0",
                "demo__id-sasrec-h512-lr1e-04-s0", "demo__popularity-x123"):
        with pytest.raises(ConfigError, match="is not a run name"):
            parse_run_name(bad)
    with pytest.raises(ConfigError):
        RunConfig(data_dir="d", features_dir="f", out_dir="o", method="iisan", modalities="TIV")


def test_the_vocabulary_agrees_with_itself_the_schema_and_the_models() -> None:
    defs = load_schema()["$defs"]
    training = defs["training"]["properties"]
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    for name, method in METHODS.items():
        assert method.name == name and method.family in FAMILIES, name
        for key in method.settings:  # config.yaml training keys, each with a default and a RunConfig field
            assert key in training and "default" in training[key], (name, key)
            assert SETTING_FIELDS.get(key, key) in fields, (name, key)
        # the fields its name writes: some of NAME_FIELDS, in that order
        assert set(method.name_fields) <= set(NAME_FIELDS), name
        assert list(method.name_fields) == [field for field in NAME_FIELDS if field in method.name_fields], name
        assert set(method.name_fields) <= fields, name
    assert set(END_TO_END_METHODS) == {"fft", "adapter", "lora"}
    assert {m for m in CACHED_STATE_METHODS if m != "id-sasrec"} == {
        m for m, method in METHODS.items() if "fusion" in method.name_fields}
    for convention in CONVENTIONS:  # every convention changes some method's runs
        assert any(convention in method.settings for method in METHODS.values()), convention
    # the schema writes the vocabulary's lists out: they must be the same
    assert defs["run"]["properties"]["method"]["enum"] == list(RUN_METHODS)
    assert defs["graph_method"]["enum"] == list(GRAPH_METHODS)
    assert defs["end_to_end"]["items"]["enum"] == list(END_TO_END_METHODS)
    assert defs["run"]["properties"]["fusion"]["enum"] == [*FUSIONS, NO_FUSION]
    assert defs["run"]["properties"]["align"]["enum"] == list(ALIGNMENTS)
    # the paper's tuned setting of every method but popularity (nothing to tune) and crossan-moda
    # (Table B2 runs it at CROSSAN's)
    settings = defs["experiments"]["properties"]["settings"]["properties"]
    assert list(settings) == [m for m in RUN_METHODS if m not in (POPULARITY, "crossan-moda")]
    for method in GRAPH_METHODS:  # the graph registry has a model for every graph method
        config_type, model = graph_model(method)
        assert issubclass(model, GraphRecommender) and model.config_type is config_type, method
        assert dataclasses.is_dataclass(config_type), method


def test_cli_train(dataset, tmp_path: Path) -> None:
    parser = build_parser()
    data, features = dataset
    training = {"batch_size": 16, "max_epochs": 1, "patience": 1}  # the rest: the schema's defaults
    name = f"demo__crossan-TI-momef-k1-h8-lr1e-03-s0-x{settings_digest(training)}"
    args = parser.parse_args(["train", "--run", name, "--training", json.dumps(training), "--data", str(data),
                              "--features", str(features), "--out", str(tmp_path / name), "--device", "cpu"])
    assert handler_of(args)(args) == 0
    metrics = json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["run_name"] == name
    assert {k: metrics["config"][k] for k in ("method", "modalities", "fusion", "topk", "hidden", "lr", "seed")} == {
        "method": "crossan", "modalities": "TI", "fusion": "momef", "topk": 1, "hidden": 8, "lr": 1e-3, "seed": 0}
    assert {k: metrics["config"][k] for k in training} == training
    assert metrics["config"]["topk"] == 1 and metrics["epochs_run"] == 1


def test_cli_train_by_run_name(dataset, tmp_path: Path) -> None:
    parser = build_parser()
    data, features = dataset
    changed = {"batch_size": 16, "max_epochs": 1}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump({"datasets": ["demo"], "catalog": {"demo": {
        "kind": "demo", "training": changed}}}), encoding="utf-8")
    name = "demo__indsan-TI-static-h8-lr1e-03-s3-x" + settings_digest(changed)
    inputs = ["--data", str(data), "--features", str(features), "--device", "cpu"]
    common = ["train", *inputs, "--config", str(config_file)]
    args = parser.parse_args([*common, "--run", name, "--out", str(tmp_path / name)])
    assert handler_of(args)(args) == 0
    metrics = json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["run_name"] == name
    assert {k: metrics["config"][k] for k in ("method", "modalities", "fusion", "topk", "hidden", "lr", "seed")} == {
        "method": "indsan", "modalities": "TI", "fusion": "static", "topk": 2, "hidden": 8, "lr": 1e-3, "seed": 3}
    assert json.loads((tmp_path / name / "settings.json").read_text(encoding="utf-8"))["changed"] == {
        "batch_size": 16, "max_epochs": 1}

    # the name fixes its fields and the configuration its settings: no flag sets either any more
    for flag in (["--seed", "0"], ["--batch-size", "16"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*common, "--run", name, "--out", str(tmp_path / name), *flag])
    elsewhere = parser.parse_args([*common, "--run", name, "--out", str(tmp_path / "x")])
    with pytest.raises(ConfigError, match="must be a folder named"):
        handler_of(elsewhere)(elsewhere)
    odd = "demo__indsan-TI-static-h8-lr0.001e+00-s3-x" + name[-8:]  # parses, but is not the canonical name
    not_canonical = parser.parse_args([*common, "--run", odd, "--out", str(tmp_path / odd)])
    with pytest.raises(ConfigError, match="not canonical"):
        handler_of(not_canonical)(not_canonical)
    # the name's digest must be the one of the settings given: other settings, other name
    other_settings = json.dumps({**changed, "patience": 2})
    other = parser.parse_args(["train", *inputs, "--training", other_settings, "--run", name,
                               "--out", str(tmp_path / name)])
    digest = settings_digest({"batch_size": 16, "max_epochs": 1, "patience": 2})
    with pytest.raises(ConfigError, match=f"does not match the training settings .* patience=2.*named "
                                          f"{re.escape(name[:-8] + digest)}"):
        handler_of(other)(other)
    # and those of the configuration it is launched under (here: none changed)
    defaults_file = tmp_path / "defaults.yaml"
    defaults_file.write_text(yaml.safe_dump({"datasets": ["demo"], "catalog": {"demo": {"kind": "demo"}}}),
                             encoding="utf-8")
    under_defaults = parser.parse_args(["train", *inputs, "--config", str(defaults_file), "--run", name,
                                        "--out", str(tmp_path / name)])
    with pytest.raises(ConfigError, match=f"defaults: none\\): with them this run is named {re.escape(name[:-10])}\\."):
        handler_of(under_defaults)(under_defaults)


def test_run_name_command_prints_the_configured_name(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"datasets": ["a"], "catalog": {"a": {
        "kind": "demo", "training": {"standardize_states": True, "graph_patience": 3}}}}))
    args = ["run-name", "--config", str(config), "--dataset", "a"]
    assert main([*args, "--method", "iisan", "--modalities", "it", "--lr", "1e-3"]) == 0
    assert main([*args, "--method", "popularity", "--seed", "3"]) == 0
    assert main([*args, "--method", "lora", "--hidden", "8"]) == 0  # lr: LoRA's setting in the paper's plan
    assert capsys.readouterr().out.split() == [
        "a__iisan-TI-concat-h512-lr1e-03-s0-x" + settings_digest({"standardize_states": True}),
        "a__popularity",
        "a__lora-h8-lr2e-04-s0-x" + settings_digest({"standardize_states": True})]


SETTINGS_CONFIG = {
    "training": {"batch_size": 64, "max_epochs": 50, "standardize_states": False},
    "runs": [{"method": "crossan", "hidden": 512, "lr": 1e-4}],
    "catalog": {
        "a": {"kind": "demo", "training": {"max_epochs": 3, "standardize_states": True},
              "runs": [{"method": "popularity"}, {"method": "crossan", "modalities": "ai", "seeds": [0, 1]},
                       {"method": "crossan", "modalities": "IA", "seeds": [1]}]},
        "b": {"kind": "demo"},
    },
}


def test_planned_run_names_from_config() -> None:
    config = SETTINGS_CONFIG
    a = "-x" + settings_digest({"max_epochs": 3, "standardize_states": True})
    assert planned_run_names(config, "a") == [
        "a__popularity",  # uses neither max_epochs nor standardize_states
        f"a__crossan-IA-momef-k2-h512-lr1e-04-s0{a}",
        f"a__crossan-IA-momef-k2-h512-lr1e-04-s1{a}",  # the third spec repeats it: listed once
    ]
    assert planned_run_names(config, "b") == ["b__crossan-TIVA-momef-k2-h512-lr1e-04-s0"]  # the defaults
    assert training_settings(config, "a") == {**default_training(), "batch_size": 64, "max_epochs": 3,
                                              "standardize_states": True}
    # what a run's job is given (crossan train --training): the settings its method uses, no others
    loop_settings = {"batch_size": 64, "max_epochs": 3, "patience": 5, "max_len": 10, "weight_decay": 0}
    rest = {"sequence_encoder": "microlens", "negatives": "window", "popularity_smoothing": "none",
            "repeat_targets": "miss"}
    assert method_training(config, "a", "crossan") == {
        **loop_settings, "standardize_states": True, "layer0_previous": "zeros", **rest, "lr_groups": "single",
        "cached_mixed_precision": False}
    assert method_training(config, "a", "id-sasrec") == {**loop_settings, **rest}  # reads no states
    assert method_training(config, "a", "popularity") == {"repeat_targets": "miss"}
    assert method_training(config, "b", "popularity") == {"repeat_targets": "miss"}
    assert method_training(config, "a", "adapter")["standardize_states"] is True
    # and from them and its name, the job rebuilds the configured run
    for name in planned_run_names(config, "a"):
        training = method_training(config, "a", parse_run_name(name)["method"])
        assert run_from_name(name, training) == run_by_name(config, "a", name), name


def test_a_spec_without_modalities_reads_the_datasets_own() -> None:
    config = {**SETTINGS_CONFIG, "catalog": {
        "t": {"kind": "demo", "modalities": ["text"]},
        "ia": {"kind": "demo", "modalities": ["audio", "image"]},
    }}
    assert planned_run_names(config, "t") == ["t__crossan-T-momef-k1-h512-lr1e-04-s0"]  # k at most 1
    assert planned_run_names(config, "ia") == ["ia__crossan-IA-momef-k2-h512-lr1e-04-s0"]


def test_a_setting_renames_only_the_runs_that_use_it() -> None:
    """max_epochs: the sequential and end-to-end runs get new names (and commands), the
    popularity baseline and the graph recommenders (graph_max_epochs) keep theirs; both
    values' runs can then sit side by side."""

    def everything(config: dict) -> dict[str, str]:
        names = experiment_runs(config, "a") + planned_run_names(config, "a")
        return {parse_run_name(name)["method"] + str(i): name for i, name in enumerate(names)}

    before = {"catalog": {"a": {"kind": "demo", "runs": [{"method": "id-sasrec"}]}}}
    after = {"catalog": {"a": {"kind": "demo", "runs": [{"method": "id-sasrec"}], "training": {"max_epochs": 100}}}}
    old, new = everything(before), everything(after)
    assert old.keys() == new.keys()
    kept = {key for key in old if old[key] == new[key]}
    assert {parse_run_name(old[key])["method"] for key in kept} == {"popularity", "mmgcn", "grcn", "bm3", "freedom",
                                                                     "mgcn", "mhcr"}
    renamed = set(old) - kept
    assert {parse_run_name(old[key])["method"] for key in renamed} == {
        "crossan", "indsan", "iisan", "iisan-e", "crossan-moda", "id-sasrec", "fft", "adapter", "lora"}
    suffix = "-x" + settings_digest({"max_epochs": 100})
    assert all(new[key] == old[key] + suffix for key in renamed if not name_digest(old[key]))
    for method in ("popularity", "freedom"):  # what their jobs are given stays the same too: no params rerun
        assert method_training(before, "a", method) == method_training(after, "a", method)
    assert method_training(before, "a", "crossan") != method_training(after, "a", "crossan")


def test_two_settings_give_two_runs_and_one_setting_one_digest() -> None:
    raw = {"catalog": {"a": {"kind": "demo"}}}
    z = {"catalog": {"a": {"kind": "demo", "training": {"standardize_states": True}}}}
    fields = {"modalities": "TI", "fusion": None, "topk": 2, "hidden": 8, "lr": 1e-3, "seed": 0}
    names = {run_name(configured_run(config, "a", method, **fields))
             for config in (raw, z) for method in ("crossan", "iisan")}
    assert len(names) == 4  # each setting its own folder, side by side
    assert {name_digest(name) for name in names} == {"", settings_digest({"standardize_states": True})}
    # a folder name is checked against the configuration it is asked under
    name = run_name(configured_run(z, "a", "crossan", **fields))
    assert run_name(run_by_name(z, "a", name)) == name
    with pytest.raises(ConfigError, match=r"does not match the training settings of dataset 'a' .*\(those of its "
                                          r"method other than the defaults: none\): with them this run is named "
                                          r"a__crossan-TI-momef-k2-h8-lr1e-03-s0\."):
        run_by_name(raw, "a", name)
    with pytest.raises(ConfigError, match="belongs to dataset 'a', not 'b'"):
        run_by_name({"catalog": {"b": {"kind": "demo"}}}, "b", name)


def test_conventions_reach_only_the_methods_they_change() -> None:
    settings = {"batch_size": 64, "inter_tower": "convex", "layer0_previous": "frozen",
                "sequence_encoder": "gelu", "negatives": "targets", "popularity_smoothing": "add-one",
                "repeat_targets": "ranked"}
    config = {"training": settings, "catalog": {"a": {"kind": "demo"}}}
    loop_settings = {"batch_size": 64, "max_epochs": 50, "patience": 5, "max_len": 10, "weight_decay": 0}
    rest = {"sequence_encoder": "gelu", "negatives": "targets", "popularity_smoothing": "add-one",
            "repeat_targets": "ranked"}
    side = {"lr_groups": "single", "cached_mixed_precision": False}
    assert method_training(config, "a", "iisan") == {
        **loop_settings, "standardize_states": False, "inter_tower": "convex", "layer0_previous": "frozen", **rest,
        **side}
    assert method_training(config, "a", "crossan") == {
        **loop_settings, "standardize_states": False, "layer0_previous": "frozen", **rest, **side}
    assert method_training(config, "a", "id-sasrec") == {**loop_settings, **rest}
    assert method_training(config, "a", "popularity") == {"repeat_targets": "ranked"}
    grid = {"edge_dropout": [0.8, 0.9], "modality_loss_weight": [0.0001, 0.001]}  # the default search
    assert method_training(config, "a", "freedom") == {
        "graph_batch_size": 2048, "graph_max_epochs": 1000, "graph_patience": 20, "max_len": 10, "weight_decay": 0,
        "standardize_states": False, "graph_grid": {"freedom": grid}, "graph_layer": -1, "graph_k": 10,
        "repeat_targets": "ranked", "graph_negatives": "training"}
    assert method_training(config, "a", "lora") == {
        "e2e_batch_size": 32, "max_epochs": 50, "patience": 5, "max_len": 10, "weight_decay": 0,
        "standardize_states": False, "e2e_text_lr": {"lora": 0.0004}, "e2e_image_lr": {"lora": 0.0004},
        "lora_alpha": 1.0, "gradient_checkpointing": False, "mixed_precision": True, "eval_batch_size": 256, **rest,
        "lora_text_bias_lr": 5e-5, "lora_image_bias_lr": 1e-4}
    # every method's run, rebuilt from its name and these settings, is the configured one
    fields = {"modalities": "TI", "hidden": 8, "lr": 1e-3, "seed": 1}
    for method in RUN_METHODS:
        name = run_name(configured_run(config, "a", method, **fields))
        assert run_from_name(name, method_training(config, "a", method)) == run_by_name(config, "a", name), method


def test_conventions_reach_the_model_and_metrics(dataset, tmp_path: Path) -> None:
    earlier = {"inter_tower": "convex", "layer0_previous": "frozen", "sequence_encoder": "gelu",
               "negatives": "targets", "popularity_smoothing": "add-one", "repeat_targets": "ranked"}
    reference = train(config(dataset, tmp_path / "ref", method="iisan", modalities="TI", max_epochs=1))
    before = train(config(dataset, tmp_path / "old", method="iisan", modalities="TI", max_epochs=1, **earlier))
    towers = before.model.item_encoder.towers
    assert type(towers.inter_gate).__name__ == "ConvexInterGate" and towers.layer0_previous == "frozen"
    assert type(reference.model.item_encoder.towers.inter_gate).__name__ == "IISANInterGate"
    assert before.model.sequence_encoder.blocks[0].ln_ffn.eps == 1e-5
    # IISAN T+I: 7 inter gates (one per kept layer) instead of 14
    assert before.metrics.trainable_parameters - reference.metrics.trainable_parameters == LAYERS
    assert {k: before.metrics.config[k] for k in earlier} == earlier
    assert reference.log[0]["train_loss"] != before.log[0]["train_loss"]
    with pytest.raises(ConfigError, match="negatives must be one of window, targets"):
        config(dataset, tmp_path / "bad", negatives="all")


def test_early_stopping_keeps_the_best_state_and_stops_after_patience() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(patience=2)
    for epoch, (hr, weight) in enumerate([(0.1, 1.0), (0.3, 2.0), (0.3, 3.0), (0.2, 4.0)], start=1):
        model.weight.data.fill_(weight)
        stop = stopping.update(model, epoch, hr)
        assert stop == (epoch == 4)  # a tie is no improvement: epochs 3 and 4 use up patience 2
    assert (stopping.best_epoch, stopping.best_hr) == (2, 0.3)
    stopping.restore(model)
    assert model.weight.item() == 2.0


# ---------------------------------------------------------------- IISAN's training loop (issue 26, point 7)


def test_iisan_lr_groups_by_part_with_hand_counted_sizes() -> None:
    from crossan.models import ModelConfig, build_model
    from crossan.train.cached import parameter_groups

    dim, hidden, layers = 32, 8, 3
    adapter = 2 * dim * hidden + hidden + dim  # one Houlsby adapter: 552
    dense = dim * dim + dim  # a head's Linear(D->D): 1,056

    def groups(method: str, modalities: str, lr_groups: str) -> tuple[torch.nn.Module, list[dict]]:
        fusion = "concat" if method.startswith("iisan") else "momef"
        model = build_model(ModelConfig(method=method, encoder_dim=dim, n_layers=layers, adapter_dim=hidden,
                                        modalities=modalities, fusion=fusion, max_len=10))
        run = RunConfig(data_dir="d", features_dir="f", out_dir="o", method=method, modalities=modalities,
                        lr=2e-4, lr_groups=lr_groups)
        return model, parameter_groups(model, run)

    model, found = groups("iisan", "TI", "iisan")
    # IISAN Code_Cached/scripts/run_IISAN.py's five rates at its lr 2e-4
    assert [(g["name"], g["lr"]) for g in found] == [
        ("recommender", 2e-4), ("text adapters", 1e-4), ("adapters", 1e-4), ("text head", 5e-5), ("head", 1e-4)]
    sizes = {g["name"]: (len(g["params"]), sum(p.numel() for p in g["params"])) for g in found}
    assert sizes["text adapters"] == (4 * layers, layers * adapter)  # fc_down/fc_up of bert_adapter_list
    assert sizes["adapters"] == (8 * layers, 2 * layers * adapter)  # cv_adapter_list + mm_adapter_list
    assert sizes["text head"] == sizes["head"] == (2, dense)  # fc_bert; fc_cv
    total = sum(p.numel() for p in model.parameters())
    assert sizes["recommender"][1] == total - 3 * layers * adapter - 2 * dense
    names = {id(p): n for n, p in model.named_parameters()}
    by_group = {g["name"]: {names[id(p)] for p in g["params"]} for g in found}
    assert by_group["text head"] == {"item_encoder.towers.intra.text.head.dense.weight",
                                     "item_encoder.towers.intra.text.head.dense.bias"}
    assert by_group["head"] == {"item_encoder.towers.intra.image.head.dense.weight",
                                "item_encoder.towers.intra.image.head.dense.bias"}
    recommender = by_group["recommender"]
    for name in ("intra.text.head.out.weight", "intra.image.head.out.bias", "inter.head.dense.weight",
                 "inter.head.out.bias", "intra_gate_logits", "inter_gate.gate_logits"):
        assert f"item_encoder.towers.{name}" in recommender, name  # bert/cv_pre_fc, fc_mm(_down), gates
    assert all(n in recommender for n in names.values() if not n.startswith("item_encoder"))  # SASRec
    ids = [id(p) for g in found for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(names)  # every parameter exactly once

    # IISAN-E (T+I+V+A): video and audio are on ViT's side; CROSSAN the same without an inter tower
    _, found = groups("iisan-e", "TIVA", "iisan")
    sizes = {g["name"]: sum(p.numel() for p in g["params"]) for g in found}
    assert (sizes["text adapters"], sizes["adapters"], sizes["text head"], sizes["head"]) == (
        layers * adapter, 4 * layers * adapter, dense, 3 * dense)
    _, found = groups("crossan", "TIVA", "iisan")
    sizes = {g["name"]: sum(p.numel() for p in g["params"]) for g in found}
    assert (sizes["adapters"], sizes["head"]) == (3 * layers * adapter, 3 * dense)
    # single: one group, every parameter at lr (today's optimiser)
    model, found = groups("iisan", "TI", "single")
    assert [(g["name"], g["lr"], len(g["params"])) for g in found] == [
        ("all", 2e-4, len(list(model.parameters())))]


def test_lr_groups_and_cached_mixed_precision_are_validated_named_and_used_by_side_adapters_only(
        dataset, tmp_path: Path) -> None:
    assert CONVENTIONS["lr_groups"] == ("single", "iisan")
    with pytest.raises(ConfigError, match="lr_groups must be one of single, iisan, got 'all'"):
        RunConfig(data_dir="d", features_dir="f", out_dir="o", lr_groups="all")
    base = {"training": {}, "catalog": {"a": {"kind": "demo"}}}
    for method in ("crossan", "indsan", "iisan", "iisan-e", "crossan-moda"):
        assert {"lr_groups", "cached_mixed_precision"} <= set(METHODS[method].settings), method
    for method in ("id-sasrec", "popularity", "fft", "adapter", "lora", "freedom"):
        assert not {"lr_groups", "cached_mixed_precision"} & set(method_training(base, "a", method)), method
    run = RunConfig(data_dir="d", features_dir="f", out_dir="o", dataset="demo", lr_groups="iisan")
    assert run_name(run) == "demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0-x" + settings_digest({"lr_groups": "iisan"})
    # a run with IISAN's groups trains, and metrics.json lists the rates
    result = train(config(dataset, tmp_path / "g", method="iisan", modalities="TI", lr=2e-4, max_epochs=1,
                          lr_groups="iisan"))
    metrics = json.loads((tmp_path / "g" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["learning_rates"] == {"recommender": 2e-4, "text adapters": 1e-4, "adapters": 1e-4,
                                         "text head": 5e-5, "head": 1e-4}
    assert result.log[0]["train_loss"] > 0


def test_cached_mixed_precision_leaves_a_cpu_run_bit_identical(dataset, tmp_path: Path) -> None:
    from crossan.train.cached import uses_cached_autocast

    fp32 = train(config(dataset, tmp_path / "a", method="iisan", modalities="TI", max_epochs=1))
    mixed = train(config(dataset, tmp_path / "b", method="iisan", modalities="TI", max_epochs=1,
                         cached_mixed_precision=True))
    assert [r["train_loss"] for r in fp32.log] == [r["train_loss"] for r in mixed.log]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text(encoding="utf-8")) for d in "ab")
    assert a["valid"] == b["valid"] and a["test"] == b["test"] and "precision" not in b
    run = config(dataset, tmp_path / "c", cached_mixed_precision=True)
    assert uses_cached_autocast(run, torch.device("cuda")) and not uses_cached_autocast(run, torch.device("cpu"))
    assert not uses_cached_autocast(config(dataset, tmp_path / "d"), torch.device("cuda"))


def test_the_float16_autocast_path_trains_with_a_grad_scaler(dataset, tmp_path: Path, monkeypatch) -> None:
    """The CUDA path, exercised on the CPU (its float16 autocast and GradScaler): the towers compute
    in float16 and hand float32 to SASRec; the scaler steps; metrics.json says so."""
    from crossan.train import cached

    scalers = []
    real_scaler = torch.amp.GradScaler
    monkeypatch.setattr(cached, "uses_cached_autocast", lambda run, device: run.cached_mixed_precision)
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **k: scalers.append(real_scaler(*a, **k)) or scalers[-1])
    result = train(config(dataset, tmp_path / "m", method="iisan", modalities="TI", max_epochs=1,
                          cached_mixed_precision=True))
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["precision"] == "float16 autocast" and len(scalers) == 1 and scalers[0].get_scale() > 0
    assert math.isfinite(result.log[0]["train_loss"])
    states = load_item_states(dataset[1], "TI", torch.device("cpu"), item_ids=load_sequences(dataset[0], 10).item_ids)
    ids = torch.arange(0, 12)
    full, _ = item_encoder(result.model, states, torch.device("cpu")).for_training()(ids)
    half, _ = item_encoder(result.model, states, torch.device("cpu"), autocast=True).for_training()(ids)
    assert half.dtype == torch.float32 and not torch.equal(half, full)  # computed in float16, returned float32
    assert torch.allclose(half, full, atol=1e-2 * full.abs().max().item())
