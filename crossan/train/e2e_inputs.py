"""The raw inputs of end-to-end runs, read and prepared once: tokenised titles and cover pixels.

End-to-end methods (:mod:`crossan.models.e2e`) run BERT and ViT on every training batch, so
they need the encoders' inputs, not cached states. :func:`load_item_inputs` reads them **once**
into tensors on the training device, exactly as stage 1 prepares them
(:mod:`crossan.encoders.inputs`, the same classes):

* titles of ``items.csv``, tokenised once by the checkpoint's tokenizer to ``max_length``
  tokens (``[CLS] title [SEP]``, padded, truncated); an empty title is a valid input
  (``[CLS] [SEP]``), counted;
* covers of ``media/image.h5`` (already at the model's side), kept as uint8
  ``[n_items + 1, S, S, 3]``. The checkpoint's processor (rescale + normalise, a per-pixel
  map) is turned once into a per-channel lookup table that reproduces it bit for bit
  (:func:`~crossan.encoders.inputs.pixel_lookup_table`); a batch's ``pixel_values`` are a
  gather from that table on the device. Storing the normalised floats instead would take 4x
  the memory (12 GB for MicroLens-100K's 19,738 covers at 224 px, against 3 GB). A processor
  that is not a per-pixel map is applied once to every cover at load time instead (float32).
* A cover that stage 1 could not read (``valid`` False, its reason in ``reason``) is masked,
  as in stage 1: ``has_image`` False, ViT never sees it, its image tower output is zero
  (:class:`~crossan.models.e2e.item_encoder.EndToEndItemEncoder`). Counted in :attr:`ItemInputs.report`.

After loading, no file is opened and no title is tokenised again: a batch only indexes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from crossan.data.readers import read_item_table
from crossan.encoders.inputs import MediaSource, PixelInputs, TextInputs
from crossan.encoders.load import Encoder
from crossan.errors import DataError
from crossan.models.e2e.item_encoder import ItemBatch

log = logging.getLogger(__name__)

READ_CHUNK = 1024  # covers read from image.h5 at once (bounds the transient host memory)
EXAMPLES = 5  # masked covers named in the report


@dataclass
class ItemInputs:
    """Every item's encoder inputs, resident on one device. Row ``r`` is dense item ``r``;
    row 0 is padding (an empty title, no cover).

    Attributes:
        text: ``input_ids``, ``token_type_ids``, ``attention_mask``: ``long[n_items + 1, L]``.
        pixels: uint8 ``[n_items + 1, S, S, 3]`` (the processor is applied at :meth:`gather`)
            or float32 ``[n_items + 1, 3, S, S]`` already processed.
        has_image: ``bool[n_items + 1]``, False for padding and unreadable covers.
        item_ids: ``[n_items]`` original ids of dense ids ``1..n_items``.
        pixel_builder: the stage-1 :class:`~crossan.encoders.inputs.PixelInputs` that maps
            stored pixels to ``pixel_values``.
        report: counts for ``metrics.json``: ``empty_titles``, ``masked_covers``,
            ``masked_cover_examples`` (``"item_id: reason"``).
    """

    text: dict[str, Tensor]
    pixels: Tensor
    has_image: Tensor
    item_ids: list[str]
    pixel_builder: PixelInputs
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def device(self) -> torch.device:
        return self.pixels.device

    def gather(self, item_ids: Tensor) -> tuple[ItemBatch, dict[str, Tensor]]:
        """Inputs of ``item_ids`` (``long[N]``, dense ids, any device) on this device:
        ``(ItemBatch, {"image": has_image bool[N]})``; ``pixel_values`` float32 ``[N, 3, S, S]``."""
        index = item_ids.to(device=self.device, dtype=torch.long)
        text = {key: value.index_select(0, index) for key, value in self.text.items()}
        pixels = self.pixel_builder.to_device({"pixel_values": self.pixels.index_select(0, index)},
                                              self.device)["pixel_values"]
        has_image = self.has_image.index_select(0, index)
        return ItemBatch(text, pixels, has_image), {"image": has_image}


def tokenize_titles(builder: TextInputs, titles: list[str], device: torch.device) -> dict[str, Tensor]:
    """Every title (``[""] + titles``: row 0 is padding) tokenised once -> ``long[n + 1, L]`` each."""
    encoded = builder.prepare([""] + list(titles))
    return {key: value.to(device=device, dtype=torch.long) for key, value in encoded.items()}


def read_covers(
    image_h5: Path, encoder: Encoder, item_ids: list[str], device: torch.device
) -> tuple[Tensor, Tensor, PixelInputs, list[str]]:
    """Every cover of ``image_h5`` read once (in chunks of :data:`READ_CHUNK`).

    Returns ``(pixels, has_image, builder, reasons)``: pixels as :class:`ItemInputs` stores
    them (zeros where masked), ``has_image bool[n + 1]``, the stage-1 pixel builder, and the
    file's reason for each masked item (``""`` for valid ones; index 0 = padding).
    """
    source = MediaSource(image_h5, "image", item_ids)
    try:
        builder = PixelInputs(encoder, source.shape, source.path)
        n = len(item_ids)
        pixels: Tensor | None = None
        has_image = torch.zeros(n + 1, dtype=torch.bool)
        reasons = [""] * (n + 1)
        for start in range(1, n + 1, READ_CHUNK):
            raw = source.read(start, min(start + READ_CHUNK, n + 1))
            rows = torch.from_numpy(np.flatnonzero(raw.valid) + start)
            prepared = builder.prepare(raw.payload)["pixel_values"] if len(rows) else None
            if pixels is None and prepared is not None:
                pixels = prepared.new_zeros((n + 1, *prepared.shape[1:]))
            if prepared is not None:
                pixels[rows] = prepared
            has_image[rows] = True
            reasons[start : raw.stop] = raw.reasons
    finally:
        source.close()
    if pixels is None:
        raise DataError(f"{image_h5}: no item has a readable cover; an image model cannot be trained "
                        "(check the media stage's image_report.json)")
    return pixels.to(device), has_image.to(device), builder, reasons


def load_item_inputs(
    data_dir: Path, media_dir: Path, text_encoder: Encoder, image_encoder: Encoder,
    text_max_length: int, device: torch.device | str = "cpu",
) -> ItemInputs:
    """Titles of ``{data_dir}/items.csv`` and covers of ``{media_dir}/image.h5`` for the two
    encoders, on ``device`` (see the module docstring).

    Raises:
        DataError: a missing ``items.csv`` or ``image.h5``, or one that holds other items.
        ConfigError: covers stored at a side the image model does not take.
    """
    device = torch.device(device)
    table = read_item_table(Path(data_dir) / "items.csv")
    text = tokenize_titles(TextInputs(text_encoder, text_max_length), table.titles, device)
    pixels, has_image, builder, reasons = read_covers(Path(media_dir) / "image.h5", image_encoder,
                                                     table.item_ids, device)
    masked = [i for i in range(1, len(reasons)) if not bool(has_image[i])]
    report = {
        "empty_titles": sum(1 for title in table.titles if not title.strip()),
        "masked_covers": len(masked),
        "masked_cover_examples": [f"{table.item_ids[i - 1]}: {reasons[i] or 'invalid'}" for i in masked[:EXAMPLES]],
    }
    log.info("inputs: %d titles tokenised to %d tokens (%d empty), %d covers as %s on %s, "
             "%d masked (unreadable in stage 1)%s", len(table.titles), text["input_ids"].shape[1],
             report["empty_titles"], len(table.item_ids) - len(masked), tuple(pixels.shape[1:]), device,
             len(masked), f", e.g. {report['masked_cover_examples'][0]}" if masked else "")
    return ItemInputs(text, pixels, has_image, table.item_ids, builder, report)
