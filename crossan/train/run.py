"""Run names and ``crossan train``.

A run's directory name encodes everything that distinguishes it in the paper's tables::

    {dataset}__{method}-{modalities}-{fusion}-k{topk}-h{hidden}-lr{lr}-s{seed}
    demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0
    microlens-100k__iisan-e-TIVA-concat-k2-h1024-lr1e-04-s1
    demo__id-sasrec-none-none-k2-h512-lr1e-03-s0      (no content: modalities "none")

``fusion`` is the resolved one (the method's default when none was given), ``lr`` is written
in exponent form with as many mantissa digits as it needs (``1e-04``, ``2.5e-04``), so
:func:`parse_run_name` gives back exactly the same values. The dataset is separated by
``__`` (two underscores, never used by the rest), so dataset names may contain ``-`` and
``_``. ``RunConfig(**parse_run_name(name), data_dir=..., features_dir=..., out_dir=...)``
rebuilds the configuration of a name; batch size, epochs, patience and device are not part
of it (they are the same for every run of an experiment, from ``config.yaml``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from crossan.argtypes import non_negative_int, positive_float, positive_int
from crossan.errors import ConfigError

SEPARATOR = "__"
_METHOD_PATTERN = "crossan|indsan|iisan-e|iisan|id-sasrec|popularity"
_NAME = re.compile(
    rf"^(?P<dataset>.+?){SEPARATOR}(?P<method>{_METHOD_PATTERN})-(?P<modalities>[TIVA]+|none)"
    r"-(?P<fusion>[a-z]+)-k(?P<topk>\d+)-h(?P<hidden>\d+)"
    r"-lr(?P<lr>\d+(?:\.\d+)?e[+-]\d+)-s(?P<seed>\d+)$"
)


def format_lr(lr: float) -> str:
    """``1e-4 -> "1e-04"``, ``2.5e-4 -> "2.5e-04"``: exponent form, shortest exact mantissa."""
    for digits in range(17):
        text = f"{lr:.{digits}e}"
        if float(text) == lr:
            return text
    return f"{lr:.16e}"


def run_name(config: Any) -> str:
    """The run directory name of a :class:`~crossan.train.trainer.RunConfig` (see the module
    docstring)."""
    dataset = config.dataset
    if not dataset or "/" in dataset or SEPARATOR in dataset or dataset.endswith("_") or dataset != dataset.strip():
        raise ConfigError(f"dataset name {dataset!r} cannot be part of a run name "
                          f"(no '/', no '{SEPARATOR}', no trailing '_' or spaces)")
    return (
        f"{dataset}{SEPARATOR}{config.method}-{config.modalities or 'none'}-{config.resolved_fusion()}"
        f"-k{config.topk}-h{config.hidden}-lr{format_lr(config.lr)}-s{config.seed}"
    )


def parse_run_name(name: str) -> dict[str, Any]:
    """Inverse of :func:`run_name`: ``{"dataset", "method", "modalities", "fusion", "topk",
    "hidden", "lr", "seed"}`` with the :class:`RunConfig` types (``modalities`` ``""`` for
    ``none``). Accepts a path: only its last component is read."""
    match = _NAME.match(Path(name).name)
    if match is None:
        raise ConfigError(
            f"{name!r} is not a run name like "
            "'demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0' "
            "({dataset}__{method}-{modalities}-{fusion}-k{topk}-h{hidden}-lr{lr}-s{seed})"
        )
    parts = match.groupdict()
    return {
        "dataset": parts["dataset"],
        "method": parts["method"],
        "modalities": "" if parts["modalities"] == "none" else parts["modalities"],
        "fusion": parts["fusion"],
        "topk": int(parts["topk"]),
        "hidden": int(parts["hidden"]),
        "lr": float(parts["lr"]),
        "seed": int(parts["seed"]),
    }


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``crossan train``: one run, its outputs in ``--out``."""
    from crossan.models.fusion import FUSIONS
    from crossan.train.trainer import CONVENTIONS, DEVICES, RUN_METHODS

    parser = subparsers.add_parser(
        "train", help="train and evaluate one configuration (or the popularity baseline)",
        description="Train one configuration on cached states, early-stop on validation HR@10, "
        "evaluate test at the best epoch; writes metrics.json (last), per_user_{valid,test}."
        "parquet, gates.json, item_towers.h5 and train_log.csv into --out.",
    )
    parser.add_argument("--data", required=True, type=Path, help="results/{dataset}/data")
    parser.add_argument("--features", type=Path, default=None,
                        help="results/{dataset}/features (not needed for id-sasrec/popularity)")
    parser.add_argument("--out", required=True, type=Path, help="run directory")
    parser.add_argument("--run", default=None, metavar="NAME",
                        help="a run name such as demo__crossan-TIVA-momef-k2-h512-lr1e-04-s0: "
                        "dataset, method, modalities, fusion, top-k, hidden, lr and seed from it "
                        "(then none of those flags may be given)")
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
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--standardize-states", action="store_true",
                        help="z-score each cached (layer, dim) over the items first (the demo's "
                        "random encoders need it; the paper feeds raw states)")
    parser.add_argument("--seed", type=non_negative_int, default=None, help="default 0")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--max-epochs", type=positive_int, default=50)
    parser.add_argument("--patience", type=positive_int, default=5)
    parser.add_argument("--max-len", type=positive_int, default=10)
    parser.add_argument("--device", choices=DEVICES, default="auto")
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
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for torch (default: torch's own). The same seed gives "
                        "the same numbers for the same thread count; the workflow passes 1.")
    parser.set_defaults(func=_run_cli)


NAME_DEFAULTS: dict[str, Any] = {
    "dataset": "", "method": "crossan", "modalities": "TIVA", "fusion": None, "topk": 2,
    "hidden": 512, "lr": 1e-4, "seed": 0,
}


def _name_fields(args: argparse.Namespace) -> None:
    """Fill the run-name fields of ``args`` from ``--run`` or from the defaults."""
    given = [key for key in NAME_DEFAULTS if getattr(args, key) is not None]
    if args.run is None:
        for key, default in NAME_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, default)
        return
    if given:
        flags = ", ".join(f"--{key}" for key in given)
        raise ConfigError(f"--run {args.run} already fixes {flags}; drop them or drop --run")
    for key, value in parse_run_name(args.run).items():
        setattr(args, key, value)
    if Path(args.out).name != args.run:
        raise ConfigError(f"--out {args.out} must be a folder named {args.run} (the run's name)")


def _run_cli(args: argparse.Namespace) -> int:
    import torch

    from crossan.train.trainer import CONVENTIONS, POPULARITY, RunConfig, train

    _name_fields(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.features is None and args.method not in ("id-sasrec", POPULARITY):
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
        **{name: getattr(args, name) for name in CONVENTIONS},
    )
    if args.run is not None and run_name(run) != args.run:
        raise ConfigError(f"--run {args.run} is not canonical: the same run is named {run_name(run)}")
    result = train(run)
    test = result.test
    print(f"{run_name(run)}: best epoch {result.best_epoch}, test HR@10 {test['HR@10']:.4f} "
          f"NDCG@10 {test['NDCG@10']:.4f} HR@20 {test['HR@20']:.4f} NDCG@20 {test['NDCG@20']:.4f}")
    return 0
