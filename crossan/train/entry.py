"""``train(run)``: one run of any method, handed to its family's trainer."""

from __future__ import annotations

from crossan.models.e2e import E2E_METHODS
from crossan.models.graph import GRAPH_METHODS
from crossan.train.graph import train_graph_run
from crossan.train.popularity import run_popularity
from crossan.train.trainer import POPULARITY, RunConfig, RunResult, train_on_states


def train(run: RunConfig) -> RunResult:
    """Train (or, for ``popularity``, count), evaluate and write the outputs of ``run``:
    cached-state and ID methods by :func:`~crossan.train.trainer.train_on_states`, ``fft``,
    ``adapter`` and ``lora`` by :func:`~crossan.train.e2e.train_end_to_end`, the graph
    recommenders by :func:`~crossan.train.graph.train_graph_run`."""
    if run.method == POPULARITY:
        return run_popularity(run)
    if run.method in E2E_METHODS:
        # Imported here rather than above because of its cost, not a cycle: transformers'
        # model classes and peft take ~3 s to import, which every cached-state run would pay.
        from crossan.train.e2e import train_end_to_end

        return train_end_to_end(run)
    if run.method in GRAPH_METHODS:
        return train_graph_run(run)
    return train_on_states(run)
