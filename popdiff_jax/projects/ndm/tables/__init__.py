"""The NDM project's result tables, one module per ``popdiff reproduce`` command.

=====================  ===============================================  ========================
command                result file (``benchmarks/results/``)            module
=====================  ===============================================  ========================
``ndm``                ``ndm_next_user.json``                           ``next_user``
``ndm-small-sets``     ``ndm_small_sets.jsonl`` (+ ``.summary.json``)   ``small_sets``
``ndm-cooccurrence``   ``ndm_cooccurrence.json``                        ``cooccurrence``
``ndm-protocol``       ``ndm_paper_protocol.json``                      ``paper_protocol``
``ic-baselines``       ``ic_baselines_<dataset>.json``                  ``ic_baselines``
``ndm-social``         ``ndm_sn.json``                                  ``ndm_sn``
``ndm-sensitivity``    ``ndm_sensitivity.json`` (+ ``.png``)            ``sensitivity``
``ndm-norms``          ``ndm_norms.json``                               ``norms``
=====================  ===============================================  ========================

Each module has ``TABLE`` (a ``common.Table``) and ``reproduce_main(args, progress)``; every
command has ``--tiny`` (a CPU check in seconds once compiled, written under ``runs/tiny/``),
``--seeds``, ``--parallel`` / ``--budget`` (jobs as processes under one deadline) and ``--out``;
``popdiff reproduce NAME --help`` lists the rest. The shared machinery is ``common``.
"""

from __future__ import annotations

import importlib

__all__ = ["MODULES", "TABLES"]

MODULES = {"ndm": "next_user", "ndm-small-sets": "small_sets",
           "ndm-cooccurrence": "cooccurrence", "ndm-protocol": "paper_protocol",
           "ic-baselines": "ic_baselines", "ndm-social": "ndm_sn",
           "ndm-sensitivity": "sensitivity", "ndm-norms": "norms"}


def _table(command: str):
  return importlib.import_module(f"{__name__}.{MODULES[command]}").TABLE


#: command -> a function returning its ``common.Table`` (imported on first use).
TABLES = {command: (lambda command=command: _table(command)) for command in MODULES}
