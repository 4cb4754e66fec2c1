"""Writes ``posts.csv`` beside this file: 60 synthetic users x 12 posts in the plain posts CSV.

The users come from ``popdiff_jax.data.synthetic_posts`` (seed 0; a planted popularity signal, no
real account), read back through the instagram reader and written with
``popdiff_jax.data.posts.write_posts_csv``. Run from the repository root::

  python popdiff_jax/data/examples/make_posts.py
"""

import pathlib
import sys
import tempfile

USERS, POSTS_PER_USER, SEED = 60, 12, 0


def main(out: pathlib.Path = pathlib.Path(__file__).with_name("posts.csv")) -> pathlib.Path:
  """Generates the users and writes them to ``out``."""
  from popdiff_jax.data import instagram, synthetic_posts
  from popdiff_jax.data.posts import write_posts_csv

  users = synthetic_posts.generate_users(USERS, POSTS_PER_USER, seed=SEED)
  with tempfile.TemporaryDirectory() as tmp:
    table, _ = instagram.load_instagram(synthetic_posts.write_archive(tmp, users))
  return write_posts_csv(table, out)


if __name__ == "__main__":
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3]))
  print(main())
