"""``item_towers.h5``: every item's tower outputs at a run's best checkpoint.

Table 1 reports the mutual information between the text and the image tower outputs over
all items (paper section 3.2: "the final outputs of the textual and visual adapters using
the optimal checkpoints ... processing all items"). The run writes those vectors once, so a
table rule reads them and never needs the model. Layout:

* ``outputs``: float32 ``[n_items, n_towers, item_dim]``, row ``i`` = dense item ``i + 1``,
  tower ``t`` = attribute ``towers[t]`` (``text``, ``image``, ..., IISAN's ``inter``);
* ``available``: bool ``[n_items, n_towers]``, False where the item's media for that tower
  could not be read (its states were zero); IISAN's inter tower: any modality available;
* ``item_id``: the original item ids;
* attributes ``towers`` (names) and ``run_name``.

Runs without content (``id-sasrec``, ``popularity``) write the same file with no towers
(``outputs`` ``[n_items, 0, 0]``), so every run has the same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from crossan.atomic import atomic_output
from crossan.errors import DataError
from crossan.progress import Progress

if TYPE_CHECKING:
    from torch import nn

CHUNK = 4096  # items through the towers at once


@dataclass
class ItemTowers:
    """What ``item_towers.h5`` holds (see the module docstring for shapes)."""

    outputs: np.ndarray
    available: np.ndarray
    towers: tuple[str, ...]
    item_ids: list[str]
    run_name: str = ""

    def tower(self, name: str) -> np.ndarray:
        """``[n_items, item_dim]`` outputs of tower ``name``."""
        if name not in self.towers:
            raise DataError(f"run {self.run_name or '?'} has no {name!r} tower (it has: "
                            f"{', '.join(self.towers) or 'none'})")
        return self.outputs[:, self.towers.index(name)]


def compute_item_towers(model: nn.Module, states, run_name: str = "", chunk: int = CHUNK,
                        progress: Progress | None = None) -> ItemTowers:
    """Every item's tower outputs through ``model``'s content item encoder (eval mode).

    ``states``: the run's :class:`~crossan.train.inputs.ItemStates` (rows ``1..n_items``), or an
    end-to-end run's :class:`~crossan.train.e2e_inputs.ItemInputs`: anything whose
    ``gather(ids)`` gives what the item encoder's ``tower_outputs`` and ``availability`` read.
    ``chunk``: items at once. ``progress``: counts the ``n_items`` items as they are done.
    """
    import torch  # only training needs torch; tables read the file without it

    encoder = model.item_encoder
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ids = torch.arange(1, states.n_items + 1)
            outputs, available = [], []
            for start in range(0, len(ids), chunk):
                gathered, has = states.gather(ids[start : start + chunk])
                outputs.append(encoder.tower_outputs(gathered).float().cpu())
                mask = encoder.availability(gathered, has)
                available.append(mask.cpu() if mask is not None
                                 else torch.ones(outputs[-1].shape[:2], dtype=torch.bool))
                if progress is not None:
                    progress.update(len(outputs[-1]))
    finally:
        model.train(was_training)
    return ItemTowers(
        outputs=torch.cat(outputs).numpy(),
        available=torch.cat(available).numpy(),
        towers=tuple(encoder.tower_names),
        item_ids=list(states.item_ids),
        run_name=run_name,
    )


def empty_item_towers(item_ids: list[str], run_name: str = "") -> ItemTowers:
    """The file of a run without content: no towers."""
    n = len(item_ids)
    return ItemTowers(np.zeros((n, 0, 0), np.float32), np.zeros((n, 0), bool), (), list(item_ids), run_name)


def write_item_towers(path: Path, towers: ItemTowers) -> None:
    """Write ``towers`` to ``path`` atomically (temp name, then rename)."""
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("outputs", data=towers.outputs.astype(np.float32))
            handle.create_dataset("available", data=towers.available.astype(bool))
            handle.create_dataset("item_id", data=np.array(towers.item_ids, dtype=object),
                                  dtype=h5py.string_dtype())
            handle.attrs["towers"] = list(towers.towers) or [""]
            handle.attrs["n_towers"] = len(towers.towers)
            handle.attrs["run_name"] = towers.run_name


def read_item_towers(path: Path) -> ItemTowers:
    """Read a file written by :func:`write_item_towers`; a missing or unreadable one is a
    :class:`DataError` that says to rerun the run."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            n_towers = int(handle.attrs["n_towers"])
            return ItemTowers(
                outputs=handle["outputs"][...],
                available=handle["available"][...],
                towers=tuple(str(name) for name in handle.attrs["towers"][:n_towers]),
                item_ids=[x.decode() if isinstance(x, bytes) else str(x) for x in handle["item_id"][...]],
                run_name=str(handle.attrs["run_name"]),
            )
    except (OSError, KeyError) as error:
        raise DataError(f"{path}: cannot read the run's tower outputs ({error}); rerun the run "
                        f"(delete its folder and ask for its metrics.json)") from error
