"""The paper's three figures, and Figure B1 beyond it, drawn from already-aggregated numbers.

* :func:`figure3_hidden_size` - Figure 3, "Optimal embedding dimension for IISAN-E and
  CROSSAN": a metric against the adapter hidden size h, one line per method.
* :func:`figure4_gate_heatmaps` - Figure 4, heatmaps of CROSSAN's learned gates, one panel
  per tower, layer 0 at the bottom.
* :func:`figure5_sensitivity` - Figure 5, CROSSAN's sensitivity to the adapter hidden size
  (first row) and to the learning rate (second row), HR metrics left, NDCG metrics right.
* :func:`figure_b1_popularity` - Figure B1 (beyond the paper): a metric per popularity bucket
  of the target item (head, torso, tail on x), one bar per method.
* :func:`save_figure` - writes a figure as PNG and SVG, atomically and byte-reproducibly.

Nothing here reads files: the numbers come in as mappings (another module collects them).
Every point is a ``(mean over seeds, std over seeds)`` pair; a std of 0.0 (one seed) draws
no error bar. The builders return :class:`matplotlib.figure.Figure` objects attached to an
Agg canvas and never touch pyplot, so nothing is shared between calls and nothing needs
closing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

Point = tuple[float, float]
"""(mean over seeds, std over seeds); the std is 0.0 with one seed."""

HIDDEN_LABEL = "adapter hidden size h"
LR_LABEL = "learning rate"
NO_RUNS = "no runs"
SVG_HASH_SALT = "crossan"
GATE_CMAP = "Blues"
MANY_CMAP = "tab20"


# --------------------------------------------------------------------------- helpers


def _new_figure(width: float, height: float) -> Figure:
    """A stand-alone figure on an Agg canvas (no pyplot state)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _point(value: Any, where: str) -> Point:
    """Validate one ``(mean, std)`` pair: two finite numbers, std >= 0."""
    try:
        mean, std = value
        mean, std = float(mean), float(std)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: expected a (mean, std) pair, got {value!r}") from error
    if not (math.isfinite(mean) and math.isfinite(std)) or std < 0:
        raise ValueError(f"{where}: mean and std must be finite and std >= 0, got {value!r}")
    return mean, std


def _log_x(value: Any, where: str) -> float:
    """Validate an x value for a log axis: a finite number > 0."""
    try:
        x = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: x value {value!r} is not a number") from error
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"{where}: x value {value!r} must be finite and > 0 (log axis)")
    return x


def _sorted_points(
    points: Mapping[Any, Any], where: str
) -> tuple[list[float], list[float], list[float]]:
    """``points`` as ``(xs, means, stds)`` sorted by increasing x, validated."""
    if not isinstance(points, Mapping):
        raise ValueError(f"{where}: expected a mapping x -> (mean, std), got {points!r}")
    rows = sorted(
        (_log_x(x, where), *_point(value, f"{where} at x={x!r}")) for x, value in points.items()
    )
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _draw_line(
    ax: Axes, xs: list[float], means: list[float], stds: list[float], label: str, color: str
) -> ErrorbarContainer:
    """One line with markers; error bars (std) only when some std is > 0."""
    yerr = stds if any(s > 0 for s in stds) else None
    return ax.errorbar(
        xs, means, yerr=yerr, marker="o", markersize=5, capsize=3, label=label, color=color
    )


def _integer_label(x: float) -> str:
    """``512.0`` -> ``"512"``; a non-integer size keeps its decimals."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _lr_label(x: float) -> str:
    """Shortest exact scientific label: ``1e-05``, ``5e-05``, ``1.5e-04``."""
    return np.format_float_scientific(x, trim="-", exp_digits=2)


def _set_log_ticks(ax: Axes, ticks: Sequence[float], base: int, label: Any) -> None:
    """Log x axis with major ticks exactly at ``ticks`` (labelled by ``label``), no minor ticks."""
    ax.set_xscale("log", base=base)
    ticks = sorted(set(ticks))
    if ticks:
        ax.set_xticks(ticks, labels=[label(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())


def _no_runs(ax: Axes) -> None:
    """A centred "no runs" note in an empty panel (which gets no ticks)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, NO_RUNS, transform=ax.transAxes, ha="center", va="center", color="0.4")


# --------------------------------------------------------------------------- Figure 3


BEST_RING_LABEL = "ring: the method's best h"


def figure3_hidden_size(
    series: Mapping[str, Mapping[int, Point]], *, metric: str = "HR@10", title: str = ""
) -> Figure:
    """Paper Figure 3: ``metric`` against the adapter hidden size h, one line per method.

    Args:
        series: method name (e.g. ``"IISAN-E"``, ``"CROSSAN"``) -> {h: (mean, std)}; lines and
            legend entries follow the mapping's order, points are drawn by increasing h.
            A method with no points gets a legend entry and no line.
        metric: the y axis label, e.g. ``"HR@10"``.
        title: optional figure title.

    Each method's best point (highest mean; the smallest h on a tie) is circled with a hollow,
    larger marker, which the legend explains (its last entry). The x axis is log2 with ticks at every h that occurs, labelled as integers.

    Raises:
        ValueError: no methods, no points at all, or a malformed point / size.
    """
    if not series:
        raise ValueError("figure3_hidden_size: no series given")
    prepared = {
        str(name): _sorted_points(points, f"figure3_hidden_size[{name!r}]")
        for name, points in series.items()
    }
    if not any(xs for xs, _, _ in prepared.values()):
        raise ValueError("figure3_hidden_size: every series is empty, nothing to plot")

    figure = _new_figure(6.0, 4.0)
    ax = figure.add_subplot()
    ticks: list[float] = []
    for i, (name, (xs, means, stds)) in enumerate(prepared.items()):
        color = f"C{i % 10}"
        _draw_line(ax, xs, means, stds, name, color)
        ticks += xs
        if xs:
            best = int(np.argmax(means))
            ax.scatter(
                [xs[best]],
                [means[best]],
                s=180,
                facecolors="none",
                edgecolors=color,
                linewidths=1.5,
                zorder=3,
                label="_best",
                gid=f"best:{name}",
            )
    ax.scatter([], [], s=180, facecolors="none", edgecolors="0.35", linewidths=1.5, label=BEST_RING_LABEL)
    _set_log_ticks(ax, ticks, 2, _integer_label)
    ax.set_xlabel(HIDDEN_LABEL)
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    last = sorted(range(len(labels)), key=lambda k: labels[k] == BEST_RING_LABEL)  # the ring's entry after the lines
    ax.legend([handles[k] for k in last], [labels[k] for k in last])
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------- Figure 4


def _gate_matrix(name: str, tower: Any) -> tuple[list[str], np.ndarray]:
    """Validate one tower's ``{"sources": [...], "values": [[...] per layer]}``."""
    where = f"figure4_gate_heatmaps[{name!r}]"
    if not isinstance(tower, Mapping) or "sources" not in tower or "values" not in tower:
        raise ValueError(f"{where}: expected a mapping with 'sources' and 'values'")
    sources = [str(s) for s in tower["sources"]]
    rows = [list(row) for row in tower["values"]]
    if not sources:
        raise ValueError(f"{where}: no sources")
    if not rows:
        raise ValueError(f"{where}: no layers in 'values'")
    for layer, row in enumerate(rows):
        if len(row) != len(sources):
            raise ValueError(
                f"{where}: layer {layer} has {len(row)} values but there are "
                f"{len(sources)} sources {sources}"
            )
    try:
        matrix = np.asarray(rows, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: values are not numbers") from error
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{where}: values must be finite")
    return sources, matrix


def figure4_gate_heatmaps(towers: Mapping[str, Mapping[str, Any]], *, title: str = "") -> Figure:
    """Paper Figure 4: heatmaps of CROSSAN's learned gates, one panel per tower.

    Args:
        towers: tower name (e.g. ``"text"``, ``"image"``) -> ``{"sources": [...], "values":
            [[...] per layer]}`` where ``values[l][s]`` is the weight of source ``s`` at
            adapter layer ``l``. Panels follow the mapping's order; a panel's title is the
            tower name with its first letter capitalised.
        title: optional figure title.

    x = sources (labelled as given), y = adapter layers with layer 0 at the bottom
    (``origin="lower"``). All panels share one colour scale (min/max over every value) and one
    colourbar; deeper colour = higher weight. Each cell shows its value to 2 decimals in black
    or white, whichever reads better on the cell's colour.

    Raises:
        ValueError: no towers, a tower without sources or layers, a layer whose number of
            values differs from the number of sources, or non-finite values.
    """
    if not towers:
        raise ValueError("figure4_gate_heatmaps: no towers given")
    prepared = {str(name): _gate_matrix(str(name), tower) for name, tower in towers.items()}
    vmin = min(float(m.min()) for _, m in prepared.values())
    vmax = max(float(m.max()) for _, m in prepared.values())
    if vmin == vmax:  # one flat value: give the colour scale some width
        vmin, vmax = vmin - 0.5, vmax + 0.5
    norm = Normalize(vmin=vmin, vmax=vmax)
    cmap = matplotlib.colormaps[GATE_CMAP]

    n_sources = max(len(s) for s, _ in prepared.values())
    n_layers = max(m.shape[0] for _, m in prepared.values())
    figure = _new_figure(
        1.2 + len(prepared) * (0.9 + 0.55 * n_sources), 1.6 + 0.4 * max(n_layers, 3)
    )
    axes = figure.subplots(1, len(prepared), squeeze=False)[0]
    image = None
    for ax, (name, (sources, matrix)) in zip(axes, prepared.items()):
        image = ax.imshow(matrix, origin="lower", cmap=cmap, norm=norm, aspect="auto")
        n_layer, n_source = matrix.shape
        ax.set_xticks(range(n_source), labels=sources)
        ax.set_yticks(range(n_layer), labels=[str(layer) for layer in range(n_layer)])
        ax.set_title(name[:1].upper() + name[1:])
        ax.set_xlabel("source")
        ax.set_ylabel("adapter layer")
        for layer in range(n_layer):
            for source in range(n_source):
                value = float(matrix[layer, source])
                red, green, blue, _ = cmap(norm(value))
                luminance = 0.299 * red + 0.587 * green + 0.114 * blue
                ax.text(
                    source,
                    layer,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if luminance < 0.5 else "black",
                )
    figure.colorbar(image, ax=list(axes), label="gate weight")
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------- Figure 5


def _metric_group(metric: str) -> str:
    """``"HR@10"`` -> ``"HR"``; a name without ``@`` is its own group."""
    return metric.split("@", 1)[0]


def figure5_sensitivity(
    hidden: Mapping[str, Mapping[int, Point]],
    lr: Mapping[str, Mapping[float, Point]],
    *,
    title: str = "",
) -> Figure:
    """Paper Figure 5: CROSSAN's sensitivity to the adapter hidden size and the learning rate.

    Args:
        hidden: metric name (``"HR@10"``, ``"NDCG@10"``, ...) -> {h: (mean, std)}.
        lr: metric name -> {learning rate: (mean, std)}.
        title: optional figure title.

    Rows: 0 = hidden size (log2 x axis, integer tick labels), 1 = learning rate (log10 x axis,
    labels like ``1e-05``). Columns: one per metric group, the prefix before ``@`` in order of
    first appearance (HR, NDCG for the paper's metrics); within a panel one line per metric
    (HR@10, HR@20), coloured the same in both rows. A panel without points shows a centred
    "no runs" note instead.

    Raises:
        ValueError: both mappings without any point, or a malformed point / x value.
    """
    rows: list[tuple[str, Mapping[str, Mapping[Any, Any]], int, Any]] = [
        (HIDDEN_LABEL, hidden, 2, _integer_label),
        (LR_LABEL, lr, 10, _lr_label),
    ]
    prepared = [
        {
            str(metric): _sorted_points(points, f"figure5_sensitivity[{label!r}][{metric!r}]")
            for metric, points in data.items()
        }
        for label, data, _, _ in rows
    ]
    if not any(xs for row in prepared for xs, _, _ in row.values()):
        raise ValueError("figure5_sensitivity: no points in either the hidden or the lr mapping")

    metrics: list[str] = []  # every metric with points, in order of first appearance
    for row in prepared:
        metrics += [m for m, (xs, _, _) in row.items() if xs and m not in metrics]
    groups = list(dict.fromkeys(_metric_group(m) for m in metrics))
    colors: dict[str, str] = {}  # the n-th metric of a group gets colour Cn in both rows
    for metric in metrics:
        same_group = [m for m in colors if _metric_group(m) == _metric_group(metric)]
        colors[metric] = f"C{len(same_group) % 10}"

    figure = _new_figure(4.2 * len(groups), 7.0)
    axes = figure.subplots(len(rows), len(groups), squeeze=False)
    for r, ((x_label, _, base, tick_label), row) in enumerate(zip(rows, prepared)):
        ticks = [x for xs, _, _ in row.values() for x in xs]
        for c, group in enumerate(groups):
            ax = axes[r][c]
            drawn = False
            for metric, (xs, means, stds) in row.items():
                if xs and _metric_group(metric) == group:
                    _draw_line(ax, xs, means, stds, metric, colors[metric])
                    drawn = True
            _set_log_ticks(ax, ticks, base, tick_label)
            ax.set_xlabel(x_label)
            ax.set_ylabel(group)
            if drawn:
                ax.grid(True, alpha=0.3)
                ax.legend()
            else:
                _no_runs(ax)
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------- Figure B1


def figure_b1_popularity(
    series: Mapping[str, Mapping[str, Point]], *, metric: str = "HR@10", title: str = ""
) -> Figure:
    """Figure B1: grouped bars of ``metric`` per popularity bucket, one bar per method.

    Args:
        series: method name -> {bucket label (e.g. ``"head (>= 15)"``): (mean, std)}; bars
            and legend entries follow the mapping's order, groups the order in which the
            buckets first appear. A method without a bucket leaves a gap there.
        metric: the y axis label, e.g. ``"HR@10"``.
        title: optional figure title.

    Each group is centred on its tick, its bars side by side (together 0.8 wide), coloured C0-C9
    (``tab20`` for more than ten methods); error bars (std) only for a method with some std > 0.

    Raises:
        ValueError: no methods, no points at all, or a malformed point.
    """
    if not series:
        raise ValueError("figure_b1_popularity: no series given")
    prepared: dict[str, dict[str, Point]] = {}
    for name, points in series.items():
        if not isinstance(points, Mapping):
            raise ValueError(f"figure_b1_popularity[{name!r}]: expected a mapping bucket -> (mean, std), got {points!r}")
        prepared[str(name)] = {str(bucket): _point(value, f"figure_b1_popularity[{name!r}] at {bucket!r}")
                               for bucket, value in points.items()}
    groups = list(dict.fromkeys(bucket for points in prepared.values() for bucket in points))
    if not groups:
        raise ValueError("figure_b1_popularity: every series is empty, nothing to plot")

    figure = _new_figure(4.0 + 0.15 * len(groups) * len(prepared), 4.0)
    ax = figure.add_subplot()
    width = 0.8 / len(prepared)
    many = matplotlib.colormaps[MANY_CMAP]  # more than ten methods: C0-C9 would repeat
    for i, (name, points) in enumerate(prepared.items()):
        where = [g for g, bucket in enumerate(groups) if bucket in points]
        means = [points[groups[g]][0] for g in where]
        stds = [points[groups[g]][1] for g in where]
        offset = (i - (len(prepared) - 1) / 2) * width
        ax.bar(
            [g + offset for g in where],
            means,
            width,
            yerr=stds if any(s > 0 for s in stds) else None,
            capsize=2,
            label=name,
            color=f"C{i}" if len(prepared) <= 10 else many(i % many.N),
        )
    ax.set_xticks(range(len(groups)), labels=groups)
    ax.set_xlabel("popularity of the target item (training interactions)")
    ax.set_ylabel(metric)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------- saving


def save_figure(figure: Figure, png: Path, svg: Path, *, dpi: int = 150) -> None:
    """Write ``figure`` to ``png`` and ``svg``, each atomically and byte-reproducibly.

    Each file is written to ``<name>.tmp`` in the same folder (format given explicitly) and
    renamed onto its final path with :func:`os.replace`; parent folders are created. On an
    error the temporary file is removed and the final path is left as it was.

    Reproducibility: the SVG is written without a date (``metadata={"Date": None}``) and with
    a fixed ``svg.hashsalt`` (so its element ids do not depend on the process); the PNG
    carries no ``Software`` text chunk (Agg PNGs have no timestamp). The same input thus gives
    the same bytes on every run with the same matplotlib and fonts.
    """
    for final, fmt in ((Path(png), "png"), (Path(svg), "svg")):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(final.name + ".tmp")
        try:
            if fmt == "svg":
                with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT}):
                    figure.savefig(tmp, format="svg", dpi=dpi, metadata={"Date": None})
            else:
                figure.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
