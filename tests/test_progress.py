"""Progress lines (:mod:`crossan.progress`): throttling on a fake clock, the console on another
file descriptor (each line once, nothing but progress lines), and one line per epoch from the
sequential loop and the graph trainer."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from test_train_data import random_features, random_sequences, write_dataset, write_features

from crossan import progress as progress_module
from crossan.graph_file.build import build_graph
from crossan.progress import (
    PROGRESS_LOGGER,
    Progress,
    attach_console,
    detach_console,
    format_duration,
    log_progress,
)
from crossan.runs.identity import run_name
from crossan.runs.run_config import RunConfig
from crossan.train import loop
from crossan.train.entry import train
from crossan.train.evaluation import all_item_embeddings

N_USERS, N_ITEMS = 40, 30


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """``lines()``: the progress lines logged so far in the test (what the normal log gets)."""
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        yield lambda: [record.getMessage() for record in caplog.records if record.name == PROGRESS_LOGGER]


@pytest.fixture
def console_pipe() -> Iterator[tuple[int, int]]:
    """``(read_fd, write_fd)`` of a pipe; the console is detached and both ends closed after."""
    read_fd, write_fd = os.pipe()
    level = logging.getLogger(PROGRESS_LOGGER).level
    yield read_fd, write_fd
    detach_console()
    logging.getLogger(PROGRESS_LOGGER).setLevel(level)
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def read_all(read_fd: int, write_fd: int) -> str:
    """Close the write end and read everything the pipe holds."""
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8")


# ---------------------------------------------------------------- Progress


def test_updates_within_every_s_log_nothing_and_close_logs_once(lines: Callable[[], list[str]]) -> None:
    clock = FakeClock()
    counted = Progress("crossan demo-job demo", 100, "items", every_s=30.0, clock=clock)
    for now, n in ((10, 10), (29.9, 10)):
        clock.now = now
        counted.update(n)
    assert lines() == []
    clock.now = 40
    counted.update(20)  # 40 s since the start: a line
    assert lines() == ["[crossan demo-job demo] 40/100 items (40%), 1 items/s, ETA 1m00s"]
    clock.now = 69.9
    counted.update(10)  # 29.9 s since that line: none
    clock.now = 75
    counted.update(50)  # total reached: the closing line says it
    assert len(lines()) == 1
    clock.now = 80
    counted.close()
    counted.close()
    assert lines()[1:] == ["[crossan demo-job demo] 100/100 items in 1m20s (1.25 items/s)"]


def test_a_step_prefix_no_summary_disabled_and_stopped(lines: Callable[[], list[str]]) -> None:
    clock = FakeClock()
    with Progress("run", 8, "batches", every_s=5, step="epoch 2/9", summary=False, clock=clock) as batches:
        clock.now = 6
        batches.update(3)
    assert lines() == ["[run] epoch 2/9: 3/8 batches (37%), 0.5 batches/s, ETA 10s"]
    with Progress("quiet", 8, "batches", every_s=0, enabled=False, clock=clock) as quiet:
        quiet.update(1)
    assert len(lines()) == 1
    with pytest.raises(KeyError), Progress("job", 500, "videos", clock=clock) as videos:
        clock.now += 125
        videos.update(120)
        raise KeyError("stopped by an error")
    assert lines()[1:] == ["[job] 120/500 videos (24%), 0.96 videos/s, ETA 6m36s",
                           "[job] stopped at 120/500 videos after 2m05s (0.96 videos/s)"]


def test_durations() -> None:
    assert [format_duration(s) for s in (0.04, 4.25, 42.4, 185, 3599.6, 7620)] == [
        "0.0s", "4.2s", "42s", "3m05s", "1h00m", "2h07m"]


# ---------------------------------------------------------------- the console


def test_the_console_gets_each_progress_line_once_and_nothing_else(
    console_pipe: tuple[int, int], lines: Callable[[], list[str]]
) -> None:
    read_fd, write_fd = console_pipe
    attach_console(None)  # no console: nothing attached
    assert not [h for h in logging.getLogger(PROGRESS_LOGGER).handlers if isinstance(h, progress_module.ConsoleHandler)]
    attach_console(write_fd)
    attach_console(write_fd)  # again: replaces, does not add a second copy
    log_progress("crossan train demo__x", "epoch 3/50: loss 1.234\nvalid HR@10 0.1234")
    logging.getLogger("crossan.train.loop").warning("not a progress line")
    clock = FakeClock()
    with Progress("crossan sample-media demo video", 4, "items", clock=clock) as items:
        items.update(4)
    text = read_all(read_fd, write_fd)
    assert text == ("[crossan train demo__x] epoch 3/50: loss 1.234 valid HR@10 0.1234\n"
                    "[crossan sample-media demo video] 4/4 items in 0.0s\n")
    # and the normal log still has them, once each
    assert lines() == ["[crossan train demo__x] epoch 3/50: loss 1.234\nvalid HR@10 0.1234",
                       "[crossan sample-media demo video] 4/4 items in 0.0s"]


def test_a_console_that_went_away_or_never_was_stops_nothing(
    console_pipe: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    read_fd, write_fd = console_pipe
    attach_console(write_fd)
    os.close(read_fd)  # the terminal went away: writes fail with EPIPE
    log_progress("job", "one")
    log_progress("job", "two")
    handler = next(h for h in logging.getLogger(PROGRESS_LOGGER).handlers
                   if isinstance(h, progress_module.ConsoleHandler))
    assert handler.broken
    detach_console()
    unused = os.open(os.devnull, os.O_RDONLY)
    os.close(unused)  # a descriptor number that is certainly not open
    with caplog.at_level(logging.WARNING):
        attach_console(unused)
    assert f"file descriptor {unused} is not open" in caplog.text
    assert not [h for h in logging.getLogger(PROGRESS_LOGGER).handlers if isinstance(h, progress_module.ConsoleHandler)]


# ---------------------------------------------------------------- trainers: one line per epoch


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("progress")
    data = write_dataset(root / "data", random_sequences(N_USERS, N_ITEMS, seed=2), N_ITEMS)
    ids = [str(100 + i) for i in range(1, N_ITEMS + 1)]
    for seed, name in enumerate(("text", "image")):
        write_features(root / "features" / f"{name}.h5", *random_features(N_ITEMS, 2, 8, seed), ids)
    build_graph(data, root / "features", root / "graph.h5", modalities="TI", k=4)
    return {"data": data, "features": root / "features", "graph": root / "graph.h5"}


def run_config(world: dict[str, Path], out: Path, **kw) -> RunConfig:
    defaults = {"method": "crossan", "modalities": "TI", "hidden": 8, "lr": 1e-3, "seed": 0, "batch_size": 16,
                "max_epochs": 3, "patience": 10, "device": "cpu", "dataset": "demo"}
    return RunConfig(data_dir=world["data"], features_dir=world["features"], out_dir=out,
                     graph_file=world["graph"], **(defaults | kw))


EPOCH_LINE = (r"\[crossan train (?P<name>\S+)\] (?P<point>grid point \d/\d, )?epoch (?P<epoch>\d+)/(?P<max>\d+): "
              r"loss \d+\.\d{4}, valid HR@10 [01]\.\d{4} NDCG@10 [01]\.\d{4} \(\d+\.\d s \+ \d+\.\d s eval\)")


def epoch_lines(messages: list[str]) -> list[re.Match[str]]:
    return [match for line in messages if (match := re.fullmatch(EPOCH_LINE, line))]


def test_the_loop_logs_one_line_per_epoch(world, tmp_path: Path, lines: Callable[[], list[str]]) -> None:
    run = run_config(world, tmp_path / "r")
    result = train(run)
    epochs = epoch_lines(lines())
    assert [(m["name"], int(m["epoch"]), int(m["max"])) for m in epochs] == [(run_name(run), e, 3) for e in (1, 2, 3)]
    assert len(result.log) == 3
    label = f"[crossan train {run_name(run)}] "
    assert all(line.startswith(label) for line in lines())
    assert re.fullmatch(r"\d+ trainable parameters, 30 items, \d+ training users \(\d batches per epoch\), on cpu",
                        lines()[0].removeprefix(label))
    assert lines()[-1].removeprefix(label).startswith(f"best epoch {result.best_epoch} of 3: valid HR@10 ")
    assert len(lines()) == 1 + 3 + 1  # the start, the epochs, the result: no batch line in short epochs


def test_long_epochs_count_their_batches(
    world, tmp_path: Path, lines: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an end-to-end run's epochs, longer than ``every_s``: here every update is 'long'."""
    monkeypatch.setattr(loop, "Progress", functools.partial(Progress, every_s=0))
    run = run_config(world, tmp_path / "r", max_epochs=2, batch_size=8)
    train(run)
    label = f"[crossan train {run_name(run)}] "
    counted = [line.removeprefix(label).split(" (")[0] for line in lines() if "/s, ETA " in line]
    batches = int(re.search(r"\((\d+) batches per epoch", lines()[0])[1])
    assert batches > 2
    # not the last batch (the epoch line follows it), and no evaluation line: its 31 ids are one chunk
    assert counted == [f"epoch {e}/2: {b}/{batches} batches" for e in (1, 2) for b in range(1, batches)]
    assert len(epoch_lines(lines())) == 2


def test_evaluation_counts_the_items_it_encodes(lines: Callable[[], list[str]]) -> None:
    with Progress("run", 31, "items", every_s=0, step="epoch 1/1 evaluation", summary=False) as items:
        table = all_item_embeddings(lambda ids: ids.float().unsqueeze(1), 30, torch.device("cpu"), 7, items)
    assert table.shape == (31, 1)
    assert [line.split(" (")[0] for line in lines()] == [f"[run] epoch 1/1 evaluation: {n}/31 items"
                                                       for n in (7, 14, 21, 28)]


def test_the_graph_trainer_logs_one_line_per_epoch(world, tmp_path: Path, lines: Callable[[], list[str]]) -> None:
    run = run_config(world, tmp_path / "g", method="freedom", hidden=16, lr=1e-2, batch_size=64, max_epochs=2,
                     graph_grid={"n_ui_layers": [1, 2]})
    result = train(run)
    epochs = epoch_lines(lines())
    assert [(m["name"], m["point"], int(m["epoch"])) for m in epochs] == [
        (run_name(run), f"grid point {point}/2, ", epoch) for point in (1, 2) for epoch in (1, 2)]
    assert len(result.log) == 2
    label = f"[crossan train {run_name(run)}] "
    assert all(line.startswith(label) for line in lines())
    assert re.fullmatch(r"freedom on TI: 40 users, 30 items, \d+ training pairs, 2 grid point\(s\), on cpu",
                        lines()[0].removeprefix(label))
    points = [line for line in lines() if re.match(re.escape(label) + r"grid point \d/2 \{'n_ui_layers': \d\}: ", line)]
    assert len(points) == 2
    assert len(lines()) == 1 + 4 + 2 + 1  # the start, the epochs, the grid points, the result
