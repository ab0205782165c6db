"""Benchmark: the whole feature-extraction path against a bare model forward, per modality.

For each modality the same items are run two ways in one process:

* **bare**: the inputs of every batch are built beforehand (tokenizer / processor / feature
  extractor), then only ``model(**inputs, output_hidden_states=True)`` is timed;
* **whole**: :func:`crossan.encoders.extract.extract` from the cached media to the finished
  HDF5 file (reading, preprocessing, forward, pooling, chunked writes, rename), minus the
  model-loading time measured separately, which is paid once per job.

Each is run ``--repeats`` times, alternating, and the fastest of each is kept: other work on
the machine only ever slows a run down, so the minimum is the closest to the code's own cost.
The ratio whole/bare of items per second says how close the pipeline gets to the model's own
speed (target >= 0.9). Two model sizes: the demo's tiny encoders on all demo items, and
randomly initialised **base-size** models (768-d, 12 layers: the paper's architectures), on
a few items at 224 px for the media encoders and on more titles for BERT (a title costs
milliseconds, so 8 of them would measure the job's fixed costs, not the per-item path),
whose per-item CPU cost tells users what real MicroLens would take.

    python bench/extract.py                   # needs `snakemake --cores 2 all` on the demo
    python bench/extract.py --base-items 8 --base-titles 256 --skip-tiny
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch
import transformers

from crossan.data.layout import load_manifest
from crossan.encoders.extract import extract
from crossan.encoders.inputs import open_inputs
from crossan.encoders.load import load_encoder
from crossan.encoders.tiny import TinySpec, build_tiny_encoders
from crossan.media.sample import sample_media
from crossan.runs.vocabulary import MODALITIES

ARCH = {"text": "bert", "image": "vit", "video": "videomae", "audio": "ast"}
BASE_SPEC = TinySpec(
    hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
    image_size=224, vocab_size=30522, max_position=512,
)


def bare_forward(modality: str, model: str, items_csv: Path, media: Path | None, batch_size: int) -> tuple[int, float]:
    """Items and seconds of the model forward alone over pre-built batches."""
    encoder = load_encoder(modality, model)
    source, builder = open_inputs(encoder, items_csv, media)
    batches, n_items = [], 0
    total = _count_items(items_csv)
    for start in range(1, total + 1, batch_size):
        raw = source.read(start, min(start + batch_size, total + 1))
        if int(raw.valid.sum()):
            batches.append(builder.to_device(builder.prepare(raw.payload), torch.device("cpu")))
            n_items += int(raw.valid.sum())
    source.close()
    with torch.inference_mode():
        encoder.model(**batches[0], output_hidden_states=True)  # warm-up, not timed
        began = time.perf_counter()
        for inputs in batches:
            encoder.model(**inputs, output_hidden_states=True)
        seconds = time.perf_counter() - began
    return n_items, seconds


def whole_path(modality: str, model: str, items_csv: Path, media: Path | None, batch_size: int, out: Path) -> tuple[int, float]:
    """Items and seconds of the full extraction, model loading excluded."""
    began = time.perf_counter()
    num_layers = load_encoder(modality, model).num_layers
    load_seconds = time.perf_counter() - began
    began = time.perf_counter()
    report = extract(
        modality, model, items_csv=items_csv, out=out, media=media,
        layers=tuple(range(num_layers + 1)),
        batch_size=batch_size, device="cpu", progress=False,
    )
    seconds = time.perf_counter() - began - load_seconds
    return report.items_computed, seconds


def _count_items(items_csv: Path) -> int:
    with items_csv.open() as handle:
        return sum(1 for _ in handle) - 1


def compare(
    label: str, models: dict[str, Path], items_csv: Path, media_dir: Path, batch_sizes: dict[str, int],
    work: Path, modalities: tuple[str, ...] = MODALITIES, header: bool = True, repeats: int = 3,
) -> None:
    if header:
        print(f"\n{label}")
        print(f"{'modality':<8} {'items':>6} {'bare items/s':>13} {'whole items/s':>14} {'ratio':>6} {'s/item (whole)':>15}")
    for modality in modalities:
        media = None if modality == "text" else media_dir / f"{modality}.h5"
        model = str(models[modality])
        bare_s = whole_s = float("inf")
        for repeat in range(repeats):
            n_bare, seconds = bare_forward(modality, model, items_csv, media, batch_sizes[modality])
            bare_s = min(bare_s, seconds)
            out = work / f"{label[:4]}-{modality}-{repeat}.h5"
            n_whole, seconds = whole_path(modality, model, items_csv, media, batch_sizes[modality], out)
            whole_s = min(whole_s, seconds)
        bare_rate, whole_rate = n_bare / bare_s, n_whole / whole_s
        print(f"{modality:<8} {n_whole:>6} {bare_rate:>13.1f} {whole_rate:>14.1f} {whole_rate / bare_rate:>6.2f} {whole_s / n_whole:>15.4f}")


def first_items(items_csv: Path, count: int, out: Path) -> Path:
    with items_csv.open(newline="") as source, out.open("w", newline="") as target:
        rows = csv.reader(source)
        writer = csv.writer(target)
        for index, row in enumerate(rows):
            if index > count:
                break
            writer.writerow(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--base-items", type=int, default=8, help="items for the base-size media models")
    parser.add_argument("--base-titles", type=int, default=256, help="titles for the base-size BERT")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path; the fastest counts")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--skip-base", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")  # AST's "empty mel filter" notice, once per load
    data = Path("results") / args.dataset / "data"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_tiny:
            tiny_dir = Path("resources/models") / f"tiny-{args.dataset}"
            models = {m: tiny_dir / ARCH[m] for m in MODALITIES}
            batches = {"text": 64, "image": 32, "video": 4, "audio": 8}
            compare("tiny encoders, all demo items", models, data / "items.csv",
                    Path("results") / args.dataset / "media", batches, work, repeats=args.repeats)
        if not args.skip_base:
            items_csv = first_items(data / "items.csv", args.base_items, work / "items.csv")
            titles_csv = first_items(data / "items.csv", args.base_titles, work / "titles.csv")
            layout = load_manifest(Path("resources") / args.dataset / "dataset.json")
            sample_media(layout, items_csv, work / "media", video_size=224, image_size=224,
                         workers=2, progress=False)
            titles = [row["title"] for row in csv.DictReader(titles_csv.open())]
            models = build_tiny_encoders(work / "base", titles, spec=BASE_SPEC)
            batches = {"text": 64, "image": 4, "video": 2, "audio": 4}
            compare(f"base-size random-init encoders (768-d, 12 layers, 224 px): "
                    f"{args.base_titles} titles, {args.base_items} items of each medium",
                    models, titles_csv, work / "media", batches, work, modalities=("text",),
                    repeats=args.repeats)
            compare("", models, items_csv, work / "media", batches, work,
                    modalities=MODALITIES[1:], header=False, repeats=args.repeats)


if __name__ == "__main__":
    main()
