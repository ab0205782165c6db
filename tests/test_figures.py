"""Paper Figures 3-5: plotted data, axes, orientation, shared scales, reproducible saving."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from crossan.results.figures import (
    BEST_RING_LABEL,
    figure3_hidden_size,
    figure4_gate_heatmaps,
    figure5_sensitivity,
    save_figure,
)

SIZES = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
IISAN = {h: (0.05 + 0.001 * i, 0.002) for i, h in enumerate(SIZES)}  # best at 8192
CROSSAN = {h: (0.07 - 0.001 * abs(i - 3), 0.0) for i, h in enumerate(SIZES)}  # best at 256

GATES = {
    "text": {
        "sources": ["H", "T", "I"],
        "values": [[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5], [0.0, 0.05, 0.95]],
    },
    "image": {
        "sources": ["H", "T", "I"],
        "values": [[0.6, 0.2, 0.2], [0.3, 0.3, 0.4], [0.2, 0.1, 0.7], [0.34, 0.33, 0.33]],
    },
}

HIDDEN = {
    "HR@10": {64: (0.10, 0.01), 128: (0.12, 0.01), 256: (0.11, 0.0)},
    "NDCG@10": {64: (0.05, 0.0), 128: (0.06, 0.0), 256: (0.055, 0.0)},
    "HR@20": {64: (0.15, 0.0), 128: (0.17, 0.0), 256: (0.16, 0.0)},
    "NDCG@20": {64: (0.065, 0.0), 128: (0.075, 0.0), 256: (0.07, 0.0)},
}
LR = {
    "HR@10": {1e-5: (0.09, 0.0), 5e-5: (0.11, 0.0), 1e-4: (0.12, 0.0)},
    "NDCG@10": {1e-5: (0.04, 0.0), 5e-5: (0.05, 0.0), 1e-4: (0.06, 0.0)},
    "HR@20": {1e-5: (0.14, 0.0), 5e-5: (0.16, 0.0), 1e-4: (0.17, 0.0)},
    "NDCG@20": {1e-5: (0.055, 0.0), 5e-5: (0.065, 0.0), 1e-4: (0.075, 0.0)},
}


def lines_of(ax) -> list[ErrorbarContainer]:
    """The plotted series of an axes, in drawing order."""
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def xy(container: ErrorbarContainer) -> tuple[list[float], list[float]]:
    data = container.lines[0].get_xydata()
    return data[:, 0].tolist(), data[:, 1].tolist()


def tick_texts(labels) -> list[str]:
    return [t.get_text() for t in labels]


def text_strings(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


# --------------------------------------------------------------------------- Figure 3


def test_figure3_lines_scale_legend_and_error_bars():
    fig = figure3_hidden_size({"IISAN-E": IISAN, "CROSSAN": CROSSAN}, title="Fig 3")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    series = lines_of(ax)
    assert [c.get_label() for c in series] == ["IISAN-E", "CROSSAN"]
    for container, points in zip(series, [IISAN, CROSSAN]):
        xs, ys = xy(container)
        assert xs == SIZES
        assert ys == pytest.approx([points[h][0] for h in SIZES])
        assert container.lines[0].get_marker() == "o"

    assert ax.get_xscale() == "log"
    assert ax.xaxis.get_transform().base == 2
    assert tick_texts(ax.get_xticklabels()) == [str(h) for h in SIZES]
    assert list(ax.get_xticks()) == SIZES
    assert ax.get_xlabel() == "adapter hidden size h"
    assert ax.get_ylabel() == "HR@10"
    assert tick_texts(ax.get_legend().get_texts()) == ["IISAN-E", "CROSSAN", BEST_RING_LABEL]
    assert fig.get_suptitle() == "Fig 3"

    # IISAN-E has std 0.002 everywhere: one vertical bar per point from mean-std to mean+std.
    iisan, crossan = series
    assert iisan.has_yerr and not crossan.has_yerr
    (bars,) = iisan.lines[2]
    segments = bars.get_segments()
    assert len(segments) == len(SIZES)
    for segment, h in zip(segments, SIZES):
        mean, std = IISAN[h]
        np.testing.assert_allclose(segment, [[h, mean - std], [h, mean + std]])

    # Each method's best point is circled: (8192, IISAN max) and (256, CROSSAN max).
    best = {c.get_gid(): c.get_offsets() for c in ax.collections if c.get_gid()}
    assert set(best) == {"best:IISAN-E", "best:CROSSAN"}
    np.testing.assert_allclose(best["best:IISAN-E"], [[8192, IISAN[8192][0]]])
    np.testing.assert_allclose(best["best:CROSSAN"], [[256, 0.07]])


def test_figure3_sorts_sizes_keeps_series_order_and_tolerates_an_empty_method():
    shuffled = {512: (0.3, 0.0), 32: (0.1, 0.0), 128: (0.2, 0.0)}
    fig = figure3_hidden_size({"B": shuffled, "A": {}, "C": {64: (0.5, 0.0)}}, metric="NDCG@10")
    (ax,) = fig.axes
    b, a, c = lines_of(ax)
    assert xy(b) == ([32, 128, 512], pytest.approx([0.1, 0.2, 0.3]))
    assert xy(a) == ([], [])
    assert xy(c) == ([64], [0.5])
    assert tick_texts(ax.get_legend().get_texts()) == ["B", "A", "C", BEST_RING_LABEL]
    assert tick_texts(ax.get_xticklabels()) == ["32", "64", "128", "512"]
    assert ax.get_ylabel() == "NDCG@10"
    assert not any(c.has_yerr for c in lines_of(ax))


# --------------------------------------------------------------------------- Figure 4


def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


def test_figure4_panels_orientation_shared_scale_and_annotations():
    fig = figure4_gate_heatmaps(GATES, title="Gates")
    axes = panels(fig)
    assert len(axes) == 2
    assert len(fig.axes) == 3  # two panels and one colourbar
    assert [ax.get_title() for ax in axes] == ["Text", "Image"]
    assert fig.get_suptitle() == "Gates"

    all_values = np.array([GATES[t]["values"] for t in GATES])
    for ax, tower in zip(axes, GATES.values()):
        (image,) = ax.images
        values = np.array(tower["values"])
        np.testing.assert_allclose(image.get_array(), values)
        # Same colour scale everywhere: min/max over both towers.
        assert image.get_clim() == pytest.approx((all_values.min(), all_values.max()))

        # Layer 0 is drawn at the bottom: array row 0 sits at the lowest y on screen and the
        # lowest y tick is labelled "0", the top one "3".
        assert image.origin == "lower"
        ticks = ax.get_yticks()
        screen_y = [ax.transData.transform((0, t))[1] for t in ticks]
        labels = tick_texts(ax.get_yticklabels())
        assert labels[int(np.argmin(screen_y))] == "0"
        assert labels[int(np.argmax(screen_y))] == "3"
        assert tick_texts(ax.get_xticklabels()) == tower["sources"]

        # One annotation per cell, at (source, layer), showing the value to 2 decimals.
        texts = {(t.get_position()): t.get_text() for t in ax.texts}
        assert len(ax.texts) == values.size
        for layer, row in enumerate(values):
            for source, value in enumerate(row):
                assert texts[(source, layer)] == f"{value:.2f}"

    # Readable text: white on the darkest cell (0.95), black on the lightest (0.0).
    text_ax = axes[0]
    colours = {t.get_text(): t.get_color() for t in text_ax.texts}
    assert colours["0.95"] == "white"
    assert colours["0.00"] == "black"


def test_figure4_one_tower_any_shape_and_five_towers():
    fig = figure4_gate_heatmaps({"audio": {"sources": ["H", "A"], "values": [[0.7, 0.3]]}})
    (ax,) = panels(fig)
    assert ax.get_title() == "Audio"
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.7, 0.3]])
    assert text_strings(ax) == ["0.70", "0.30"]

    five = {f"t{i}": {"sources": list("HTIVA"), "values": np.eye(5)[:i + 1]} for i in range(5)}
    fig = figure4_gate_heatmaps(five)
    assert [ax.get_title() for ax in panels(fig)] == [f"T{i}" for i in range(5)]
    assert [ax.images[0].get_array().shape for ax in panels(fig)] == [(i + 1, 5) for i in range(5)]


# --------------------------------------------------------------------------- Figure 5


def test_figure5_grid_scales_and_lines():
    fig = figure5_sensitivity(HIDDEN, LR, title="Sensitivity")
    assert len(fig.axes) == 4
    grid = np.array(fig.axes).reshape(2, 2)
    for ax in grid.ravel():
        assert ax.get_xscale() == "log"
    assert [ax.xaxis.get_transform().base for ax in grid[0]] == [2, 2]
    assert [ax.xaxis.get_transform().base for ax in grid[1]] == [10, 10]
    assert [ax.get_ylabel() for ax in grid.ravel()] == ["HR", "NDCG", "HR", "NDCG"]
    assert [ax.get_xlabel() for ax in grid[:, 0]] == ["adapter hidden size h", "learning rate"]
    assert tick_texts(grid[0, 0].get_xticklabels()) == ["64", "128", "256"]
    assert tick_texts(grid[1, 1].get_xticklabels()) == ["1e-05", "5e-05", "1e-04"]

    expected_columns = [["HR@10", "HR@20"], ["NDCG@10", "NDCG@20"]]
    for row, data in enumerate([HIDDEN, LR]):
        for column, metrics in enumerate(expected_columns):
            ax = grid[row, column]
            series = lines_of(ax)
            assert [c.get_label() for c in series] == metrics
            assert tick_texts(ax.get_legend().get_texts()) == metrics
            for container, metric in zip(series, metrics):
                xs, ys = xy(container)
                assert xs == pytest.approx(sorted(data[metric]))
                assert ys == pytest.approx([data[metric][x][0] for x in sorted(data[metric])])
            assert "no runs" not in text_strings(ax)

    # Error bars only where a std is > 0 (HR@10 in the hidden-size row).
    assert [c.has_yerr for c in lines_of(grid[0, 0])] == [True, False]
    assert not any(c.has_yerr for ax in grid[1] for c in lines_of(ax))
    # The same metric has the same colour in both rows.
    for column in range(2):
        top, bottom = lines_of(grid[0, column]), lines_of(grid[1, column])
        assert [c.lines[0].get_color() for c in top] == [c.lines[0].get_color() for c in bottom]


@pytest.mark.parametrize("empty_lr", [{}, {"HR@10": {}, "NDCG@10": {}}])
def test_figure5_empty_row_says_no_runs(empty_lr):
    fig = figure5_sensitivity(HIDDEN, empty_lr)
    grid = np.array(fig.axes).reshape(2, 2)
    for ax in grid[1]:
        assert text_strings(ax) == ["no runs"]
        assert lines_of(ax) == []
        assert ax.get_xscale() == "log"
    for ax in grid[0]:
        assert len(lines_of(ax)) == 2
        assert "no runs" not in text_strings(ax)

    # The hidden-size row may be the empty one too.
    fig = figure5_sensitivity({}, LR)
    grid = np.array(fig.axes).reshape(2, 2)
    assert [text_strings(ax) for ax in grid[0]] == [["no runs"], ["no runs"]]
    assert [len(lines_of(ax)) for ax in grid[1]] == [2, 2]


# --------------------------------------------------------------------------- saving


def test_save_figure_writes_valid_files_atomically(tmp_path):
    png, svg = tmp_path / "a" / "fig.png", tmp_path / "b" / "c" / "fig.svg"
    save_figure(figure4_gate_heatmaps(GATES), png, svg, dpi=60)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    root = ET.fromstring(svg.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert b"<dc:date>" not in svg.read_bytes()
    assert b"tEXt" not in png.read_bytes()  # no Software/date text chunks
    assert list(tmp_path.rglob("*.tmp")) == []

    # Overwriting replaces the files in place.
    before = png.read_bytes(), svg.read_bytes()
    save_figure(figure3_hidden_size({"A": {32: (0.1, 0.0)}}), png, svg, dpi=60)
    assert png.read_bytes() != before[0] and svg.read_bytes() != before[1]
    assert png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["fig.png", "fig.svg"]


def test_save_figure_failure_leaves_old_file_and_no_tmp(tmp_path, monkeypatch):
    png, svg = tmp_path / "f.png", tmp_path / "f.svg"
    png.write_bytes(b"old png")
    svg.write_bytes(b"old svg")
    fig = figure3_hidden_size({"A": {32: (0.1, 0.0)}})

    def broken_savefig(path, **kwargs):
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, png, svg)
    assert png.read_bytes() == b"old png"
    assert svg.read_bytes() == b"old svg"
    assert list(tmp_path.glob("*.tmp")) == []


def save_both(tmp_path: Path, folder: str) -> list[bytes]:
    """Build Figures 3 and 4 afresh and save them under ``tmp_path / folder``."""
    figures = [
        figure3_hidden_size({"IISAN-E": IISAN, "CROSSAN": CROSSAN}),
        figure4_gate_heatmaps(GATES),
    ]
    files = []
    for i, fig in enumerate(figures):
        png, svg = tmp_path / folder / f"{i}.png", tmp_path / folder / f"{i}.svg"
        save_figure(fig, png, svg, dpi=50)
        files += [png.read_bytes(), svg.read_bytes()]
    return files


REBUILD_IN_ANOTHER_PROCESS = """
import sys
from pathlib import Path

from crossan.results.figures import figure4_gate_heatmaps, save_figure
from tests.test_figures import GATES

out = Path(sys.argv[1])
save_figure(figure4_gate_heatmaps(GATES), out / "1.png", out / "1.svg", dpi=50)
"""


def test_save_figure_is_byte_reproducible(tmp_path):
    """Two builds of the same input give the same PNG and SVG bytes, in this process and in
    another interpreter with another hash seed (SVG ids must not depend on the process)."""
    first, second = save_both(tmp_path, "first"), save_both(tmp_path, "second")
    assert first == second
    assert list(tmp_path.rglob("*.tmp")) == []

    there = tmp_path / "there"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "MPLBACKEND": "Agg"}
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", REBUILD_IN_ANOTHER_PROCESS, str(there)]
    subprocess.run(command, check=True, cwd=root, env=env)
    assert (there / "1.png").read_bytes() == first[2]
    assert (there / "1.svg").read_bytes() == first[3]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: figure3_hidden_size({}), "no series"),
        (lambda: figure3_hidden_size({"A": {}, "B": {}}), "every series is empty"),
        (lambda: figure3_hidden_size({"A": {0: (0.1, 0.0)}}), "> 0"),
        (lambda: figure3_hidden_size({"A": {32: (0.1,)}}), "mean, std"),
        (lambda: figure3_hidden_size({"A": {32: (float("nan"), 0.0)}}), "finite"),
        (lambda: figure3_hidden_size({"A": {32: (0.1, -0.1)}}), "std >= 0"),
        (lambda: figure4_gate_heatmaps({}), "no towers"),
        (lambda: figure4_gate_heatmaps({"text": {"sources": ["H"]}}), "'values'"),
        (lambda: figure4_gate_heatmaps({"text": {"sources": [], "values": [[]]}}), "no sources"),
        (lambda: figure4_gate_heatmaps({"text": {"sources": ["H"], "values": []}}), "no layers"),
        (
            lambda: figure4_gate_heatmaps(
                {"text": {"sources": ["H", "T"], "values": [[0.5, 0.5], [1.0]]}}
            ),
            "layer 1 has 1 values but there are 2 sources",
        ),
        (
            lambda: figure4_gate_heatmaps({"text": {"sources": ["H"], "values": [["x"]]}}),
            "not numbers",
        ),
        (lambda: figure5_sensitivity({}, {}), "no points"),
        (lambda: figure5_sensitivity({"HR@10": {}}, {"HR@10": {}}), "no points"),
        (lambda: figure5_sensitivity({}, {"HR@10": {-1e-4: (0.1, 0.0)}}), "> 0"),
    ],
)
def test_bad_input_raises_value_error(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()
