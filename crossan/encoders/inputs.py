"""Per-batch inputs of the encoders: what is read (titles, media rows) and how it becomes a
model batch, exactly as the paper's setup prescribes.

* text: the English title, WordPiece-tokenised to ``max_length`` (30) tokens with
  ``[CLS] ... [SEP]``, padded to ``max_length`` and truncated; an empty title is a valid
  input (``[CLS] [SEP]`` and padding).
* image: the cover pixels of ``image.h5`` (already at the model's side, decoded from the
  stored JPEG), rescaled and normalised by the checkpoint's ``ViTImageProcessorPil``.
* video: the 16 frames of ``video.h5`` (decoded likewise), through the checkpoint's
  ``VideoMAEImageProcessorPil``.
* audio: the first ``num_samples`` samples of ``audio.h5`` (3 s mono at 16 kHz, shorter when
  the track is), through the checkpoint's ``ASTFeatureExtractor``, which computes the
  128-bin log-mel filterbank and zero-pads it to its ``max_length`` frames, as in AST's
  training. At least one 400-sample window is passed (a shorter clip gets zeros).

The processors' resize and crop must be no-ops: media are sampled at the model's side by the
media stage, and a mismatch is an error naming the config key, never a silent resize.
Because rescale and normalise then act on each pixel alone, the image/video processors are
applied through a lookup table built *by the processor itself* (each channel's 256 possible
uint8 values) and checked bit for bit against the processor on a probe image; the result is
identical to calling the processor, and orders of magnitude cheaper per video.

Media rows are read per batch from the HDF5 files (memory bounded by the batch).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import h5py
import numpy as np

from crossan.data.readers import read_item_table
from crossan.errors import ConfigError, DataError
from crossan.media.store import (
    CONTENT_DIGEST,
    UNREADABLE,
    check_format,
    content_digest,
    item_shape,
    read_valid,
    unreadable_file,
)

if TYPE_CHECKING:
    import torch

    from crossan.encoders.load import Encoder

log = logging.getLogger(__name__)

TEXT_MAX_LENGTH = 30
MIN_AUDIO_SAMPLES = 400  # one 25 ms analysis window at 16 kHz (the extractor's frame_length)
MEDIA_FIELDS: dict[str, str] = {"image": "pixels", "video": "frames", "audio": "waveform"}
MEDIA_CONFIG_KEYS: dict[str, str] = {
    "image": "media.image_size",
    "video": "media.video_size",
}


@dataclass
class RawBatch:
    """The stored inputs of items ``start..stop-1`` (absolute dense ids): ``valid`` bool
    ``[stop - start]``, ``reasons`` ("" when valid) and ``payload``, the inputs of the valid
    rows only, in row order (titles, or media arrays)."""

    start: int
    stop: int
    valid: np.ndarray
    reasons: list[str]
    payload: Any


# ---------------------------------------------------------------- sources


def _sha256_lines(values: list[str]) -> str:
    digest = hashlib.sha256()
    for value in values:
        digest.update(value.encode("utf-8") + b"\n")
    return digest.hexdigest()


class Source(Protocol):
    """Where a modality's per-item inputs come from."""

    item_ids: list[str]

    def read(self, start: int, stop: int) -> RawBatch: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class TitleSource:
    """Titles of ``items.csv``; every item is valid."""

    def __init__(self, items_csv: Path) -> None:
        self.path = Path(items_csv)
        table = read_item_table(self.path)
        self.item_ids, self.titles = table.item_ids, table.titles

    def read(self, start: int, stop: int) -> RawBatch:
        count = stop - start
        return RawBatch(
            start, stop, np.ones(count, dtype=bool), [""] * count, self.titles[start - 1 : stop - 1]
        )

    def empty_titles(self, start: int, stop: int) -> int:
        """Items ``start..stop-1`` whose title is empty (still valid inputs)."""
        return sum(1 for title in self.titles[start - 1 : stop - 1] if not title.strip())

    def describe(self) -> dict[str, Any]:
        """What the numbers depend on: every title, in order (hash)."""
        return {"items_csv_titles_sha256": _sha256_lines(self.titles)}

    def close(self) -> None:
        pass


class MediaSource:
    """One modality's media file of the media stage, opened read-only for the whole run."""

    def __init__(self, path: Path, modality: str, item_ids: list[str]) -> None:
        self.path = Path(path)
        self.modality = modality
        self.item_ids = item_ids
        if not self.path.is_file():
            raise DataError(f"media file {self.path} does not exist; run sample-media first")
        try:
            self._file = h5py.File(self.path, "r")
        except UNREADABLE as error:
            raise unreadable_file(self.path, error) from error
        try:
            self._check()
        except UNREADABLE as error:
            self._file.close()
            raise unreadable_file(self.path, error) from error
        except BaseException:
            self._file.close()
            raise
        self.data = self._file[MEDIA_FIELDS[modality]]
        self._item_shape = item_shape(self.data)
        self.attrs: dict[str, Any] = dict(self._file.attrs)
        self._digest: str | None = None

    def _check(self) -> None:
        file, name = self._file, MEDIA_FIELDS[self.modality]
        if "_done" in file:
            raise DataError(f"{self.path} is an unfinished media file (it has a _done mask)")
        check_format(file, self.path)
        stored = file.attrs.get("modality")
        if stored is not None and stored != self.modality or name not in file:
            raise DataError(f"{self.path} is not a {self.modality} media file (no '{name}')")
        ids = list(file["item_id"].asstr()[1:])
        if ids != self.item_ids:
            raise DataError(
                f"{self.path} holds {len(ids)} items that are not items.csv's {len(self.item_ids)} "
                "in dense-id order; rerun sample-media for this items.csv"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-item shape of the media array as read (decoded, for JPEG-stored images)."""
        return self._item_shape

    def read(self, start: int, stop: int) -> RawBatch:
        try:
            return self._read(start, stop)
        except UNREADABLE as error:
            raise unreadable_file(self.path, error) from error

    def _read(self, start: int, stop: int) -> RawBatch:
        valid = self._file["valid"][start:stop].astype(bool)
        reasons = list(self._file["reason"].asstr()[start:stop])
        if self.modality == "audio":
            rows = self.data[start:stop]  # one batch of media rows, not the file
            counts = self._file["num_samples"][start:stop]
            payload: Any = [
                rows[i, : max(int(counts[i]), MIN_AUDIO_SAMPLES)] for i in np.flatnonzero(valid)
            ]
        else:
            payload = read_valid(self.data, start, stop, valid)  # decodes the valid rows only
        return RawBatch(start, stop, valid, reasons, payload)

    def describe(self) -> dict[str, Any]:
        """What the numbers depend on: the media spec and the stored values (their digest, so
        resampling identical media keeps the features' config hash; never the file's times)."""
        return {
            "media_spec_json": str(self.attrs.get("spec_json", "")),
            "media_content_sha256": self.content_sha256(),
        }

    def content_sha256(self) -> str:
        """The digest the media stage recorded on completion; for a file sampled before it
        recorded one, the same digest computed here (once per run: it reads the whole file)."""
        if self._digest is None:
            recorded = self.attrs.get(CONTENT_DIGEST)
            if recorded is None:
                log.info("%s has no recorded %s (sampled by an older crossan); computing it",
                         self.path, CONTENT_DIGEST)
                recorded = content_digest(self._file)
            self._digest = str(recorded)
        return self._digest

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()


# ---------------------------------------------------------------- model inputs


class InputBuilder(Protocol):
    """Turns a batch's payload into the model's keyword arguments."""

    def spec(self) -> dict[str, Any]: ...

    def prepare(self, payload: Any) -> dict[str, torch.Tensor]: ...

    def to_device(
        self, prepared: dict[str, torch.Tensor], device: torch.device
    ) -> dict[str, torch.Tensor]: ...


class TextInputs:
    """Titles -> ``input_ids``, ``token_type_ids``, ``attention_mask`` ``[B, L]``, ``L`` the
    longest title of the batch in tokens, at most ``max_length``.

    Padding to the batch's longest title, not to ``max_length``: the attention mask keeps
    padding out of every real token's state, so the [CLS] state is the same up to float
    rounding, and short titles (MicroLens' average about 12 tokens against 30) cost half the
    forward (measured 2.1x on a MiniLM-sized BERT, ``bench/extract.py``)."""

    def __init__(self, encoder: Encoder, max_length: int = TEXT_MAX_LENGTH) -> None:
        positions = int(encoder.model.config.max_position_embeddings)
        if not 2 <= max_length <= positions:
            raise ConfigError(
                f"encoders.text.max_length must be between 2 and the model's "
                f"max_position_embeddings ({positions}), got {max_length}"
            )
        self.tokenizer = encoder.preprocessor
        self.max_length = max_length

    def spec(self) -> dict[str, Any]:
        return {
            "input": "items.csv title",
            "tokenizer": "BertTokenizerFast (checkpoint's WordPiece)",
            "max_length": self.max_length,
            "padding": "longest in the batch",
            "truncation": True,
            "special_tokens": "[CLS] title [SEP]",
        }

    def prepare(self, payload: list[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            list(payload),
            max_length=self.max_length,
            padding="longest",
            truncation=True,
            return_tensors="pt",
        )
        return dict(encoded)

    def to_device(
        self, prepared: dict[str, torch.Tensor], device: torch.device
    ) -> dict[str, torch.Tensor]:
        return {key: value.to(device, non_blocking=True) for key, value in prepared.items()}


def processor_geometry(processor: Any, side: int) -> list[tuple[str, int, int]]:
    """The steps the processor's resize and centre crop take on a ``side x side`` image, as
    ``(step, height, width)`` (from its saved ``size`` / ``crop_size``)."""
    steps = []
    if getattr(processor, "do_resize", False):
        size = processor.size
        if size.height and size.width:
            steps.append(("resize", int(size.height), int(size.width)))
        elif size.shortest_edge and not size.longest_edge:  # a square stays square
            steps.append(("resize", int(size.shortest_edge), int(size.shortest_edge)))
        else:
            raise ConfigError(
                f"unsupported preprocessor size {size} (expected height/width or shortest_edge)"
            )
    if getattr(processor, "do_center_crop", False):
        steps.append(("center crop", int(processor.crop_size.height), int(processor.crop_size.width)))
    return steps


def check_pixel_geometry(encoder: Encoder, media_side: int, media_path: Path) -> None:
    """Fail clearly unless the media side equals the model's ``image_size`` and each of the
    processor's resize/crop steps keeps that size (so they are no-ops)."""
    key = MEDIA_CONFIG_KEYS[encoder.modality]
    model_side = int(encoder.model.config.image_size)
    if media_side != model_side:
        raise ConfigError(
            f"{media_path} holds {media_side}x{media_side} {encoder.modality} inputs but "
            f"{encoder.source} takes {model_side}x{model_side}: set {key} to {model_side} "
            f"(or per dataset catalog.<name>.{key}) and rerun sample-media"
        )
    for step, height, width in processor_geometry(encoder.preprocessor, media_side):
        if (height, width) != (model_side, model_side):
            raise ConfigError(
                f"the saved preprocessor of {encoder.source} would {step} {media_side}x"
                f"{media_side} inputs to {height}x{width}, but the model takes "
                f"{model_side}x{model_side} ({key}); crossan never resizes silently: fix the "
                "checkpoint's preprocessor_config.json"
            )


def _run_processor(processor: Any, pixels: np.ndarray, video: bool) -> np.ndarray:
    """The processor on uint8 ``[B, S, S, 3]`` images or ``[B, T, S, S, 3]`` videos:
    float32 ``[B, 3, S, S]`` or ``[B, T, 3, S, S]``."""
    if video:
        out = processor([list(clip) for clip in pixels], return_tensors="np")
    else:
        out = processor(images=list(pixels), return_tensors="np")
    return np.asarray(out["pixel_values"], dtype=np.float32)


def pixel_lookup_table(processor: Any, side: int, video: bool) -> np.ndarray | None:
    """float32 ``[3, 256]``: the processor's output for each channel and uint8 value, or
    None when the processor is not a per-pixel map at ``side`` (then it is called as is).

    Built from the processor's output on a probe image in which every channel takes every
    value many times at scattered positions, and accepted only when gathering from the table
    reproduces that output bit for bit (a resize, crop or any neighbourhood operation would
    not).
    """
    if side * side < 256:
        return None
    positions = np.arange(side * side, dtype=np.int64).reshape(side, side)
    probe = np.stack([(positions * 7 + 85 * c) % 256 for c in range(3)], axis=-1).astype(np.uint8)
    batch = probe[None, None] if video else probe[None]
    out = _run_processor(processor, batch, video)
    out = out[0, 0] if video else out[0]  # [3, S, S]
    if out.shape != (3, side, side):
        return None
    table = np.zeros((3, 256), dtype=np.float32)
    for channel in range(3):
        table[channel, probe[..., channel]] = out[channel]
    gathered = np.stack([table[c][probe[..., c]] for c in range(3)])
    return table if np.array_equal(gathered.view(np.uint32), out.view(np.uint32)) else None


class PixelInputs:
    """Cover images ``[B, S, S, 3]`` or videos ``[B, T, S, S, 3]`` (uint8) -> ``pixel_values``
    float32 ``[B, 3, S, S]`` / ``[B, T, 3, S, S]`` exactly as the checkpoint's processor."""

    def __init__(self, encoder: Encoder, media_shape: tuple[int, ...], media_path: Path) -> None:
        self.video = encoder.modality == "video"
        self.processor = encoder.preprocessor
        side = int(media_shape[-2])
        if self.video:
            frames = int(media_shape[0])
            wanted = int(encoder.model.config.num_frames)
            if frames != wanted:
                raise ConfigError(
                    f"{media_path} holds {frames} frames per video but {encoder.source} takes "
                    f"{wanted}: set media.frames to {wanted} and rerun sample-media"
                )
        check_pixel_geometry(encoder, side, media_path)
        self.side = side
        # deferred: torch takes ~2 s to import; merge-features loads this module, never torch
        import torch

        table = pixel_lookup_table(self.processor, side, self.video)
        self.table = None if table is None else torch.from_numpy(table).reshape(-1)  # [3 * 256]
        self._device_tables: dict[str, torch.Tensor] = {}

    def spec(self) -> dict[str, Any]:
        return {
            "input": "video.h5 frames" if self.video else "image.h5 pixels",
            "processor": type(self.processor).__name__ + " (checkpoint's saved config)",
            "size": self.side,
            "resize_and_crop": "no-ops (inputs already at the model's size)",
        }

    def prepare(self, payload: np.ndarray) -> dict[str, torch.Tensor]:
        # deferred: torch takes ~2 s to import; merge-features loads this module, never torch
        import torch

        if self.table is None:
            return {"pixel_values": torch.from_numpy(_run_processor(self.processor, payload, self.video))}
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(payload))}  # uint8

    def to_device(
        self, prepared: dict[str, torch.Tensor], device: torch.device
    ) -> dict[str, torch.Tensor]:
        # deferred: torch takes ~2 s to import; merge-features loads this module, never torch
        import torch

        pixels = prepared["pixel_values"].to(device, non_blocking=True)
        if self.table is None:
            return {"pixel_values": pixels}
        table = self._device_tables.get(str(device))
        if table is None:
            table = self._device_tables[str(device)] = self.table.to(device)
        offsets = torch.tensor([0, 256, 512], device=device)  # channel c reads table[c]
        values = table[pixels.long() + offsets]  # [..., S, S, 3] float32
        order = (0, 1, 4, 2, 3) if self.video else (0, 3, 1, 2)
        return {"pixel_values": values.permute(*order).contiguous()}


class AudioInputs:
    """Waveforms (1-D float32, 16 kHz) -> ``input_values`` float32 ``[B, max_length, mel]``."""

    def __init__(self, encoder: Encoder, media_attrs: dict[str, Any], media_path: Path) -> None:
        self.extractor = encoder.preprocessor
        self.checkpoint_max_length = encoder.checkpoint_max_length
        rate = int(media_attrs.get("sample_rate", 0))
        if rate != int(self.extractor.sampling_rate):
            raise ConfigError(
                f"{media_path} holds audio at {rate} Hz but the feature extractor of "
                f"{encoder.source} expects {self.extractor.sampling_rate} Hz: set "
                f"media.sample_rate to {self.extractor.sampling_rate} and rerun sample-media"
            )
        if int(self.extractor.num_mel_bins) != int(encoder.model.config.num_mel_bins):
            raise ConfigError(
                f"{encoder.source}: the feature extractor makes {self.extractor.num_mel_bins} "
                f"mel bins, the model takes {encoder.model.config.num_mel_bins}"
            )
        self.rate = rate
        self.seconds = float(media_attrs.get("seconds", 0.0))

    def spec(self) -> dict[str, Any]:
        return {
            "input": "audio.h5 waveform[:max(num_samples, 400)]",
            "feature_extractor": "ASTFeatureExtractor (checkpoint's saved config)",
            "sampling_rate": self.rate,
            "seconds": self.seconds,
            "num_mel_bins": int(self.extractor.num_mel_bins),
            "max_length": int(self.extractor.max_length),
            "checkpoint_max_length": self.checkpoint_max_length,
            "position_embeddings": "checkpoint's"
            if self.extractor.max_length == self.checkpoint_max_length
            else "first time patches of every frequency row (truncated)",
        }

    def prepare(self, payload: list[np.ndarray]) -> dict[str, torch.Tensor]:
        out = self.extractor(list(payload), sampling_rate=self.rate, return_tensors="pt")
        return {"input_values": out["input_values"]}

    def to_device(
        self, prepared: dict[str, torch.Tensor], device: torch.device
    ) -> dict[str, torch.Tensor]:
        return {key: value.to(device, non_blocking=True) for key, value in prepared.items()}


def open_inputs(
    encoder: Encoder,
    items_csv: Path,
    media: Path | None,
    *,
    text_max_length: int = TEXT_MAX_LENGTH,
) -> tuple[Source, InputBuilder]:
    """The source and input builder of ``encoder``'s modality (validated against each other)."""
    if encoder.modality == "text":
        if media is not None:
            raise ConfigError("text features read titles from items.csv; do not pass --media")
        return TitleSource(items_csv), TextInputs(encoder, text_max_length)
    if media is None:
        raise ConfigError(f"{encoder.modality} features need the media file (--media)")
    item_ids = read_item_table(items_csv).item_ids
    source = MediaSource(Path(media), encoder.modality, item_ids)
    try:
        builder: InputBuilder
        if encoder.modality == "audio":
            builder = AudioInputs(encoder, source.attrs, source.path)
        else:
            builder = PixelInputs(encoder, source.shape, source.path)
    except BaseException:
        source.close()
        raise
    return source, builder


def spec_text(spec: dict[str, Any]) -> str:
    """Canonical JSON of a spec dict."""
    return json.dumps(spec, sort_keys=True)
