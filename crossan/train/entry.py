"""``train(run)``: one run of any method, handed to its family's trainer."""

from __future__ import annotations

from crossan.runs.run_config import RunConfig
from crossan.runs.vocabulary import END_TO_END, GRAPH, POPULARITY_FAMILY
from crossan.train.cached import train_on_states
from crossan.train.graph import train_graph_run
from crossan.train.outputs import RunResult
from crossan.train.popularity import run_popularity


def train(run: RunConfig) -> RunResult:
    """Train (or, for ``popularity``, count), evaluate and write the outputs of ``run``:
    cached-state and ID methods by :func:`~crossan.train.cached.train_on_states`, ``fft``,
    ``adapter`` and ``lora`` by :func:`~crossan.train.e2e.train_end_to_end`, the graph
    recommenders by :func:`~crossan.train.graph.train_graph_run`."""
    if run.family == POPULARITY_FAMILY:
        return run_popularity(run)
    if run.family == END_TO_END:
        # deferred: the end-to-end family imports transformers and peft (~3 s), which every
        # cached-state, graph and popularity run would otherwise load for nothing
        from crossan.train.e2e import train_end_to_end

        return train_end_to_end(run)
    if run.family == GRAPH:
        return train_graph_run(run)
    return train_on_states(run)
