"""Stage 2 training, one module per job:

* :mod:`~crossan.train.loop`: the epoch loop every sequential model shares;
* :mod:`~crossan.train.evaluation`, :mod:`~crossan.train.metrics`: full-ranking evaluation;
* :mod:`~crossan.train.loss`: the debiased in-batch loss;
* :mod:`~crossan.train.inputs`, :mod:`~crossan.train.e2e_inputs`: what runs read (sequences,
  cached states, batches; titles and covers);
* :mod:`~crossan.train.outputs`, :mod:`~crossan.train.towers`: a run's files, written once for
  every family (:func:`~crossan.train.outputs.finish_run`);
* one trainer per family: :mod:`~crossan.train.cached`, :mod:`~crossan.train.e2e`,
  :mod:`~crossan.train.graph`, :mod:`~crossan.train.popularity`, dispatched by
  :func:`crossan.train.entry.train`; :mod:`~crossan.train.run` is ``crossan train``;
* :mod:`~crossan.train.efficiency`: Table 4's time and memory, the runs measured side by side in
  one job (``crossan efficiency``, :mod:`~crossan.train.efficiency_cli`).
"""
