"""Writes ``trees.csv`` and ``tree_labels.csv`` beside this file: 64 synthetic re-share trees.

Seeded and standard library only; run ``python popdiff_jax/data/examples/make_trees.py`` to
write them again (the same bytes). The trees are made up: 40 users (``user00`` ... ``user39``,
the first eight re-shared more often), two labels: ``news`` trees are wide (most re-shares
come from the root), ``meme`` trees are deep (most re-shares come from the latest node). Times are
minutes from the root, each node 0.5-20 minutes after its parent.
"""

import pathlib
import random

HERE = pathlib.Path(__file__).resolve().parent


def make_rows(seed: int = 0, num_trees: int = 64, num_users: int = 40):
  """``(tree rows, label rows)`` of the example, as lists of CSV lines without the headers."""
  rng = random.Random(seed)
  users = [f"user{i:02d}" for i in range(num_users)]
  weights = [4 if i < 8 else 1 for i in range(num_users)]
  trees, labels = [], []
  for k in range(num_trees):
    name, label = f"post{k:02d}", "news" if k % 2 == 0 else "meme"
    size = rng.randint(8, 20) if label == "news" else rng.randint(4, 14)
    nodes = []  # (user, parent user, time)
    taken = set()
    while len(nodes) < size:
      user = rng.choices(users, weights)[0]
      if user in taken:
        continue
      taken.add(user)
      if not nodes:
        nodes.append((user, "", 0.0))
        continue
      near_root = 0.7 if label == "news" else 0.2
      parent = nodes[0] if rng.random() < near_root else nodes[-1]
      nodes.append((user, parent[0], round(parent[2] + rng.uniform(0.5, 20.0), 1)))
    trees += [f"{name},{par},{user},{t:g}" for user, par, t in nodes]
    labels.append(f"{name},{label}")
  return trees, labels


def main() -> None:
  """Writes the two files."""
  trees, labels = make_rows()
  (HERE / "trees.csv").write_text("\n".join(["tree,parent,child,time"] + trees) + "\n")
  (HERE / "tree_labels.csv").write_text("\n".join(["tree,label"] + labels) + "\n")


if __name__ == "__main__":
  main()
