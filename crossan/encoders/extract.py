"""``crossan extract-features`` / ``merge-features``: run a frozen encoder once over every item
and cache the pooled hidden state of each kept layer (stage 1b).

Per modality one file (layout in :mod:`crossan.encoders.store`): ``features`` float16
``[n + 1, n_layers, hidden]``, the media stage's ``valid``/``reason`` carried over. Invalid
media items never reach the model (zeros, ``valid`` False).

Batching is by absolute item position: batch ``j`` is items ``1 + j * batch_size ..``, minus
its invalid items, and chunk ``c`` is batches ``c * chunk_batches ..``. Shards are contiguous
runs of whole batches. So which items share a forward pass never depends on sharding or on
where a run resumed, and a resumed or sharded-and-merged file is bit-identical to one
uninterrupted run (same device type, autocast and batch size, which the config hash pins).

Each chunk is written to ``name.h5.partial`` and committed (data flushed, then its done flags
flushed); a killed run resumes after its last committed chunk. A partial file made under
another config hash is discarded with a logged reason. The finished file is renamed into
place. Inputs of the next batches are read and prepared in a background thread while the
model runs.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

import crossan
from crossan.encoders import inputs as inputs_module
from crossan.encoders import store as feature_store
from crossan.encoders.load import MODALITIES, Encoder, load_encoder, resolve_device
from crossan.encoders.options import AUTOCAST
from crossan.encoders.pooling import (
    DEFAULT_LAYERS,
    POOLING,
    POOLING_RULES,
    pool,
    validate_layers,
)
from crossan.errors import ConfigError
from crossan.kill_point import pause_after
from crossan.media.store import PartialStore, is_current
from crossan.progress import Progress

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the meaning of stored numbers changes
# Test hook (crossan.kill_point): pause after this many committed chunks.
PAUSE_ENV = "CROSSAN_FEATURES_TEST_PAUSE_AFTER_CHUNKS"
PREFETCH_BATCHES = 2
HIDDEN_STATES_NOTE = (
    "output_hidden_states[i] (0 = embedding output), the raw residual stream before any "
    "final LayerNorm"
)


@dataclass
class ExtractReport:
    """What :func:`extract` did."""

    modality: str
    path: str
    config_hash: str
    first_row: int
    items: int  # items in this file
    valid: int = 0
    empty_titles: int = 0
    chunks: int = 0
    chunks_resumed: int = 0  # committed by an earlier, interrupted run
    chunks_computed: int = 0
    items_computed: int = 0  # items run through the model by this run
    up_to_date: bool = False  # the final file already matched: nothing done
    discarded_partial: str | None = None
    device: str = ""
    seconds: float = 0.0


# ---------------------------------------------------------------- planning


def batch_count(total_items: int, batch_size: int) -> int:
    return -(-total_items // batch_size)


def shard_rows(total_items: int, batch_size: int, shard: int, num_shards: int) -> tuple[int, int]:
    """``(first_row, stop_row)`` of shard ``shard`` of ``num_shards``: a contiguous run of
    whole batches (the last batch may be short), balanced to within one batch; may be empty
    when there are fewer batches than shards."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ConfigError(f"shard must be in 0..num_shards-1, got {shard} of {num_shards}")
    batches = batch_count(total_items, batch_size)
    begin, end = shard * batches // num_shards, (shard + 1) * batches // num_shards
    first = 1 + begin * batch_size
    stop = min(1 + end * batch_size, total_items + 1)
    return first, max(first, stop)


def chunk_ranges(
    first: int, stop: int, batch_size: int, chunk_batches: int
) -> list[tuple[int, int]]:
    """The absolute chunks (runs of ``chunk_batches`` batches, counted from item 1) that meet
    ``[first, stop)``, clipped to it."""
    span = batch_size * chunk_batches
    chunks = []
    for begin in range(1 + (first - 1) // span * span, stop, span):
        lo, hi = max(begin, first), min(begin + span, stop)
        if lo < hi:
            chunks.append((lo, hi))
    return chunks


def batch_ranges(first: int, stop: int, batch_size: int) -> list[tuple[int, int]]:
    """Absolute batches (``batch_size`` items counted from item 1) inside ``[first, stop)``."""
    begin = 1 + (first - 1) // batch_size * batch_size
    return [
        (max(lo, first), min(lo + batch_size, stop)) for lo in range(begin, stop, batch_size)
    ]


# ---------------------------------------------------------------- running the model


def autocast_context(device: torch.device, autocast: str) -> Any:
    """Mixed precision on CUDA only; CPU runs in float32."""
    # deferred: torch takes ~2 s to import; merge-features (this module too) never needs it
    import torch

    if device.type != "cuda" or autocast == "off":
        return nullcontext()
    return torch.autocast("cuda", dtype=getattr(torch, autocast))


def forward_pooled(
    encoder: Encoder,
    model_inputs: dict[str, torch.Tensor],
    layers: Sequence[int],
    device: torch.device,
    autocast: str,
) -> np.ndarray:
    """float16 ``[B, len(layers), hidden]``: the pooled kept hidden states of one batch."""
    # deferred: torch takes ~2 s to import; merge-features (this module too) never needs it
    import torch

    with torch.inference_mode(), autocast_context(device, autocast):
        output = encoder.model(**model_inputs, output_hidden_states=True)
        pooled = pool(output.hidden_states, layers, POOLING[encoder.modality])
    return pooled.to(torch.float16).cpu().numpy()


def _prefetched(
    source: inputs_module.Source,
    builder: inputs_module.InputBuilder,
    batches: list[tuple[int, int]],
) -> Generator[tuple[inputs_module.RawBatch, dict[str, torch.Tensor] | None], None, None]:
    """Read and prepare ``batches`` in order, ``PREFETCH_BATCHES`` ahead in one thread."""

    def load(bounds: tuple[int, int]) -> tuple[inputs_module.RawBatch, Any]:
        raw = source.read(*bounds)
        return raw, builder.prepare(raw.payload) if raw.valid.any() else None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossan-inputs") as pool_:
        todo = iter(batches)
        pending: deque[Future[tuple[inputs_module.RawBatch, Any]]] = deque(
            pool_.submit(load, bounds) for bounds in itertools.islice(todo, PREFETCH_BATCHES + 1)
        )
        while pending:
            result = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool_.submit(load, following))
            yield result


# ---------------------------------------------------------------- extraction


def _versions() -> dict[str, str]:
    # deferred: torch, transformers take ~3 s to import; merge-features never needs them
    import torch
    import transformers

    return {
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "crossan": crossan.__version__,
    }


def _use_threads(threads: int) -> None:
    # deferred: torch takes ~2 s to import; merge-features (this module too) never needs it
    import torch

    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def _device_name(device: torch.device) -> str:
    # deferred: torch takes ~2 s to import; merge-features (this module too) never needs it
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def run_config(
    encoder: Encoder,
    source: inputs_module.Source,
    builder: inputs_module.InputBuilder,
    layers: list[int],
    batch_size: int,
    device: torch.device,
    autocast: str,
) -> dict[str, Any]:
    """Everything that decides the stored numbers (hashed into ``config_hash``)."""
    item_hash = hashlib.sha256("\n".join(source.item_ids).encode("utf-8")).hexdigest()
    return {
        "format": FORMAT_VERSION,
        "modality": encoder.modality,
        "model": encoder.source,
        **encoder.fingerprint,
        "layers": layers,
        "pooling": POOLING[encoder.modality],
        "hidden_states": HIDDEN_STATES_NOTE,
        "input_spec": builder.spec(),
        "source": source.describe(),
        "item_ids_sha256": item_hash,
        "dtype": feature_store.FEATURE_DTYPE,
        "batch_size": batch_size,
        "compute": {
            "device_type": device.type,
            "autocast": autocast if device.type == "cuda" else "off",
        },
        "versions": _versions(),
    }


def extract(
    modality: str,
    model: str,
    *,
    items_csv: Path,
    out: Path,
    media: Path | None = None,
    layers: Sequence[int] = DEFAULT_LAYERS,
    batch_size: int = 32,
    max_length: int | None = None,
    shard: int | None = None,
    num_shards: int = 1,
    chunk_batches: int = 4,
    device: str = "auto",
    autocast: str = "float16",
    progress: bool = True,
    threads: int | None = None,
) -> ExtractReport:
    """Extract ``modality``'s features with ``model`` (Hugging Face id or local directory)
    into ``out`` (see the module docstring).

    ``media``: the media stage's ``{image,video,audio}.h5`` (not for text). ``layers``:
    hidden-state indices to keep (0 = embedding output). ``max_length``: text tokens per title
    (default 30), or audio filterbank frames (default: the checkpoint's; a smaller value
    truncates AST's position embeddings, see :mod:`crossan.encoders.load`). With ``shard``
    (0-based) only that shard's items are processed and ``out`` is a shard file for
    :func:`crossan.encoders.store.merge_shards`. ``device``: auto, cpu or cuda; ``autocast``
    (CUDA only): float16, bfloat16 or off. ``threads``: torch's CPU threads (default: torch's
    own choice, which follows ``OMP_NUM_THREADS`` or the machine's cores, not the job's share).
    ``progress``: log progress lines (items done, rate, ETA; :mod:`crossan.progress`) every 30 s
    and at the end.
    """
    started = time.monotonic()
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")
    if batch_size < 1 or chunk_batches < 1:
        raise ConfigError(f"batch_size and chunk_batches must be >= 1, got {batch_size}, {chunk_batches}")
    if autocast not in AUTOCAST:
        raise ConfigError(f"autocast must be one of {AUTOCAST}, got {autocast!r}")
    if max_length is not None and modality in ("image", "video"):
        raise ConfigError(f"max_length applies to text and audio, not {modality}")
    if threads is not None:
        _use_threads(threads)
    torch_device = resolve_device(device)
    encoder = load_encoder(
        modality, model, audio_max_length=max_length if modality == "audio" else None
    )
    kept = validate_layers(layers, encoder.num_layers, where=f"encoders.{modality}.layers")
    text_length = max_length if modality == "text" and max_length is not None else None
    source, builder = inputs_module.open_inputs(
        encoder, Path(items_csv), Path(media) if media is not None else None,
        text_max_length=text_length or inputs_module.TEXT_MAX_LENGTH,
    )
    try:
        return _extract(
            encoder, source, builder, kept, Path(out), batch_size, shard, num_shards,
            chunk_batches, torch_device, autocast, progress, started,
            items_csv=Path(items_csv), media=media,
        )
    finally:
        source.close()


def _extract(
    encoder: Encoder,
    source: inputs_module.Source,
    builder: inputs_module.InputBuilder,
    layers: list[int],
    out: Path,
    batch_size: int,
    shard: int | None,
    num_shards: int,
    chunk_batches: int,
    device: torch.device,
    autocast: str,
    progress: bool,
    started: float,
    *,
    items_csv: Path,
    media: Path | None,
) -> ExtractReport:
    total = len(source.item_ids)
    first, stop = (1, total + 1) if shard is None else shard_rows(total, batch_size, shard, num_shards)
    config = run_config(encoder, source, builder, layers, batch_size, device, autocast)
    digest, config_json = feature_store.config_hash(config)
    spec = feature_store.file_spec(
        modality=encoder.modality, model=encoder.source, digest=digest, layers=layers,
        pooling=POOLING[encoder.modality], hidden_size=encoder.hidden_size, first_row=first,
        total_items=total, shard=None if shard is None else (shard, num_shards),
    )
    fields = feature_store.feature_fields(len(layers), encoder.hidden_size)
    item_ids = source.item_ids[first - 1 : stop - 1]
    report = ExtractReport(encoder.modality, str(out), digest, first, stop - first)
    report.device = _device_name(device)
    if isinstance(source, inputs_module.TitleSource):
        report.empty_titles = source.empty_titles(first, stop)
        if report.empty_titles:
            log.info("%d items have an empty title (valid input: [CLS] [SEP] + padding)",
                     report.empty_titles)
    if is_current(out, spec, item_ids, fields):
        log.info("%s is up to date (config %s)", out, digest[:12])
        report.up_to_date = True
        return _finish(report, out, started)

    report.discarded_partial = feature_store.discard_stale_partial(out, digest)
    info = {
        "config_json": config_json,
        "pooling_rule": POOLING_RULES[POOLING[encoder.modality]],
        "hidden_states": HIDDEN_STATES_NOTE,
        "input_spec": inputs_module.spec_text(builder.spec()),
        "media_spec": str(source.describe().get("media_spec_json", "")),
        "model_class": encoder.fingerprint["model_class"],
        **{f"{name}_version": version for name, version in _versions().items()},
        "device": report.device,
        "autocast": config["compute"]["autocast"],
        "batch_size": batch_size,
        "chunk_batches": chunk_batches,
        "items_csv": str(items_csv),
        "media_path": str(media or ""),
    }
    if encoder.modality == "text":
        info["empty_titles"] = report.empty_titles
    partial, discarded = PartialStore.open(out, fields, spec, item_ids, info)
    report.discarded_partial = report.discarded_partial or discarded
    try:
        encoder.model.to(device)
        _fill(partial, encoder, source, builder, layers, report, first, stop,
              batch_size, chunk_batches, device, autocast, progress)
        partial.finalize()
    finally:
        partial.close()
    return _finish(report, out, started)


def _fill(
    partial: PartialStore,
    encoder: Encoder,
    source: inputs_module.Source,
    builder: inputs_module.InputBuilder,
    layers: list[int],
    report: ExtractReport,
    first: int,
    stop: int,
    batch_size: int,
    chunk_batches: int,
    device: torch.device,
    autocast: str,
    progress: bool,
) -> None:
    """Compute and commit every chunk not yet done, in order."""
    chunks = chunk_ranges(first, stop, batch_size, chunk_batches)
    local = 1 - first  # absolute row + local = row in this file
    todo = [(lo, hi) for lo, hi in chunks if not partial.done[lo + local : hi + local].all()]
    report.chunks, report.chunks_resumed = len(chunks), len(chunks) - len(todo)
    if report.chunks_resumed:
        log.info("%s: resuming, %d of %d chunks already done", Path(report.path).name,
                 report.chunks_resumed, report.chunks)
    batches = [b for lo, hi in todo for b in batch_ranges(lo, hi, batch_size)]
    pause = pause_after(PAUSE_ENV)
    width = (len(layers), encoder.hidden_size)
    stream = _prefetched(source, builder, batches)
    counter = Progress(f"crossan extract-features {report.path}", sum(hi - lo for lo, hi in todo), "items",
                       enabled=progress)
    with closing(stream), counter:
        for lo, hi in todo:
            features = np.zeros((hi - lo, *width), dtype=np.float16)
            reasons: list[str] = []
            for _ in batch_ranges(lo, hi, batch_size):
                raw, prepared = next(stream)
                reasons += raw.reasons
                if prepared is not None:
                    model_inputs = builder.to_device(prepared, device)
                    rows = np.flatnonzero(raw.valid) + raw.start - lo
                    features[rows] = forward_pooled(encoder, model_inputs, layers, device, autocast)
                    report.items_computed += int(raw.valid.sum())
                counter.update(raw.stop - raw.start)
            rows_local = list(range(lo + local, hi + local))
            partial.write(rows_local, {feature_store.FEATURES: features}, reasons)
            partial.commit(rows_local)
            report.chunks_computed += 1
            log.debug("chunk committed (rows %d-%d)", lo, hi - 1)
            pause(report.chunks_computed)


def _finish(report: ExtractReport, out: Path, started: float) -> ExtractReport:
    with h5py.File(out, "r") as file:
        report.valid = int(file["valid"][1:].sum())
    report.seconds = round(time.monotonic() - started, 3)
    log.info(
        "%s: %d/%d items valid; chunks: %d resumed, %d computed of %d; %d items through the "
        "model in %.1f s -> %s",
        report.modality, report.valid, report.items, report.chunks_resumed,
        report.chunks_computed, report.chunks, report.items_computed, report.seconds, out,
    )
    return report


# ---------------------------------------------------------------- command line


def run_extract(args: argparse.Namespace) -> int:
    """Run ``crossan extract-features`` (:mod:`crossan.commands.encoders`); returns the exit status."""
    if (args.shard is None) != (args.num_shards is None):
        raise ConfigError("--shard and --num-shards go together")
    report = extract(
        args.modality,
        args.model,
        items_csv=args.items,
        media=args.media,
        out=args.out,
        layers=args.layers,
        batch_size=args.batch_size,
        max_length=args.max_length,
        shard=args.shard,
        num_shards=args.num_shards or 1,
        chunk_batches=args.chunk_batches,
        device=args.device,
        autocast=args.autocast,
        progress=not args.no_progress,
        threads=args.threads,
    )
    summary = {k: v for k, v in asdict(report).items() if k not in ("config_hash",)}
    print(" ".join(f"{key}={value}" for key, value in summary.items()))
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """Run ``crossan merge-features``; returns the exit status."""
    feature_store.merge_shards(list(args.shards), args.out)
    print(f"merged {len(args.shards)} shard file(s) -> {args.out}")
    return 0
