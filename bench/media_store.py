"""Benchmark: the compact media store (JPEG frames and covers) against raw uint8 arrays.

The same items are sampled by ``sample-media`` at 224 px once raw (``jpeg_quality`` 0, the
layout before the compact store) and once per JPEG quality asked for; then, side by side in
this one run:

* bytes per item of ``video.h5`` and ``image.h5`` (file size / items; every item is valid),
  the ratio to raw, and the store extrapolated to MicroLens-100K (19,738 items, 16 frames);
* sampling time per item (video decoding plus, for JPEG, encoding in the sampler);
* read time per item through :class:`~crossan.encoders.inputs.MediaSource`, what feature
  extraction and the end-to-end runs read with (JPEG decoded on read), batches of 8, page
  cache warm, best of ``--repeats``;
* the difference JPEG makes: PSNR of the decoded pixels against raw, and of the pooled hidden
  states of every layer of the tiny encoders built at 224 px (VideoMAE mean pooling, ViT
  [CLS], the pipeline's own input path): mean cosine similarity, relative L2
  ``|f_jpeg - f_raw| / |f_raw|`` and the L2 relative to the spread between items
  ``|f_jpeg - f_raw| / mean_i |f_raw_i - mean f_raw|``, next to the float16 rounding the
  feature cache applies anyway.

Content sets (``--sets``):

* ``natural``: clips panning over two natural images shipped with matplotlib (the Grace
  Hopper photograph, 512x600, and a hill-shaded elevation map, 403x344) at their own
  resolution (512x288 and 400x224 windows, 3.2 s at 25 fps, sensor noise sigma 2), encoded
  as H.264 CRF 23 like web video; covers are crops of the same images saved as JPEG.
  Two source images only: real videos are more varied (text overlays, sharp edges, film
  grain), so real stores may be larger; ``--videos``/``--covers`` measure your own files.
* ``noise``: moving uniform noise (and noise covers), what JPEG cannot compress: the worst case.
* ``demo``: the demo's first items (synthetic, blocky), when ``resources/demo`` exists.

    python bench/media_store.py                          # every set, qualities 75 85 90
    python bench/media_store.py --sets natural --items 48 --qualities 90
    python bench/media_store.py --videos DIR --covers DIR   # your own .mp4 / .jpg (same ids)

The tiny encoders are random-initialised stand-ins: they show how far JPEG moves the inputs
through a ViT/VideoMAE of the real architecture, not how a trained model's features move.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import PIL
import torch
import transformers
from matplotlib import cbook, colormaps
from matplotlib.colors import LightSource
from PIL import Image, features

from crossan.data.layout import DatasetLayout, load_manifest
from crossan.data.readers import read_item_ids
from crossan.encoders.inputs import MediaSource, PixelInputs
from crossan.encoders.load import load_encoder
from crossan.encoders.pooling import POOLING, pool
from crossan.encoders.tiny import TinySpec, build_tiny_encoders
from crossan.media.encode import write_mp4
from crossan.media.sample import FILE_NAMES, sample_media
from crossan.media.store import JPEG_SUBSAMPLING

MICROLENS_ITEMS = 19_738
SIZE = 224
FPS = 25
CLIP_FRAMES = 80  # 3.2 s: the sampler takes the first 3 s
MODALITIES = ("video", "image")  # the stores compared
DEMO = Path("resources/demo/dataset.json")


# ---------------------------------------------------------------- content


def natural_sources() -> list[np.ndarray]:
    """uint8 ``[H, W, 3]`` natural images shipped with matplotlib: a photograph and a
    hill-shaded elevation map."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
        photo = np.asarray(image.convert("RGB"))
    elevation = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"].astype(float)
    shaded = LightSource(315, 45).shade(
        elevation, cmap=colormaps["gist_earth"], blend_mode="overlay", vert_exag=0.05
    )
    return [photo, (shaded[..., :3] * 255).astype(np.uint8)]


def panning_clip(source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``[CLIP_FRAMES, h, w, 3]``: a 16:9 window (w even) of ``source`` at its own
    resolution moving about 1 px per frame, with Gaussian sensor noise (sigma 2)."""
    height, width = source.shape[:2]
    w = min(width, 512) // 2 * 2
    h = min(height, w * 9 // 16) // 2 * 2
    travel_y, travel_x = height - h, width - w
    y0, x0 = rng.integers(0, travel_y // 2 + 1), rng.integers(0, travel_x // 2 + 1)
    dy, dx = rng.uniform(0.3, 1.2) * rng.choice([-1, 1]), rng.uniform(0.0, 0.5)
    frames = []
    for t in range(CLIP_FRAMES):
        y = int(np.clip(y0 + dy * t if dy > 0 else y0 + travel_y // 2 + dy * t, 0, travel_y))
        x = int(np.clip(x0 + dx * t, 0, travel_x))
        noisy = source[y : y + h, x : x + w] + rng.normal(0, 2, (h, w, 3))
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(frames)


def natural_cover(source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 3:4 crop of ``source`` (a portrait thumbnail)."""
    height, width = source.shape[:2]
    h = min(height, width * 4 // 3) - 8
    w = h * 3 // 4
    y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    return np.ascontiguousarray(source[y : y + h, x : x + w])


def write_natural(root: Path, count: int) -> list[str]:
    sources, rng = natural_sources(), np.random.default_rng(0)
    ids = []
    for n in range(count):
        source = sources[n % len(sources)]
        write_mp4(root / "videos" / f"n{n}.mp4", panning_clip(source, rng), FPS)
        Image.fromarray(natural_cover(source, rng)).save(root / "covers" / f"n{n}.jpg", quality=90)
        ids.append(f"n{n}")
    return ids


def write_noise(root: Path, count: int) -> list[str]:
    """Uniform noise moving 1 px per frame at 320x180 (upscaled by the sampler: blocky noise)
    and noise covers: JPEG's worst case."""
    rng, ids = np.random.default_rng(1), []
    for n in range(count):
        texture = rng.integers(0, 256, (180 + CLIP_FRAMES, 320 + CLIP_FRAMES, 3), dtype=np.uint8)
        frames = np.stack([texture[t : t + 180, t : t + 320] for t in range(CLIP_FRAMES)])
        write_mp4(root / "videos" / f"z{n}.mp4", frames, FPS)
        cover = rng.integers(0, 256, (400, 300, 3), dtype=np.uint8)
        Image.fromarray(cover).save(root / "covers" / f"z{n}.jpg", quality=90)
        ids.append(f"z{n}")
    return ids


def make_layout(root: Path, write: Callable[[Path, int], list[str]], count: int) -> tuple[DatasetLayout, Path]:
    """A local dataset in the MicroLens layout under ``root`` and its item_ids.csv."""
    (root / "videos").mkdir(parents=True)
    (root / "covers").mkdir()
    ids = write(root, count)
    return local_layout(root / "covers", root / "videos", ids, root)


def local_layout(covers: Path, videos: Path, ids: list[str], root: Path) -> tuple[DatasetLayout, Path]:
    (root / "pairs.csv").write_text("user,item,timestamp\n")
    (root / "titles.csv").write_text("")
    items_csv = root / "item_ids.csv"
    with items_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dense_id", "item_id"])
        writer.writerows((row, item) for row, item in enumerate(ids, start=1))
    layout = DatasetLayout("bench", "local", root / "pairs.csv", root / "titles.csv", covers, videos)
    return layout, items_csv


def demo_layout(root: Path, count: int) -> tuple[DatasetLayout, Path] | None:
    if not DEMO.is_file():
        return None
    demo = load_manifest(DEMO)
    ids = sorted(p.stem for p in Path(demo.videos).glob("*.mp4"))[:count]
    root.mkdir(parents=True)
    return local_layout(Path(demo.covers), Path(demo.videos), ids, root)


# ---------------------------------------------------------------- measurements


@dataclass
class Store:
    """One sampled store: its folder, how long sampling took, its item ids."""

    folder: Path
    sample_s: float
    ids: list[str]

    def path(self, modality: str) -> Path:
        return self.folder / FILE_NAMES[modality]


def sample(layout: DatasetLayout, items_csv: Path, out: Path, quality: int) -> Store:
    began = time.perf_counter()
    sample_media(layout, items_csv, out, modalities=("video", "image"), video_size=SIZE,
                 image_size=SIZE, jpeg_quality=quality, workers=0, progress=False)
    return Store(out, time.perf_counter() - began, read_item_ids(items_csv))


def read_all(store: Store, modality: str, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Every item as a reader gets it: uint8 ``[valid, *shape]`` and the valid mask."""
    source = MediaSource(store.path(modality), modality, store.ids)
    try:
        parts, valid = [], []
        for start in range(1, len(store.ids) + 1, batch):
            raw = source.read(start, min(start + batch, len(store.ids) + 1))
            parts.append(raw.payload)
            valid.append(raw.valid)
        return np.concatenate(parts), np.concatenate(valid)
    finally:
        source.close()


def read_seconds(store: Store, modality: str, repeats: int) -> float:
    """Best wall time of ``repeats`` full reads (the first read warms the page cache)."""
    read_all(store, modality)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        read_all(store, modality)
        best = min(best, time.perf_counter() - began)
    return best


def pooled_states(encoder_dir: Path, modality: str, pixels: np.ndarray) -> np.ndarray:
    """float32 ``[items, layers + 1, hidden]``: every hidden state pooled the pipeline's way,
    from uint8 ``pixels`` (``[items, *shape]``, as a store reads) through the pipeline's input
    builder."""
    encoder = load_encoder(modality, str(encoder_dir))
    builder = PixelInputs(encoder, pixels.shape[1:], Path("bench"))
    layers = list(range(encoder.model.config.num_hidden_layers + 1))
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), 4):
            inputs = builder.to_device(builder.prepare(pixels[start : start + 4]), torch.device("cpu"))
            states = encoder.model(**inputs, output_hidden_states=True).hidden_states
            out.append(pool(states, layers, POOLING[modality]).numpy())
    return np.concatenate(out)


def feature_difference(raw: np.ndarray, other: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer ``[layers]``: mean cosine, mean relative L2, mean L2 / item spread (NaN for a
    layer whose state is the same for every item: ViT's [CLS] before the first block)."""
    difference = np.linalg.norm(other - raw, axis=-1)  # [items, layers]
    norm = np.linalg.norm(raw, axis=-1)
    cosine = (other * raw).sum(-1) / np.maximum(np.linalg.norm(other, axis=-1) * norm, 1e-12)
    spread = np.linalg.norm(raw - raw.mean(0), axis=-1).mean(0)  # [layers]
    constant = spread <= 1e-6 * norm.mean(0)
    return {
        "cosine": cosine.mean(0),
        "relative": (difference / np.maximum(norm, 1e-12)).mean(0),
        "spread": np.where(constant, np.nan, difference.mean(0) / np.where(constant, 1, spread)),
    }


def jpeg_round_trip(pixels: np.ndarray, quality: int, subsampling: int) -> tuple[np.ndarray, float]:
    """``pixels`` (uint8 ``[..., S, S, 3]``) through PIL's JPEG at ``quality`` and
    ``subsampling`` (0 = 4:4:4, 2 = 4:2:0); returns them decoded and the bytes per image."""
    images = pixels.reshape(-1, *pixels.shape[-3:])
    out, total = np.empty_like(images), 0
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
        total += buffer.tell()
        with Image.open(buffer) as decoded:
            out[index] = np.asarray(decoded.convert("RGB"))
    return out.reshape(pixels.shape), total / len(images)


def chunk_compression(frames: np.ndarray, path: Path, compression: str, level: int | None,
                      repeats: int) -> tuple[float, float, float]:
    """The raw layout's frames (uint8 ``[n, F, S, S, 3]``, one item per chunk) under an HDF5
    chunk filter: ``(bytes per item, write s per item, read s per item)``."""
    began = time.perf_counter()
    with h5py.File(path, "w") as file:
        file.create_dataset("frames", data=frames, chunks=(1, *frames.shape[1:]),
                            compression=compression, compression_opts=level)
    write_s = (time.perf_counter() - began) / len(frames)
    best = float("inf")
    for _ in range(repeats + 1):  # the first read warms the page cache
        began = time.perf_counter()
        with h5py.File(path, "r") as file:
            for start in range(0, len(frames), 8):
                file["frames"][start : start + 8]
        best = min(best, time.perf_counter() - began)
    return path.stat().st_size / len(frames), write_s, best / len(frames)


def psnr(raw: np.ndarray, other: np.ndarray) -> float:
    mse = float(np.mean((raw.astype(np.float64) - other.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def layers_text(values: np.ndarray, digits: int) -> str:
    return " ".join("-" if np.isnan(v) else f"{v:.{digits}f}" for v in values)


# ---------------------------------------------------------------- report


def report_set(label: str, layout: DatasetLayout, items_csv: Path, work: Path,
               qualities: list[int], encoders: dict[str, Path], repeats: int) -> None:
    sample(layout, items_csv, work / "warm-up", 0)  # first-call costs out of the timings
    stores = {q: sample(layout, items_csv, work / f"q{q}", q) for q in [0, *qualities]}
    n = len(stores[0].ids)
    raw = {m: read_all(stores[0], m) for m in MODALITIES}  # (pixels of the valid items, valid mask)
    valid = {m: int(raw[m][1].sum()) for m in MODALITIES}
    print(f"\n== {label}: {n} items ({valid['video']} valid videos, {valid['image']} valid covers), "
          f"{SIZE} px, 16 frames; read = MediaSource, batches of 8, best of {repeats}")
    print(f"{'store':<10}{'video kB/item':>14}{'x raw':>7}{'image kB/item':>14}{'x raw':>7}"
          f"{'sample ms/item':>15}{'read video ms':>14}{'read image ms':>14}"
          f"{'MicroLens video':>16}{'+ image':>9}")
    base = {m: stores[0].path(m).stat().st_size / n for m in MODALITIES}
    for quality, store in stores.items():
        size = {m: store.path(m).stat().st_size / n for m in MODALITIES}
        read_ms = {m: 1000 * read_seconds(store, m, repeats) / n for m in MODALITIES}
        name = "raw" if quality == 0 else f"jpeg q{quality}"
        print(f"{name:<10}{size['video'] / 1e3:>14.1f}{size['video'] / base['video']:>7.3f}"
              f"{size['image'] / 1e3:>14.1f}{size['image'] / base['image']:>7.3f}"
              f"{1000 * store.sample_s / n:>15.1f}{read_ms['video']:>14.2f}{read_ms['image']:>14.2f}"
              f"{size['video'] * MICROLENS_ITEMS / 1e9:>13.2f} GB"
              f"{size['image'] * MICROLENS_ITEMS / 1e9:>6.2f} GB")
    frames = raw["video"][0]
    print("HDF5 chunk compression of the raw frames instead (one item per chunk):")
    for name, compression, level in (("gzip-1", "gzip", 1), ("gzip-6", "gzip", 6), ("lzf", "lzf", None)):
        size, write_s, read_s = chunk_compression(frames, work / f"{name}.h5", compression, level,
                                                  repeats)
        print(f"  {name:<8}{size / 1e3:>9.1f} kB/item ({size / base['video']:.3f} x raw), write "
              f"{1000 * write_s:.1f} ms/item, read {1000 * read_s:.2f} ms/item, MicroLens video "
              f"{size * MICROLENS_ITEMS / 1e9:.2f} GB")
    print("feature difference against raw (tiny encoders at 224 px, random init; per hidden "
          "state 0..6):")
    raw_states = {}
    for modality in MODALITIES:
        raw_pixels = raw[modality][0]
        raw_states[modality] = pooled_states(encoders[modality], modality, raw_pixels)
        half = feature_difference(raw_states[modality], raw_states[modality].astype(np.float16).astype(np.float32))
        print(f"  {modality} ({POOLING[modality]} pooling), float16 rounding of the feature "
              f"cache for scale: relative L2 {np.nanmean(half['relative']):.5f}, / item spread "
              f"{np.nanmean(half['spread']):.5f}")
        for quality in qualities:
            pixels, _ = read_all(stores[quality], modality)
            diff = feature_difference(raw_states[modality], pooled_states(encoders[modality], modality, pixels))
            print(f"  {modality} q{quality}: PSNR {psnr(raw_pixels, pixels):.1f} dB; cosine "
                  f"{layers_text(diff['cosine'], 6)}; relative L2 {layers_text(diff['relative'], 4)}"
                  f"; / item spread {layers_text(diff['spread'], 4)}")
    # Why the store keeps full chroma: the same frames at PIL's default 4:2:0 instead.
    raw_pixels = raw["video"][0]
    print(f"chroma subsampling (video, PIL directly; the store uses {JPEG_SUBSAMPLING}):")
    for quality in qualities:
        for name, code in (("4:4:4", 0), ("4:2:0", 2)):
            pixels, per_image = jpeg_round_trip(raw_pixels, quality, code)
            diff = feature_difference(raw_states["video"], pooled_states(encoders["video"], "video", pixels))
            print(f"  q{quality} {name}: {per_image * 16 / 1e3:.1f} kB/item, PSNR "
                  f"{psnr(raw_pixels, pixels):.1f} dB, / item spread (mean over layers) "
                  f"{np.nanmean(diff['spread']):.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["natural", "noise", "demo"],
                        choices=["natural", "noise", "demo"], help="content sets")
    parser.add_argument("--items", type=int, default=24, help="items per set (noise: a third)")
    parser.add_argument("--qualities", type=int, nargs="+", default=[75, 85, 90])
    parser.add_argument("--repeats", type=int, default=3, help="reads, best of N")
    parser.add_argument("--videos", type=Path, help="your own .mp4 folder (with --covers)")
    parser.add_argument("--covers", type=Path, help="your own .jpg folder, same ids as --videos")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    turbo = "libjpeg-turbo" if features.check_feature("libjpeg_turbo") else "libjpeg"
    print(f"Pillow {PIL.__version__} ({turbo} {features.version('jpg')}), torch {torch.__version__}, "
          "1 thread")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        encoders = build_tiny_encoders(work / "models", ["a title"], spec=TinySpec(image_size=SIZE))
        sets: list[tuple[str, tuple[DatasetLayout, Path] | None]] = []
        if args.videos:
            ids = sorted(p.stem for p in args.videos.glob("*.mp4"))[: args.items]
            covers = args.covers or args.videos
            sets.append((f"your files ({args.videos})",
                         local_layout(covers, args.videos, ids, work / "own")))
        else:
            if "natural" in args.sets:
                sets.append(("natural (H.264 of two natural images, panning)",
                             make_layout(work / "natural", write_natural, args.items)))
            if "noise" in args.sets:
                sets.append(("noise (worst case)",
                             make_layout(work / "noise", write_noise, max(2, args.items // 3))))
            if "demo" in args.sets:
                sets.append(("demo (synthetic)", demo_layout(work / "demo", args.items)))
        for label, made in sets:
            if made is None:
                print(f"\n== {label}: skipped, no {DEMO} (run the demo workflow first)")
                continue
            report_set(label, *made, work / label.split()[0], args.qualities, encoders,
                       args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
