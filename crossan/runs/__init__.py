"""Methods and runs, without torch: what each method is, what a run is called and given, and
what its folder holds. The workflow plans with this package alone; every trainer, model and
table imports its vocabulary from here.

* :mod:`crossan.runs.vocabulary`: every method once (family, name fields, settings, default
  fusion, label, whether it reads content) and the choices a run spec can make;
* :mod:`crossan.runs.settings`: the ``training`` settings, their defaults and choices (the
  schema's), and which a method's runs are given;
* :mod:`crossan.runs.run_config`: :class:`~crossan.runs.run_config.RunConfig`, one run;
* :mod:`crossan.runs.identity`: run names and the settings digest they carry;
* :mod:`crossan.runs.specs`: ``config.yaml``'s run specs, and the run a name stands for;
* :mod:`crossan.runs.folder`: the run folder's files and ``metrics.json``'s record;
* :mod:`crossan.runs.cost`: the CPU-hours of a dataset's plan per stage, before it runs, from
  measured per-unit costs (it prices the experiment plan of :mod:`crossan.results.plan`);
  ``crossan cost`` (:mod:`crossan.runs.cost_cli`) prints it.

Imports: the standard library, yaml/jsonschema (through :mod:`crossan.config`),
:mod:`crossan.errors` and :mod:`crossan.atomic` (the cost estimate also the torch-free plan of
:mod:`crossan.results.plan`); ``tests/test_import_weight.py`` keeps it so.
"""
