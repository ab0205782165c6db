"""``crossan train``: one run, named by :mod:`crossan.train.names`, trained by
:func:`crossan.train.entry.train`; ``crossan run-name``: a run's name under ``config.yaml``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from crossan.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from crossan.config import load_config
from crossan.errors import ConfigError
from crossan.models.e2e import E2E_METHODS, E2E_MODALITIES
from crossan.models.graph import GRAPH_METHODS
from crossan.models.recommender import ALIGNMENTS
from crossan.train.identity import changed_settings, describe_changed
from crossan.train.names import name_digest, parse_run_name, run_name
from crossan.train.plan import configured_run


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``crossan train``: one run, its outputs in ``--out``."""
    from crossan.models.fusion import FUSIONS
    from crossan.train.trainer import CONVENTIONS, DEVICES, RUN_METHODS

    parser = subparsers.add_parser(
        "train", help="train and evaluate one configuration (or the popularity baseline)",
        description="Train one configuration (on cached states, with the encoders in the loop "
        "for fft, adapter and lora, or a graph recommender on the training graph), early-stop on validation HR@10, evaluate test at the best "
        "epoch; writes metrics.json (last), per_user_{valid,test}.parquet, gates.json, "
        "item_towers.h5 and train_log.csv into --out.",
    )
    parser.add_argument("--data", required=True, type=Path, help="results/{dataset}/data")
    parser.add_argument("--features", type=Path, default=None,
                        help="results/{dataset}/features (cached-state methods only)")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--run", default=None, metavar="NAME",
                        help="a run name such as demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0: "
                        "dataset, method, modalities, fusion, top-k, hidden, lr and seed from it "
                        "(then none of those flags may be given); a -x digest at its end must be "
                        "the one of the settings flags given (crossan run-name prints the name)")
    # default None = not given, so --run can refuse a contradicting flag (NAME_DEFAULTS below)
    parser.add_argument("--dataset", default=None, help="name in the run name (default: --data's parent)")
    parser.add_argument("--method", choices=RUN_METHODS, default=None, help="default crossan")
    parser.add_argument("--modalities", default=None, help="letters from TIVA (default TIVA)")
    parser.add_argument("--fusion", choices=(*FUSIONS, "none"), default=None,
                        help="default: the method's own")
    parser.add_argument("--topk", type=positive_int, default=None, help="MOMEF's k (default 2)")
    parser.add_argument("--hidden", type=positive_int, default=None,
                        help="adapter bottleneck h (default 512)")
    parser.add_argument("--lr", type=positive_float, default=None, help="default 1e-4")
    _add_alignment_flags(parser, defaults=None)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--standardize-states", action="store_true",
                        help="z-score each cached (layer, dim) over the items first; fft, adapter, "
                        "lora: z-score each encoder's [CLS] with its step-0 statistics (the demo's "
                        "random encoders need it; the paper feeds raw states)")
    parser.add_argument("--seed", type=non_negative_int, default=None, help="default 0")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="users per batch (default 64; fft, adapter, lora 32); graph recommenders: "
                        "training pairs (2048)")
    parser.add_argument("--max-epochs", type=positive_int, default=None, help="default 50; graph recommenders 1000")
    parser.add_argument("--patience", type=positive_int, default=None, help="default 5; graph recommenders 20")
    parser.add_argument("--max-len", type=positive_int, default=10)
    parser.add_argument("--device", choices=DEVICES, default="auto")
    e2e = parser.add_argument_group(
        "end-to-end methods (fft, adapter, lora)",
        "BERT and ViT in the training loop; --lr is the recommender's learning rate")
    e2e.add_argument("--media", type=Path, default=None, help="results/{dataset}/media (for image.h5)")
    e2e.add_argument("--text-model", default=None, help="BERT checkpoint: Hugging Face id or folder")
    e2e.add_argument("--image-model", default=None, help="ViT checkpoint: Hugging Face id or folder")
    e2e.add_argument("--text-max-length", type=positive_int, default=30, help="WordPiece tokens per title")
    e2e.add_argument("--text-lr", type=positive_float, default=None,
                     help="learning rate of the text encoder's trainable weights (default --lr)")
    e2e.add_argument("--image-lr", type=positive_float, default=None,
                     help="learning rate of the image encoder's trainable weights (default --lr)")
    e2e.add_argument("--lora-alpha", type=positive_float, default=1.0,
                     help="LoRA scale numerator: updates are scaled by alpha/rank (default 1, IISAN's)")
    e2e.add_argument("--gradient-checkpointing", action="store_true",
                     help="recompute the encoders' activations in the backward pass (less memory)")
    e2e.add_argument("--mixed-precision", choices=("on", "off"), default="on",
                     help="on CUDA: bfloat16 autocast where supported, else float16 + grad scaler")
    e2e.add_argument("--eval-batch-size", type=positive_int, default=256,
                     help="items through the encoders at once during evaluation")
    graph = parser.add_argument_group(
        "graph recommenders (mmgcn, grcn, bm3, freedom, mgcn, mhcr)",
        "--batch-size counts training pairs; --features gives the item content")
    graph.add_argument("--graph", type=Path, default=None, help="the dataset's graph file (crossan graph)")
    graph.add_argument("--grid", type=_json_grid, default={}, metavar="JSON",
                       help='model parameters tried, selected on validation, e.g. \'{"reg_weight": [0, 1e-4]}\'')
    graph.add_argument("--graph-layer", type=int, default=-1,
                       help="the kept layer --graph was built on (crossan graph --layer; default -1): "
                       "part of the run's identity, not read")
    graph.add_argument("--graph-k", type=positive_int, default=10,
                       help="the kNN k --graph was built with (crossan graph --k; default 10): part of "
                       "the run's identity, not read")
    conventions = parser.add_argument_group(
        "conventions where the paper is silent",
        "defaults = IISAN's and MicroLens' code; the other value = our earlier rule (README)")
    helps = {
        "inter_tower": "IISAN/IISAN-E inter tower: previous output at weight 1 plus a gated sum, or "
                       "a convex combination",
        "layer0_previous": "what the adapters read as the previous output before layer 0",
        "sequence_encoder": "SASRec layout: ReLU FFN and LayerNorm eps 1e-6, or GELU and eps 1e-5",
        "negatives": "loss candidates: every window item (first input included), or the targets only",
        "popularity_smoothing": "log-popularity from raw training counts, or add-one smoothed",
        "repeat_targets": "a target repeated from the history: a miss (masked), or ranked",
    }
    for name, choices in CONVENTIONS.items():
        conventions.add_argument("--" + name.replace("_", "-"), choices=choices, default=choices[0],
                                 help=f"{helps[name]} (default {choices[0]})")
    moda = parser.add_argument_group("crossan-moda", "the shared tower's modality-gated low-rank experts")
    moda.add_argument("--moda-rank", type=positive_int, default=8,
                      help="total rank of each adapter projection's experts (default 8)")
    moda.add_argument("--moda-experts", type=positive_int, default=4,
                      help="experts per projection; must divide --moda-rank (default 4)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: torch's own). The same seed gives "
                        "the same numbers for the same thread count; the workflow passes 1.")
    parser.set_defaults(func=_run_cli)

    name = subparsers.add_parser(
        "run-name", help="the folder name of one run under config.yaml's training settings",
        description="Print the name of a run (results/{dataset}/runs/NAME/metrics.json asks Snakemake "
        "for it): the fields its method uses, then -x and a digest of the dataset's training settings "
        "that the method uses and that differ from the defaults.",
    )
    name.add_argument("--config", type=Path, default=Path("config.yaml"))
    name.add_argument("--dataset", default="demo")
    name.add_argument("--method", choices=RUN_METHODS, default="crossan")
    name.add_argument("--modalities", default=None, help="letters from TIVA (default TIVA; TI for fft, adapter, lora)")
    name.add_argument("--fusion", choices=(*FUSIONS, "none"), default=None, help="default: the method's own")
    name.add_argument("--topk", type=positive_int, default=NAME_DEFAULTS["topk"])
    name.add_argument("--hidden", type=positive_int, default=NAME_DEFAULTS["hidden"])
    name.add_argument("--lr", type=positive_float, default=NAME_DEFAULTS["lr"])
    name.add_argument("--seed", type=non_negative_int, default=NAME_DEFAULTS["seed"])
    _add_alignment_flags(name, defaults=NAME_DEFAULTS)
    name.set_defaults(func=_run_name_cli)


def _add_alignment_flags(parser: argparse.ArgumentParser, defaults: dict[str, Any] | None) -> None:
    """``--align``/``--align-weight``: the auxiliary tower-alignment loss (a name field)."""
    parser.add_argument("--align", choices=ALIGNMENTS, default=defaults and defaults["align"],
                        help="alignment loss between the modality towers' outputs: cmsa (SDA's structural "
                        "alignment) or infonce (default cmsa; on only with --align-weight > 0)")
    parser.add_argument("--align-weight", type=non_negative_float, default=defaults and defaults["align_weight"],
                        help="its weight lambda in the training loss (default 0: off)")


def _json_grid(text: str) -> dict[str, list[Any]]:
    """``--grid``: a JSON object of parameter -> list of values."""
    try:
        grid = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from error
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise argparse.ArgumentTypeError('expected an object of non-empty lists, e.g. {"reg_weight": [0, 1e-4]}')
    return grid


# --batch-size, --max-epochs, --patience when not given: the sequential models' (IISAN's), IISAN
# Code_Uncached's for the end-to-end ones and MMRec's for the graph recommenders (the schema's
# training defaults, so that a run by hand with none of them has no settings digest for them)
LOOP_DEFAULTS: dict[str, dict[str, int]] = {
    "sequential": {"batch_size": 64, "max_epochs": 50, "patience": 5},
    "end_to_end": {"batch_size": 32, "max_epochs": 50, "patience": 5},
    "graph": {"batch_size": 2048, "max_epochs": 1000, "patience": 20},
}


NAME_DEFAULTS: dict[str, Any] = {
    "dataset": "", "method": "crossan", "modalities": "TIVA", "fusion": None, "topk": 2,
    "hidden": 512, "lr": 1e-4, "seed": 0, "align": "cmsa", "align_weight": 0.0,
}


def _name_fields(args: argparse.Namespace) -> None:
    """Fill the run-name fields of ``args`` from ``--run`` or from the defaults."""
    given = [key for key in NAME_DEFAULTS if getattr(args, key) is not None]
    if args.run is None:
        for key, default in NAME_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, default)
        if "modalities" not in given and args.method in E2E_METHODS:
            args.modalities = E2E_MODALITIES  # the end-to-end methods are text+image only
        return
    if given:
        flags = ", ".join(f"--{key}" for key in given)
        raise ConfigError(f"--run {args.run} already fixes {flags}; drop them or drop --run")
    for key, value in parse_run_name(args.run).items():
        setattr(args, key, value)
    if Path(args.out).name != args.run:
        raise ConfigError(f"--out {args.out} must be a folder named {args.run} (the run's name)")


def _run_name_cli(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.dataset not in config["catalog"]:
        raise ConfigError(f"dataset {args.dataset!r} is not under catalog in {args.config}")
    modalities = args.modalities or (E2E_MODALITIES if args.method in E2E_METHODS else NAME_DEFAULTS["modalities"])
    run = configured_run(config, args.dataset, args.method, modalities=modalities, fusion=args.fusion,
                         topk=args.topk, hidden=args.hidden, lr=args.lr, seed=args.seed,
                         align=args.align, align_weight=args.align_weight)
    print(run_name(run))
    return 0


def _run_cli(args: argparse.Namespace) -> int:
    import torch

    from crossan.train.entry import train
    from crossan.train.trainer import CONVENTIONS, POPULARITY, RunConfig

    _name_fields(args)
    family = "graph" if args.method in GRAPH_METHODS else "end_to_end" if args.method in E2E_METHODS else "sequential"
    loop = LOOP_DEFAULTS[family]
    for key, default in loop.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.features is None and args.method not in ("id-sasrec", POPULARITY, *E2E_METHODS):
        raise ConfigError(f"--features is required for method {args.method}")
    run = RunConfig(
        data_dir=args.data,
        features_dir=args.features or "",
        out_dir=args.out,
        dataset=args.dataset,
        method=args.method,
        modalities=args.modalities,
        fusion=args.fusion,
        topk=args.topk,
        hidden=args.hidden,
        lr=args.lr,
        seed=args.seed,
        batch_size=args.batch_size,
        max_epochs=args.max_epochs,
        patience=args.patience,
        max_len=args.max_len,
        device=args.device,
        weight_decay=args.weight_decay,
        standardize_states=args.standardize_states,
        media_dir=args.media or "",
        text_model=args.text_model or "",
        image_model=args.image_model or "",
        text_max_length=args.text_max_length,
        text_lr=args.text_lr,
        image_lr=args.image_lr,
        lora_alpha=args.lora_alpha,
        gradient_checkpointing=args.gradient_checkpointing,
        mixed_precision=args.mixed_precision == "on",
        eval_batch_size=args.eval_batch_size,
        graph_file=args.graph or "",
        graph_grid=args.grid,
        graph_layer=args.graph_layer,
        graph_k=args.graph_k,
        align=args.align,
        align_weight=args.align_weight,
        moda_rank=args.moda_rank,
        moda_experts=args.moda_experts,
        **{name: getattr(args, name) for name in CONVENTIONS},
    )
    if args.run is not None and run_name(run) != args.run:
        if name_digest(args.run) != name_digest(run_name(run)):
            changed = describe_changed(changed_settings(run)) or "none"
            raise ConfigError(f"--run {args.run}: its settings digest is not the one of the settings given "
                              f"(those other than the defaults: {changed}); with them the run is named "
                              f"{run_name(run)}")
        raise ConfigError(f"--run {args.run} is not canonical: the same run is named {run_name(run)}")
    result = train(run)
    test = result.test
    print(f"{run_name(run)}: best epoch {result.best_epoch}, test HR@10 {test['HR@10']:.4f} "
          f"NDCG@10 {test['NDCG@10']:.4f} HR@20 {test['HR@20']:.4f} NDCG@20 {test['NDCG@20']:.4f}")
    return 0
