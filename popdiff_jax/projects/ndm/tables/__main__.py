"""One job of a parallel table call: ``python -m popdiff_jax.projects.ndm.tables COMMAND JOB
DEADLINE -- ARGS...`` (started by ``common.run``; ARGS are the call's own options)."""

import sys

from popdiff_jax.projects.ndm.tables.common import run_worker

if __name__ == "__main__":
  argv = sys.argv[1:]
  if len(argv) < 4 or argv[3] != "--":
    sys.exit("usage: python -m popdiff_jax.projects.ndm.tables COMMAND JOB DEADLINE -- ARGS...")
  sys.exit(run_worker(argv[0], argv[1], float(argv[2]), argv[4:]))
