"""``crossan sample-media``: sample every item's video frames, audio and cover into HDF5.

For the items of ``item_ids.csv`` (or ``items.csv``; dense ids 1..n) this writes, under ``out_dir``:

* ``video.h5``: ``frames``, each item's F frames from the first ``seconds`` (uint8
  ``[F, S, S, 3]`` once decoded, VideoMAE geometry), stored as JPEG, one blob of F images per
  item (variable-length ``[n+1]``; raw uint8 ``[n+1, F, S, S, 3]`` with ``jpeg_quality`` 0;
  see :mod:`crossan.media.store`), ``frame_index`` int32 ``[n+1, F]`` (-1 when invalid),
  ``source_frames`` int32 ``[n+1]``, ``source_fps`` float32 ``[n+1]``, ``decoder`` uint8
  ``[n+1]`` (which decoder produced the frames: :data:`crossan.media.spec.DECODER_CODES`,
  0 when invalid);
* ``audio.h5``: ``waveform`` float32 ``[n+1, seconds*sample_rate]`` (mono, zero-padded),
  ``num_samples`` int32 ``[n+1]`` (real samples before the padding);
* ``image.h5``: ``pixels``, the cover (uint8 ``[S, S, 3]`` once decoded, ViT geometry), one
  JPEG per item (variable-length ``[n+1]``; raw ``[n+1, S, S, 3]`` with ``jpeg_quality`` 0);
* in each: ``valid``, ``reason``, ``item_id`` (see :mod:`crossan.media.store`);
* ``{modality}_report.json``: valid count, bad items counted by reason with the first few
  examples, items resumed and decoded; for video also how many items needed the PyAV
  fallback because decord's fast path failed (see :mod:`crossan.media.video`). One file per modality, because the workflow builds
  each modality in its own job, possibly at the same time.

Every modality of every item is valid or masked with a reason: ``missing file: <path>``,
``corrupt: <decoder message>``, ``no audio track``; row 0 is ``padding``. Bad media never
stops the run, and a decoder that kills its worker process masks just that item.

Worker processes decode blocks of ``chunk_items`` items; the main process alone writes, in
item order, and commits each block to the resumable ``*.h5.partial`` files, so a killed run
continues where it stopped and the result equals an uninterrupted run's.

This module is the job and its command's handler (the arguments are in
:mod:`crossan.commands.media`): it opens (or resumes) the files, plans the
blocks still to sample, writes and commits their results, and summarises each file into its
report. What is stored per item is :class:`crossan.media.spec.MediaSpec`; the decoding, in
worker processes, is :mod:`crossan.media.workers`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py

from crossan.atomic import write_text_atomic
from crossan.data.layout import MODALITY_PARTS, DatasetLayout, load_manifest
from crossan.data.readers import read_item_ids
from crossan.errors import DataError
from crossan.kill_point import pause_after
from crossan.media import store, video
from crossan.media.options import DEFAULT_JPEG_QUALITY, MODALITIES
from crossan.media.spec import DECODER_CODES, MediaSpec
from crossan.media.workers import Block, Item, sample_blocks
from crossan.progress import Progress

log = logging.getLogger(__name__)

FILE_NAMES = {"video": "video.h5", "audio": "audio.h5", "image": "image.h5"}
REPORT_NAME = "{modality}_report.json"
MAX_EXAMPLES = 5
# Test hook (crossan.kill_point): pause after this many committed blocks.
PAUSE_ENV = "CROSSAN_MEDIA_TEST_PAUSE_AFTER_BLOCKS"


@dataclass
class ModalityReport:
    """Outcome for one modality's file."""

    modality: str
    path: str
    items: int
    valid: int
    invalid: int
    reasons: dict[str, int]  # reason category -> count ("missing file", "corrupt", ...)
    examples: dict[str, list[dict[str, Any]]]  # category -> first few bad items
    resumed: int = 0  # rows found done in a partial file and not redone
    decoded: int = 0  # rows sampled by this run
    up_to_date: bool = False  # the final file already matched: nothing done
    # video only: items per decoder ("decord", "pyav"), and the first few fallback items
    decoders: dict[str, int] | None = None
    fallback: int = 0
    fallback_examples: list[dict[str, Any]] = field(default_factory=list)
    discarded_partial: str | None = None  # why an existing partial file was not resumed


@dataclass
class MediaReport:
    """What :func:`sample_media` did."""

    out_dir: str
    items: int
    modalities: dict[str, ModalityReport] = field(default_factory=dict)
    report_paths: dict[str, str] = field(default_factory=dict)  # modality -> JSON report
    seconds: float = 0.0


# ---------------------------------------------------------------- items table


def read_items(items_csv: Path) -> list[tuple[int, str]]:
    """``[(dense_id, item_id)]`` from ``item_ids.csv`` (or ``items.csv``): the ids only, so
    that the workflow can sample media without waiting for, or rerunning on, the titles."""
    return list(enumerate(read_item_ids(items_csv), start=1))


# ---------------------------------------------------------------- orchestration (main side)


def _category(reason: str) -> str:
    return reason.split(":", 1)[0]


def _summarise(modality: str, path: Path, items: list[Item]) -> ModalityReport:
    """Count valid rows and bad rows by reason category, from the finished file."""
    valid, reasons, _ = store.read_status(path)
    counts: dict[str, int] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        reason = reasons[item.row]
        if valid[item.row]:
            continue
        category = _category(reason)
        counts[category] = counts.get(category, 0) + 1
        if len(examples.setdefault(category, [])) < MAX_EXAMPLES:
            source = item.cover if modality == "image" else item.video
            examples[category].append(
                {"item_id": item.item_id, "file": Path(source).name, "reason": reason}
            )
    good = int(valid[1:].sum())
    report = ModalityReport(
        modality, str(path), len(items), good, len(items) - good, counts, examples
    )
    if modality == "video":
        _count_decoders(report, path, items)
    return report


def _count_decoders(report: ModalityReport, path: Path, items: list[Item]) -> None:
    """Fill the video report's items per decoder and its fallback examples from the file."""
    with h5py.File(path, "r") as file:
        codes = file["decoder"][:]
    report.decoders = {name: int((codes[1:] == code).sum()) for name, code in DECODER_CODES.items()}
    report.fallback = report.decoders[video.FALLBACK_DECODER]
    fallback = DECODER_CODES[video.FALLBACK_DECODER]
    report.fallback_examples = [
        {"item_id": item.item_id, "file": Path(item.video).name}
        for item in items
        if codes[item.row] == fallback
    ][:MAX_EXAMPLES]


def _log_summary(report: ModalityReport) -> None:
    log.info("%s: %d/%d items valid", report.modality, report.valid, report.items)
    for category, count in sorted(report.reasons.items()):
        shown = ", ".join(f"{e['item_id']} ({e['file']})" for e in report.examples[category])
        log.warning("%s: %d item(s) %s, e.g. %s", report.modality, count, category, shown)
    if report.fallback:
        shown = ", ".join(f"{e['item_id']} ({e['file']})" for e in report.fallback_examples)
        log.warning(
            "video: %d item(s) decoded by the PyAV fallback because decord's fast path failed, "
            "e.g. %s", report.fallback, shown,
        )


def _plan(
    items: list[Item], stores: dict[str, store.PartialStore], chunk_items: int
) -> list[Block]:
    blocks = []
    for index, start in enumerate(range(0, len(items), chunk_items)):
        chunk = tuple(items[start : start + chunk_items])
        pending = {
            modality: tuple(item.row for item in chunk if not partial.done[item.row])
            for modality, partial in stores.items()
        }
        pending = {modality: rows for modality, rows in pending.items() if rows}
        if pending:
            blocks.append(Block(index, chunk, pending))
    return blocks


def _source_attrs(layout: DatasetLayout, modality: str) -> dict[str, str]:
    folder = layout.covers if modality == "image" else layout.videos
    return {"dataset": layout.name, "source_dir": str(folder)}


def _open_stores(
    modalities: list[str],
    spec: MediaSpec,
    layout: DatasetLayout,
    items: list[Item],
    out_dir: Path,
    dataset_json: Path | None,
) -> tuple[dict[str, store.PartialStore], dict[str, dict[str, Any]]]:
    """Open (create or resume) the files still to build. Returns the stores and, for every
    modality, what the report should say about how it started."""
    item_ids = [item.item_id for item in items]
    stores: dict[str, store.PartialStore] = {}
    notes: dict[str, dict[str, Any]] = {}
    for modality in modalities:
        final = out_dir / FILE_NAMES[modality]
        attrs = spec.attrs(modality) | _source_attrs(layout, modality)
        fields = spec.fields(modality)
        if store.is_current(final, attrs, item_ids, fields):
            log.info("%s is up to date", final)
            notes[modality] = {"up_to_date": True}
            continue
        try:
            partial, discarded = store.PartialStore.open(
                final, fields, attrs, item_ids, info={"dataset_json": str(dataset_json or "")}
            )
        except BaseException:
            for opened in stores.values():
                opened.close()
            raise
        stores[modality] = partial
        resumed = int(partial.done[1:].sum())
        if resumed:
            log.info("%s: resuming, %d of %d items already done", final.name, resumed, len(items))
        notes[modality] = {"resumed": resumed, "discarded_partial": discarded, "decoded": 0}
    return stores, notes


def _fill(
    stores: dict[str, store.PartialStore],
    notes: dict[str, dict[str, Any]],
    items: list[Item],
    spec: MediaSpec,
    workers: int,
    chunk_items: int,
    label: str,
    progress: bool,
) -> None:
    """Sample every pending row and commit it block by block, in item order; progress lines
    (:class:`crossan.progress.Progress`, ``label``) every 30 s and at the end, unless
    ``progress`` is off."""
    blocks = _plan(items, stores, chunk_items)
    pause = pause_after(PAUSE_ENV)
    committed = 0
    total = sum(len(block.items) for block in blocks)
    with Progress(label, total, "items", enabled=progress) as counter:
        for block, result in sample_blocks(blocks, spec, workers):
            for modality, (rows, data, reasons) in result.items():
                stores[modality].write(rows, data, reasons)
            for modality, (rows, _, _) in result.items():
                stores[modality].commit(rows)
                notes[modality]["decoded"] += len(rows)
            log.debug(
                "block %d committed (rows %d-%d)",
                block.index, block.items[0].row, block.items[-1].row,
            )
            counter.update(len(block.items))
            committed += 1
            pause(committed)


def sample_media(
    layout: DatasetLayout,
    items_csv: Path,
    out_dir: Path,
    *,
    modalities: Sequence[str] = MODALITIES,
    video_size: int = 224,
    image_size: int = 224,
    num_frames: int = 16,
    seconds: float = 3.0,
    sample_rate: int = 16000,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    workers: int = 2,
    chunk_items: int = 16,
    dataset_json: Path | None = None,
    progress: bool = True,
) -> MediaReport:
    """Sample every item's media into ``out_dir/{video,audio,image}.h5`` (see module doc).

    ``workers`` decoder processes (0: decode in this process) take blocks of ``chunk_items``
    items; frames and covers are stored as JPEG at ``jpeg_quality`` (0: raw uint8). Files
    already complete for the same spec and items are left alone; partial files
    of an interrupted run are resumed. ``progress``: log progress lines (items sampled, rate,
    ETA; :mod:`crossan.progress`) every 30 s and at the end. Returns counts per modality; also
    written to ``out_dir/{modality}_report.json``.
    """
    started = time.monotonic()
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
    if workers < 0 or chunk_items < 1:
        raise ValueError(f"need workers >= 0 and chunk_items >= 1, got {workers}, {chunk_items}")
    chosen = [m for m in MODALITIES if m in modalities]
    for modality in chosen:
        layout.require(MODALITY_PARTS[modality], modality)  # a folder the dataset lacks: say which
    spec = MediaSpec(video_size, image_size, num_frames, seconds, sample_rate, jpeg_quality)
    items = [
        Item(row, item_id, str(layout.video_path(item_id)), str(layout.cover_path(item_id)))
        for row, item_id in read_items(Path(items_csv))
    ]
    out_dir = Path(out_dir)

    stores, notes = _open_stores(chosen, spec, layout, items, out_dir, dataset_json)
    try:
        label = f"crossan sample-media {layout.name} {','.join(chosen)}"
        _fill(stores, notes, items, spec, workers, chunk_items, label, progress)
        for partial in stores.values():
            partial.finalize(digest=True)
    finally:
        for partial in stores.values():
            partial.close()  # a no-op once finalised; else the partial file stays resumable

    report = MediaReport(str(out_dir), len(items))
    for modality in chosen:
        summary = _summarise(modality, out_dir / FILE_NAMES[modality], items)
        for key, value in notes[modality].items():
            setattr(summary, key, value)
        _log_summary(summary)
        report.modalities[modality] = summary
    report.seconds = round(time.monotonic() - started, 3)
    for modality, summary in report.modalities.items():
        path = out_dir / REPORT_NAME.format(modality=modality)
        document = {
            "dataset": layout.name,
            "spec": spec.attrs(modality),
            "workers": workers,
            "chunk_items": chunk_items,
            "run_seconds": report.seconds,
            **asdict(summary),
        }
        write_text_atomic(path, json.dumps(document, indent=2) + "\n")
        report.report_paths[modality] = str(path)
    return report


# ---------------------------------------------------------------- command line


def _modalities(values: list[str]) -> list[str]:
    chosen = [m.strip() for value in values for m in value.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(MODALITIES))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown modality {unknown}; choose from {MODALITIES}")
    return chosen


def run_cli(args: argparse.Namespace) -> int:
    """Run ``crossan sample-media``; returns the exit status."""
    try:
        layout = load_manifest(args.dataset_json)
    except FileNotFoundError as error:
        raise DataError(f"dataset manifest {args.dataset_json} does not exist") from error
    try:
        modalities = _modalities(args.modalities)
    except argparse.ArgumentTypeError as error:
        raise DataError(f"--modalities: {error}") from error
    report = sample_media(
        layout,
        args.items,
        args.out,
        modalities=modalities,
        video_size=args.video_size,
        image_size=args.image_size,
        num_frames=args.frames,
        seconds=args.seconds,
        sample_rate=args.sample_rate,
        jpeg_quality=args.jpeg_quality,
        workers=args.workers,
        chunk_items=args.chunk_items,
        dataset_json=args.dataset_json,
    )
    for summary in report.modalities.values():
        print(
            f"{summary.modality}: {summary.valid}/{summary.items} valid, "
            f"resumed {summary.resumed}, decoded {summary.decoded} -> {summary.path}"
        )
    return 0
