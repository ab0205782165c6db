"""Issue 17's training options: the CMSA auxiliary loss inside CROSSAN / INDSAN / IISAN-E
training, and the shared-tower method ``crossan-moda`` (names, settings, counts, a real run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_trainer import N_ITEMS, config, dataset  # noqa: F401  (dataset is a fixture)

from crossan.cli import main
from crossan.errors import ConfigError
from crossan.models import ModelConfig, build_model, count_trainable
from crossan.models.cmsa import StructuralAlignmentLoss, pairwise_alignment
from crossan.models.moda import SharedMoDASideAdapters
from crossan.models.params import paper_configuration_count
from crossan.runs.identity import changed_settings, parse_run_name, run_name
from crossan.runs.run_config import RunConfig
from crossan.train.cached import item_encoder
from crossan.train.entry import train
from crossan.train.inputs import load_item_states, load_sequences

LAYERS, DIM = 3, 16


def states(modalities: str, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    names = {"T": "text", "I": "image", "V": "video", "A": "audio"}
    return {names[m]: torch.randn(n, LAYERS, DIM, generator=g) for m in modalities}


def small(method: str, modalities: str, align_weight: float = 0.0, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(method=method, modalities=modalities, encoder_dim=DIM, n_layers=LAYERS,
                                   adapter_dim=8, item_dim=8, align_weight=align_weight, **kw))


# ---------------------------------------------------------------- the loss inside the item encoder


@pytest.mark.parametrize("method", ["crossan", "indsan", "iisan-e", "crossan-moda"])
def test_training_encoder_adds_weight_times_pairwise_cmsa_over_real_valid_rows(method: str) -> None:
    """Items = the plain forward's; loss = lambda * the mean over modality pairs of CMSA over
    the rows that are items (not padding) with both media valid; IISAN-E's inter tower is not a
    modality and takes no part."""
    model = small(method, "TIA", align_weight=0.25)
    encoder = model.item_encoder
    x = states("TIA", 7)
    has = {"text": torch.tensor([1, 1, 1, 0, 1, 1, 1], dtype=torch.bool),
           "image": torch.ones(7, dtype=torch.bool),
           "audio": torch.tensor([1, 1, 0, 1, 1, 1, 1], dtype=torch.bool)}
    real = torch.tensor([0, 1, 1, 1, 1, 1, 1], dtype=torch.bool)  # row 0 = padding
    items, loss = encoder.encode_for_training(x, has, real)
    assert torch.equal(items, encoder(x, has))

    outputs = encoder.tower_outputs(x)  # [7, towers, d]
    column = {m: encoder.tower_names.index(m) for m in ("text", "image", "audio")}
    expected = []
    for a, b in (("text", "image"), ("text", "audio"), ("image", "audio")):
        rows = real & has[a] & has[b]
        expected.append(encoder.alignment(outputs[rows, column[a]], outputs[rows, column[b]]))
    assert loss.item() == pytest.approx(0.25 * torch.stack(expected).mean().item(), rel=1e-6)


def test_masked_and_padding_rows_get_no_gradient_from_the_alignment() -> None:
    """The alignment alone (no fusion): a row that is padding, or whose only partner modality is
    invalid, receives exactly zero gradient, the others do not."""
    model = small("crossan", "TI", align_weight=1.0)
    encoder = model.item_encoder
    x = {m: v.requires_grad_() for m, v in states("TI", 6).items()}
    has = {"text": torch.tensor([1, 1, 1, 1, 0, 1], dtype=torch.bool), "image": torch.ones(6, dtype=torch.bool)}
    real = torch.tensor([0, 1, 1, 1, 1, 1], dtype=torch.bool)
    _, loss = encoder.encode_for_training(x, has, real)
    loss.backward()
    for name in ("text", "image"):
        per_row = x[name].grad.abs().sum(dim=(1, 2))
        assert per_row[0] == 0 and per_row[4] == 0  # padding; text invalid for item 4
        assert (per_row[[1, 2, 3, 5]] > 0).all()
    assert encoder.alignment.log_tau.grad is not None and encoder.alignment.log_tau.grad != 0


def test_off_by_default_no_module_no_loss() -> None:
    model = small("crossan", "TI")
    assert model.item_encoder.alignment is None
    items, loss = model.item_encoder.encode_for_training(states("TI", 4), None, torch.ones(4, dtype=torch.bool))
    assert loss is None and items.shape == (4, 8)


def test_alignment_adds_exactly_one_trainable_parameter_tau() -> None:
    off, on = small("crossan", "TIVA"), small("crossan", "TIVA", align_weight=0.1)
    assert count_trainable(on) == count_trainable(off) + 1
    assert isinstance(on.item_encoder.alignment, StructuralAlignmentLoss)
    assert on.item_encoder.alignment.tau.item() == pytest.approx(3.0)
    assert small("crossan", "TI", align_weight=0.1, align="infonce").item_encoder.alignment.kind == "infonce"


def test_pairwise_alignment_is_what_the_encoder_uses() -> None:
    """The encoder's loss is crossan.models.cmsa.pairwise_alignment (the tested function), not a copy."""
    model = small("crossan", "TI", align_weight=1.0)
    encoder = model.item_encoder
    x = states("TI", 5, seed=3)
    _, loss = encoder.encode_for_training(x, None, torch.ones(5, dtype=torch.bool))
    out = encoder.tower_outputs(x)
    ones = torch.ones(5, dtype=torch.bool)
    direct = pairwise_alignment({"text": out[:, 0], "image": out[:, 1]}, {"text": ones, "image": ones},
                                encoder.alignment)
    assert loss.item() == pytest.approx(direct.item(), rel=1e-6)


# ---------------------------------------------------------------- run names and settings


def test_align_is_a_name_field_written_only_when_on() -> None:
    base = dict(data_dir="", features_dir="", out_dir="", dataset="demo", modalities="TI", lr=1e-3)
    off = RunConfig(**base)
    on = RunConfig(**base, align_weight=0.1)
    nce = RunConfig(**base, align="infonce", align_weight=0.5)
    assert run_name(off) == "demo__crossan-TI-momef-k2-h512-lr1e-03-s0"  # existing names stay valid
    assert run_name(on) == "demo__crossan-TI-momef-k2-h512-lr1e-03-cmsa1e-01-s0"
    assert run_name(nce) == "demo__crossan-TI-momef-k2-h512-lr1e-03-infonce5e-01-s0"
    for run in (off, on, nce):
        fields = parse_run_name(run_name(run))
        assert (fields["align"], fields["align_weight"]) == (run.align, run.align_weight)
        assert run_name(RunConfig(**{**base, **fields})) == run_name(run)
    # off: one canonical spelling, whatever kind was given
    assert RunConfig(**base, align="infonce") == off
    assert not changed_settings(on)  # a name field, not a digested setting


def test_align_is_refused_where_there_are_no_towers() -> None:
    for method in ("id-sasrec", "popularity", "mmgcn", "fft"):
        with pytest.raises(ConfigError, match="align_weight applies to the side-adapter methods"):
            RunConfig(data_dir="", features_dir="", out_dir="", dataset="demo", method=method,
                      modalities="TI", align_weight=0.1)
    with pytest.raises(ConfigError, match="align_weight must be a number >= 0"):
        RunConfig(data_dir="", features_dir="", out_dir="", dataset="demo", align_weight=-1.0)
    with pytest.raises(ConfigError, match="align must be one of"):
        RunConfig(data_dir="", features_dir="", out_dir="", dataset="demo", align="l2", align_weight=1.0)


def test_moda_rank_and_experts_are_settings_of_crossan_moda_only() -> None:
    base = dict(data_dir="", features_dir="", out_dir="", dataset="demo")
    moda = RunConfig(**base, method="crossan-moda", moda_rank=16)
    assert changed_settings(moda) == {"moda_rank": 16}
    assert run_name(RunConfig(**base, method="crossan", moda_rank=16)) == "demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0"
    assert run_name(RunConfig(**base, method="crossan-moda")) == "demo__crossan-moda-TIVA-momef-k2-h512-lr1e-04-s0"
    with pytest.raises(ConfigError, match="moda_rank 6 must be a multiple of moda_experts 4"):
        RunConfig(**base, method="crossan-moda", moda_rank=6)


# ---------------------------------------------------------------- parameter counts


def test_shared_tower_count_at_the_papers_configuration_is_its_formula() -> None:
    """crossan-moda T+I+V+A at h=512: SharedMoDASideAdapters.count + MOMEF + SASRec, the same
    MOMEF and SASRec as CROSSAN's (whose towers are 4 x 6,153,792 plus 140 gate logits)."""
    crossan = paper_configuration_count("crossan", "TIVA", 512)
    shared = paper_configuration_count("crossan-moda", "TIVA", 512)
    rest = crossan - 4 * 6_153_792 - 140  # MOMEF + SASRec
    assert shared == SharedMoDASideAdapters.count(4, 768, 512, 7, 64, rank=8, n_experts=4) + rest
    assert shared == 6_417_032
    assert crossan - shared == 18_316_168  # 74.1% fewer
    # audio costs CROSSAN a whole tower (6,153,792) plus gate logits and MOMEF's growth, which
    # the shared tower pays too, plus one 16-d gate row in each of 7 layers x 2 expert sets
    grow_crossan = crossan - paper_configuration_count("crossan", "TIV", 512)
    grow_shared = shared - paper_configuration_count("crossan-moda", "TIV", 512)
    assert grow_shared == grow_crossan - 6_153_792 + 7 * 2 * 16 == 4_889


def test_params_cli_for_the_shared_tower(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "--method", "crossan-moda"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("method=crossan-moda modalities=TIVA hidden=512 fusion=momef")
    assert "moda_rank=8 moda_experts=4" in out[0]
    assert out[-1] == "6417032"
    assert main(["params", "--method", "crossan-moda", "--moda-rank", "16"]) == 0
    assert int(capsys.readouterr().out.strip().splitlines()[-1]) > 6_417_032


# ---------------------------------------------------------------- real runs


def test_a_cmsa_run_trains_records_tau_and_is_deterministic(dataset, tmp_path: Path) -> None:  # noqa: F811
    first = train(config(dataset, tmp_path / "a", modalities="TI", align_weight=0.5))
    again = train(config(dataset, tmp_path / "b", modalities="TI", align_weight=0.5))
    plain = train(config(dataset, tmp_path / "c", modalities="TI"))
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text(encoding="utf-8"))
    alignment = metrics["alignment"]
    assert alignment["align"] == "cmsa" and alignment["weight"] == 0.5
    assert len(alignment["loss_per_epoch"]) == metrics["epochs_run"]
    assert all(value > 0 for value in alignment["loss_per_epoch"])
    assert alignment["tau"] != pytest.approx(3.0, abs=1e-6)  # learned
    assert metrics["trainable_parameters"] == plain.metrics.trainable_parameters + 1
    assert [r["train_loss"] for r in first.log] == [r["train_loss"] for r in again.log]
    assert first.metrics.test == again.metrics.test
    assert [r["train_loss"] for r in first.log] != [r["train_loss"] for r in plain.log]
    assert "alignment" not in plain.metrics.extra
    assert "-lr1e-03-cmsa5e-01-s0-x" in metrics["run_name"]  # the test settings give a digest


def test_training_encoder_marks_padding_as_not_real(dataset) -> None:  # noqa: F811
    data_dir, features = dataset
    data = load_sequences(data_dir, 10)
    item_states = load_item_states(features, "TI", torch.device("cpu"), item_ids=data.item_ids)
    model = build_model(ModelConfig(method="crossan", modalities="TI", encoder_dim=item_states.hidden,
                                    n_layers=item_states.n_layers, adapter_dim=8, item_dim=8, align_weight=1.0))
    encode = item_encoder(model, item_states, torch.device("cpu")).train
    seen = {}
    real_method = model.item_encoder.encode_for_training

    def spy(gathered, available, real):
        seen["real"] = real.clone()
        return real_method(gathered, available, real)

    model.item_encoder.encode_for_training = spy
    items, loss = encode(torch.tensor([0, 3, 5, 7]))
    assert seen["real"].tolist() == [False, True, True, True]
    assert items.shape == (4, 8) and loss is not None and loss.item() > 0


def test_a_shared_tower_run_trains_with_gates_and_paper_size(dataset, tmp_path: Path) -> None:  # noqa: F811
    result = train(config(dataset, tmp_path / "moda", method="crossan-moda", modalities="TIV"))
    metrics = result.metrics
    assert metrics.method == "crossan-moda"
    assert metrics.extra["paper_configuration_parameters"] == paper_configuration_count("crossan-moda", "TIV", 8)
    gates = json.loads((tmp_path / "moda" / "gates.json").read_text(encoding="utf-8"))["towers"]
    assert list(gates) == ["text", "image", "video"]
    for tower in gates.values():
        assert tower["sources"] == ["H", "T", "I", "V"]
        for row in tower["values"]:
            assert sum(row) == pytest.approx(1.0, abs=1e-6)
    crossan = train(config(dataset, tmp_path / "crossan", modalities="TIV"))
    assert metrics.trainable_parameters < crossan.metrics.trainable_parameters
    assert metrics.n_items == N_ITEMS
