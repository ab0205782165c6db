"""config.yaml validation: defaults, and errors that name the offending key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config
from snakemake.utils import update_config

from crossan.config import COMMAND_LINE, ConfigSource, dataset_media, encoder_spec, load_config, validate_config
from crossan.encoders.load import check_encoder_models
from crossan.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def shipped() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


def test_shipped_config_is_valid_and_builds_the_demo(shipped: dict) -> None:
    config = validate_config(shipped)
    assert config["datasets"] == ["demo"]
    assert config["catalog"]["demo"]["kind"] == "demo"
    assert config["catalog"]["microlens-100k"]["variant"] == "100k"
    assert config["training"]["graph_grid"] == GRAPH_GRIDS  # the default: the paper's runs carry no digest


# the graph recommenders' published searches: the default, and what config.yaml shows
GRAPH_GRIDS = {"mmgcn": {"reg_weight": [1e-5, 1e-3, 1e-1]}, "grcn": {"reg_weight": [1e-5, 1e-4, 1e-3, 1e-2]},
               "bm3": {"n_layers": [1, 2], "dropout": [0.3, 0.5], "reg_weight": [0.1, 0.01]},
               "freedom": {"edge_dropout": [0.8, 0.9], "modality_loss_weight": [1e-4, 1e-3]},
               "mgcn": {"cl_weight": [0.001, 0.01, 0.1]}, "mhcr": {"n_hyperedges": [16, 32], "ghc_weight": [0.01, 0.05]}}


def test_defaults_are_filled() -> None:
    config = validate_config({"datasets": ["d"], "catalog": {"d": {"kind": "demo"}}})
    assert config["catalog"]["d"] == {
        "kind": "demo", "users": 1000, "items": 400, "topics": 8, "seed": 0,
        "media": {}, "encoders": {}, "training": {},
    }
    assert config["training"] == {"batch_size": 64, "max_epochs": 50, "patience": 5, "max_len": 10,
                                  "weight_decay": 0, "standardize_states": False, "gpu": 1,
                                  "inter_tower": "residual", "layer0_previous": "zeros",
                                  "sequence_encoder": "microlens", "negatives": "window",
                                  "popularity_smoothing": "none", "repeat_targets": "miss",
                                  "e2e_batch_size": 32, "lora_alpha": 1.0, "gradient_checkpointing": False,
                                  "mixed_precision": True, "eval_batch_size": 256,
                                  "e2e_text_lr": {"fft": 5e-5, "adapter": 4e-4, "lora": 4e-4},
                                  "lora_text_bias_lr": 5e-5, "lora_image_bias_lr": 1e-4,
                                  "lr_groups": "single", "cached_mixed_precision": False,
                                  "e2e_image_lr": {"fft": 1e-4, "adapter": 4e-4, "lora": 4e-4},
                                  "graph_batch_size": 2048, "graph_max_epochs": 1000, "graph_patience": 20,
                                  "graph_layer": -1, "graph_k": 10, "graph_grid": GRAPH_GRIDS,
                                  "graph_negatives": "training", "grcn_routing": "users", "mhcr_final_sum": "fused",
                                  "moda_rank": 8, "moda_experts": 4}
    assert config["runs"] == []
    assert config["device"] == "auto"
    assert config["features"] == {"shards": 1, "chunk_batches": 4, "gpu": 1, "threads": 2}
    assert config["media"]["frames"] == 16
    assert config["media"]["sample_rate"] == 16000
    assert config["sequences"] == {"min_interactions": 5, "max_items": 13, "catalogue": "history"}


def test_dataset_media_overrides_only_what_it_names() -> None:
    config = validate_config(
        {
            "datasets": ["d"],
            "catalog": {"d": {"kind": "demo", "media": {"video_size": 64}}},
            "media": {"workers": 7},
        }
    )
    media = dataset_media(config, "d")
    assert media["video_size"] == 64  # the dataset's own value
    assert media["workers"] == 7  # the global value, not the schema default 2
    assert media["image_size"] == 224  # the schema default


def test_encoder_settings_merge_defaults_global_and_dataset() -> None:
    config = validate_config(
        {
            "datasets": ["d"],
            "catalog": {"d": {"kind": "demo", "encoders": {"audio": {"layers": [0, 1]}}}},
            "encoders": {"audio": {"model": "my/ast", "max_length": 300}},
        }
    )
    assert encoder_spec(config, "d", "audio") == {
        "model": "my/ast", "layers": [0, 1], "batch_size": 8, "max_length": 300,
    }
    assert encoder_spec(config, "d", "text") == {
        "model": "bert-base-uncased", "layers": [0, 2, 4, 6, 8, 10, 12], "batch_size": 64, "max_length": 30,
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["catalog"]["demo"].update(users="many"), "key 'catalog.demo.users': 'many' is not of type 'integer'"),
        (lambda c: c["catalog"]["demo"].update(colour=1), "unknown key 'catalog.demo.colour'"),
        (lambda c: c.update(medai={}), "unknown key 'medai'"),
        (lambda c: c["catalog"]["demo"].update(kind="dem"), "key 'catalog.demo.kind': 'dem' is not one of"),
        (lambda c: c.update(datasets=["nope"]), "key 'datasets': 'nope' is not defined under 'catalog'"),
        (lambda c: c["catalog"]["microlens-100k"].update(variant="10k"), "key 'catalog.microlens-100k.variant'"),
        (lambda c: c["catalog"]["microlens-100k"].pop("url"), "key 'catalog.microlens-100k': 'url' is a required property"),
        (lambda c: c["media"].update(frames=0), "key 'media.frames': 0 is less than the minimum of 1"),
        (lambda c: c["encoders"]["text"].update(layers="all"), "key 'encoders.text.layers': 'all' is not of type 'array'"),
        (lambda c: c["encoders"].update(smell={}), "unknown key 'encoders.smell'"),
        (lambda c: c.update(device="tpu"), "key 'device': 'tpu' is not one of"),
        (lambda c: c["catalog"].update({"bad name": {"kind": "demo"}}), "'bad name' does not match"),
        (lambda c: c["catalog"].update(mine={"kind": "local"}), "key 'catalog.mine': 'data_dir' is a required property"),
        (lambda c: c["experiments"]["table7"].update(topk=[5]), "key 'experiments.table7.topk.0': 5 is greater than"),
        (lambda c: c["experiments"].update(table2={}), "unknown key 'experiments.table2'"),
        (lambda c: c["experiments"]["settings"].update(bitfit={}), "unknown key 'experiments.settings.bitfit'"),
        (lambda c: c["training"].update(e2e_text_lr={"iisan": 1e-4}), "unknown key 'training.e2e_text_lr.iisan'"),
        (lambda c: c["catalog"]["demo"]["experiments"]["figure5"].update(lr=["1e-4"]),
         "key 'catalog.demo.experiments.figure5.lr.0': '1e-4' is not of type 'number'"),
        (lambda c: c["experiments"].update(targets=["table9"]), "key 'experiments.targets.0': 'table9' is not one of"),
        (lambda c: c["training"].update(negatives="all"), "key 'training.negatives': 'all' is not one of ['window', 'targets']"),
        (lambda c: c["catalog"]["demo"]["training"].update(inter_tower="gated"),
         "key 'catalog.demo.training.inter_tower': 'gated' is not one of ['residual', 'convex']"),
        (lambda c: c["training"].update(popularity_smoothing=True), "key 'training.popularity_smoothing': True is not one of"),
    ],
)
def test_errors_name_the_key(shipped: dict, change, expected: str) -> None:
    config = copy.deepcopy(shipped)
    change(config)
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert expected in str(error.value)


def test_shipped_conventions_are_the_reference_code(shipped: dict) -> None:
    """config.yaml spells out each convention with the schema's (reference) default."""
    schema = validate_config({"datasets": ["d"], "catalog": {"d": {"kind": "demo"}}})["training"]
    conventions = ("inter_tower", "layer0_previous", "sequence_encoder", "negatives", "popularity_smoothing",
                   "repeat_targets")
    assert {k: shipped["training"][k] for k in conventions} == {k: schema[k] for k in conventions}


def test_load_config_rejects_a_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def write_model_folder(folder: Path, depth: int) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": depth}))


def test_encoder_models_are_checked_before_any_job(shipped: dict, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # model folders are relative to the working directory, as in the workflow
    write_model_folder(tmp_path / "models" / "bert-small", depth=2)
    (tmp_path / "models" / "vit-unsaved").mkdir()
    shipped["datasets"] = ["demo", "mine"]
    shipped["catalog"]["mine"] = {"kind": "local", "data_dir": "raw", "encoders": {
        "text": {"model": "models/bert-small", "layers": [0, 2, 3]},
        "image": {"model": "models/vit-unsaved"},
        "video": {"model": "models/videomae-not-here"},  # `models/` exists: a folder, not a hub id
    }}
    shipped["catalog"]["demo"]["encoders"]["audio"]["layers"] = [0, 7]
    shipped["encoders"]["audio"]["model"] = "./checkpoints/ast"  # only the dataset mine uses it
    shipped["encoders"]["audio"]["layers"] = [0, 20]
    with pytest.raises(ConfigError) as error:
        check_encoder_models(validate_config(shipped))
    assert str(error.value).splitlines() == [
        "invalid config.yaml:",
        "  key 'catalog.demo.encoders.audio.layers' (dataset 'demo', audio encoder 'resources/models/tiny-demo/ast'): "
        "hidden-state indices [7] out of range; the model has num_hidden_layers=6, so indices 0..6 exist "
        "(0 = embedding output)",
        "  key 'catalog.mine.encoders.text.layers' (dataset 'mine', text encoder 'models/bert-small'): "
        "hidden-state indices [3] out of range; the model has num_hidden_layers=2, so indices 0..2 exist "
        "(0 = embedding output)",
        "  key 'catalog.mine.encoders.image.model' (dataset 'mine', image encoder 'models/vit-unsaved'): "
        "'models/vit-unsaved' has no config.json (save_pretrained writes one)",
        "  key 'catalog.mine.encoders.video.model' (dataset 'mine', video encoder 'models/videomae-not-here'): "
        "model folder 'models/videomae-not-here' does not exist",
        "  key 'encoders.audio.model' (dataset 'mine', audio encoder './checkpoints/ast'): "
        "model folder './checkpoints/ast' does not exist",
    ]

    # Hugging Face ids are left to extraction (their depth needs a download), except for the order
    mine = shipped["catalog"]["mine"]
    mine["encoders"] = {"text": {"model": "bert-base-uncased", "layers": [0, 20]},
                        "image": {"model": "google/vit-base-patch16-224", "layers": [4, 2]}}
    shipped["catalog"]["demo"]["encoders"]["audio"]["layers"] = [0, 6]
    shipped["encoders"]["audio"]["model"] = "MIT/ast-finetuned-audioset-10-10-0.4593"
    with pytest.raises(ConfigError, match=r"^invalid config.yaml:\n  key 'catalog.mine.encoders.image.layers' "
                       r"\(dataset 'mine', image encoder 'google/vit-base-patch16-224'\): indices must be "
                       r"strictly increasing, got \[4, 2\]$"):
        check_encoder_models(validate_config(shipped))
    mine["encoders"]["image"]["layers"] = [2, 4]
    check_encoder_models(validate_config(shipped))
    shipped["datasets"] = ["demo"]  # only the selected datasets are checked
    mine["encoders"]["text"]["model"] = "./nowhere"
    check_encoder_models(validate_config(shipped))


# --------------------------------------------------------------------------- command-line values
# Snakemake reads `--config KEY=VALUE` itself: a nested value arrives as text (YAML's base loader).
def command_line(*entries: str) -> dict:
    return parse_config(list(entries))  # the parser Snakemake itself uses


def overridden(shipped: dict, cli: dict) -> dict:
    config = copy.deepcopy(shipped)
    update_config(config, cli)
    return validate_config(config, sources=[ConfigSource("config.yaml", shipped), ConfigSource(COMMAND_LINE, cli)])


def test_a_nested_numeric_command_line_override_is_typed_validated_and_applied(shipped: dict) -> None:
    cli = command_line("training={max_epochs: 3, weight_decay: 1e-4, standardize_states: true}",
                       "experiments={table1: {seeds: [0, 1]}}")
    assert cli["training"]["max_epochs"] == "3"  # what Snakemake hands over
    config = overridden(shipped, cli)
    assert config["training"]["max_epochs"] == 3 and type(config["training"]["max_epochs"]) is int
    assert config["training"]["weight_decay"] == 1.0e-4
    assert config["training"]["standardize_states"] is True
    assert config["experiments"]["table1"]["seeds"] == [0, 1]
    assert config["training"]["patience"] == 5  # the rest of the block stays as config.yaml has it
    assert config["catalog"]["demo"]["training"]["standardize_states"] is True


def test_a_bad_command_line_value_is_blamed_on_the_command_line(shipped: dict) -> None:
    with pytest.raises(ConfigError) as error:
        overridden(shipped, command_line("training={max_epochs: three, colour: red}"))
    lines = str(error.value).splitlines()
    assert lines[0] == "invalid configuration (config.yaml + --config):"
    assert lines[1].startswith("  unknown key 'training.colour' [from --config]; allowed here: batch_size, ")
    assert lines[2] == "  key 'training.max_epochs': 'three' is not of type 'integer' [from --config]"


def test_a_number_a_config_file_writes_as_text_gets_a_hint_and_its_file(shipped: dict, tmp_path: Path) -> None:
    shipped["training"]["weight_decay"] = "1e-4"  # YAML 1.1 reads 1e-4 as text
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(shipped))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).splitlines()[1] == (
        "  key 'training.weight_decay': '1e-4' is not of type 'number' (YAML reads 1e-4 as text: write 1.0e-4, "
        f"a dot in the mantissa and a signed exponent) [from {path}]")


def test_a_missing_config_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such config file \(pass --config PATH, or run from the repository"):
        load_config(tmp_path / "config.yaml")
