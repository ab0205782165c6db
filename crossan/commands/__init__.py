"""The arguments of the ``crossan`` commands whose work needs heavy packages, apart from that work.

Each module here adds its commands' subparsers (``register_cli(subparsers)``) and names each
command's handler as ``"module:function"`` (``set_defaults(handler=...)``), which
:mod:`crossan.cli` imports only once the arguments are parsed. These modules import argparse,
:mod:`crossan.argtypes` and light modules of choices and defaults only (no torch,
transformers, peft, PyAV, h5py or polars), so ``crossan --help`` and ``crossan CMD --help``
stay fast; ``tests/test_cli_help.py`` checks that they load none of torch, transformers, peft
or PyAV.
"""
