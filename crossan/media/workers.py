"""The decoding side of ``crossan sample-media``: sample blocks of items in worker processes.

:func:`sample_item` turns one modality of one item into its per-item arrays (see
:meth:`crossan.media.spec.MediaSpec.fields`), or into fill values and a reason when the media
is missing or unreadable (``missing file: <path>``, ``corrupt: <decoder message>``,
``no audio track``). :func:`sample_block` does that for a :class:`Block` of consecutive items
and stacks the results (JPEG encoding included), and :func:`sample_blocks` runs blocks in a
pool of forked decoder processes, yielding their results in block order with a bounded number
in flight. A decoder that kills its worker process masks just that item
(:data:`CRASH_REASON`): the blocks that were in flight are redone one item at a time.
Workers die with the main process, so a killed run leaves no process holding its files.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import av
import decord
import numpy as np

from crossan.media import audio, image, store, video
from crossan.media.spec import DECODER_CODES, MediaSpec

log = logging.getLogger(__name__)

NO_AUDIO_REASON = "no audio track"
CRASH_REASON = "corrupt: decoder process died"


@dataclass(frozen=True)
class Item:
    """One row of the items table with its media paths."""

    row: int  # dense id
    item_id: str
    video: str
    cover: str


@dataclass(frozen=True)
class Block:
    """A unit of work: consecutive items and, per modality, the rows still to sample."""

    index: int
    items: tuple[Item, ...]
    pending: dict[str, tuple[int, ...]]  # modality -> rows (subset of the items' rows)


# ---------------------------------------------------------------- decoding (worker side)


def _invalid(spec: MediaSpec, modality: str) -> dict[str, np.ndarray]:
    return {
        name: np.full(f.shape, f.fill, dtype=f.dtype) for name, f in spec.fields(modality).items()
    }


def _sample(modality: str, item: Item, spec: MediaSpec) -> dict[str, np.ndarray]:
    """One modality of one item, as ``{field: array}``; raises on unreadable media."""
    if modality == "video":
        clip = video.sample_video(item.video, spec.video_size, spec.num_frames, spec.seconds)
        if clip.decoder != video.FAST_DECODER:
            log.info("video of item %s (%s): decord failed (%s), decoded with %s",
                     item.item_id, Path(item.video).name, clip.fast_path_error, clip.decoder)
        return {
            "frames": clip.frames,
            "frame_index": clip.indices.astype(np.int32),
            "source_frames": np.int32(clip.source_frames),
            "source_fps": np.float32(clip.fps),
            "decoder": np.uint8(DECODER_CODES[clip.decoder]),
        }
    if modality == "audio":
        waveform, count = audio.sample_audio(item.video, spec.sample_rate, spec.seconds)
        return {"waveform": waveform, "num_samples": np.int32(count)}
    return {"pixels": image.load_cover(item.cover, spec.image_size)}


_ERRORS = {
    "video": video.DECODE_ERRORS,
    "audio": audio.DECODE_ERRORS,
    "image": image.DECODE_ERRORS,
}


def sample_item(modality: str, item: Item, spec: MediaSpec) -> tuple[dict[str, np.ndarray], str]:
    """``(fields, reason)`` for one modality of one item; reason is "" when valid, and the
    fields are the fill values when not."""
    path = item.cover if modality == "image" else item.video
    if not os.path.isfile(path):
        return _invalid(spec, modality), f"missing file: {path}"
    try:
        return _sample(modality, item, spec), ""
    except audio.NoAudioTrack:
        return _invalid(spec, modality), NO_AUDIO_REASON
    except FileNotFoundError:
        return _invalid(spec, modality), f"missing file: {path}"
    except _ERRORS[modality] as error:
        return _invalid(spec, modality), f"corrupt: {video.error_message(error)}"


BlockResult = dict[str, tuple[list[int], dict[str, np.ndarray], list[str]]]


def _stack(
    spec: MediaSpec,
    modality: str,
    rows: Sequence[int],
    outcomes: list[tuple[dict[str, np.ndarray], str]],
) -> tuple[list[int], dict[str, np.ndarray], list[str]]:
    valid = [reason == "" for _, reason in outcomes]
    stacked = {  # JPEG encoding happens here, in the worker
        name: store.stack_rows(field, [fields[name] for fields, _ in outcomes], valid)
        for name, field in spec.fields(modality).items()
    }
    return list(rows), stacked, [reason for _, reason in outcomes]


def sample_block(block: Block, spec: MediaSpec) -> BlockResult:
    """Sample a block: modality -> ``(rows, {field: [len(rows), ...]}, reasons)``."""
    by_row = {item.row: item for item in block.items}
    result: BlockResult = {}
    for modality, rows in block.pending.items():
        outcomes = [sample_item(modality, by_row[row], spec) for row in rows]
        result[modality] = _stack(spec, modality, rows, outcomes)
    return result


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _quiet_decoders() -> None:
    """Silence FFmpeg's log lines; failures are reported through the stored reasons."""
    av.logging.set_level(None)
    decord.logging.set_level(decord.logging.QUIET)


def _init_worker(parent_pid: int) -> None:
    """Quiet the decoders and make the worker die with the main process.

    A worker outliving a SIGKILLed run would sit forever on its task queue, holding the
    inherited descriptors, and with them HDF5's lock on the partial files, so a rerun could
    not open them. On Linux the kernel kills it at once (PR_SET_PDEATHSIG); elsewhere a
    watchdog thread notices the new parent within a second.
    """
    _quiet_decoders()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    # fork: workers start in milliseconds with the decoders already imported. Nothing in a
    # worker touches the HDF5 files the parent has open, and forked workers leave through
    # os._exit, so HDF5's exit handlers never run in them.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)
    )


def _sample_isolated(block: Block, spec: MediaSpec) -> BlockResult:
    """Re-sample a block whose worker died, one (item, modality) per task in a single-worker
    pool, masking exactly the pairs that kill their worker again."""
    by_row = {item.row: item for item in block.items}
    result: BlockResult = {}
    pool = _pool(1)
    try:
        for modality, rows in block.pending.items():
            outcomes = []
            for row in rows:
                try:
                    outcomes.append(pool.submit(sample_item, modality, by_row[row], spec).result())
                except BrokenProcessPool:
                    log.warning("%s of item %s killed its decoder", modality, by_row[row].item_id)
                    outcomes.append((_invalid(spec, modality), CRASH_REASON))
                    pool.shutdown(wait=True)
                    pool = _pool(1)
            result[modality] = _stack(spec, modality, rows, outcomes)
    finally:
        pool.shutdown(wait=True)
    return result


def sample_blocks(
    blocks: list[Block], spec: MediaSpec, workers: int
) -> Iterator[tuple[Block, BlockResult]]:
    """Sample ``blocks`` and yield their results in order, with at most ``2 * workers`` blocks
    in flight (bounded memory). ``workers == 0`` samples in this process."""
    if workers == 0:
        _quiet_decoders()
        for block in blocks:
            yield block, sample_block(block, spec)
        return
    todo = deque(blocks)
    in_flight: deque[tuple[Block, Future[BlockResult]]] = deque()
    pool = _pool(workers)
    try:
        while todo or in_flight:
            try:
                while todo and len(in_flight) < 2 * workers:
                    in_flight.append((todo[0], pool.submit(sample_block, todo[0], spec)))
                    todo.popleft()
                block, future = in_flight[0]
                result = future.result()
                in_flight.popleft()
            except BrokenProcessPool:
                # A worker died. Every block in flight fails with the pool and which one
                # killed it is unknown, so all of them are redone one item at a time.
                pool.shutdown(wait=True, cancel_futures=True)
                retry = [b for b, _ in in_flight]
                in_flight.clear()
                if not retry:  # the pool cannot even start (e.g. the initializer fails)
                    raise
                log.warning("a decoder process died; re-sampling %d block(s) item by item",
                            len(retry))
                for b in retry:
                    yield b, _sample_isolated(b, spec)
                pool = _pool(workers)
                continue
            yield block, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

