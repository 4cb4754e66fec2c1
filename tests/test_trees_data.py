"""Tree readers, validation, cleaning rule and the level-wise batch layout."""

import io
import tarfile

import numpy as np
import pytest

from popdiff_jax import DataError
from popdiff_jax.data import trees as T
from _shared_data import require_shared

# Our own functions run under jax_numpy_dtype_promotion="strict" (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("strict_dtypes")


def _edge(p, c):
  return f"{list(map(str, p))}->{list(map(str, c))}"


def _tw_tar(tmp_path, files: dict[str, list[str]]):
  path = tmp_path / "tw.tar.gz"
  with tarfile.open(path, "w:gz") as tf:
    for name, lines in files.items():
      data = ("\n".join(lines) + ("\n" if lines else "")).encode()
      info = tarfile.TarInfo(f"twitter15/tree/{name}.txt")
      info.size = len(data)
      tf.addfile(info, io.BytesIO(data))
  return path


R = ("ROOT", "ROOT", "0.0")
A = ("u1", "10", "0.0")
B = ("u2", "10", "1.0")
C = ("u3", "10", "2.0")
D = ("u4", "10", "3.0")


def test_tree_from_parents_orders_breadth_first():
  t = T.tree_from_parents([2, 2, -1, 0, 1], name="x", user=list("abcde"))
  np.testing.assert_array_equal(t.parent, [-1, 0, 0, 1, 2])
  np.testing.assert_array_equal(t.depth, [0, 1, 1, 2, 2])
  assert list(t.user) == list("cabde")
  assert T.tree_stats(t) == {"size": 5, "depth": 2, "width": 2}


@pytest.mark.parametrize("parent,msg", [
  ([], "empty"),
  ([-1, 0, 5], "missing"),
  ([-1, 2, 1], "cycle"),
  ([-1, -1, 0], "2 roots"),
  ([0, 0], "0 roots"),
  ([-1, 1], "own parent"),
])
def test_parent_array_errors_name_the_tree(parent, msg):
  with pytest.raises(DataError, match=msg) as e:
    T.tree_from_parents(parent, name="tree42", path="f.txt", line=7)
  assert "tree42" in str(e.value) and "f.txt:7" in str(e.value)


def test_read_parent_arrays_file(tmp_path):
  p = tmp_path / "pa.txt"
  p.write_text("a\t-1 0 0 1\tu v w x\nb\t-1\n")
  ts = T.read_parent_arrays(p)
  assert [t.name for t in ts] == ["a", "b"] and ts[0].size == 4 and list(ts[0].user) == list("uvwx")
  p.write_text("a\t-1 0\nbad\t-1 0 3\n")
  with pytest.raises(DataError, match=r"pa.txt:2: tree 'bad'.*missing"):
    T.read_parent_arrays(p)
  p.write_text("a\t-1 0\nempty\t\n")
  with pytest.raises(DataError, match=r":2: tree 'empty' is empty"):
    T.read_parent_arrays(p)


def test_twitter_cleaning_rule_counts_and_strict_errors(tmp_path):
  lines = [_edge(R, A), _edge(A, B), _edge(A, B),  # duplicate
           _edge(B, B),                             # self-loop
           _edge(C, D), _edge(A, D), _edge(A, C),   # D has parents C (t=2) and A (t=0)
           _edge(B, A)]                             # edge into the root
  tar = _tw_tar(tmp_path, {"100": lines})
  (t,), rep = T.read_twitter15(tar)
  assert rep.self_loops == 1 and rep.duplicate_edges == 1 and rep.edges_into_root == 1
  assert rep.multi_parent_nodes == 1 and rep.dropped_parent_edges == 1
  assert rep.unreachable_nodes == 0 and rep.kept_nodes == 4 and rep.roots_with_parent_edges == 1
  # Earliest parent wins: D hangs under A (delay 0.0), not C.
  par = {t.user[i]: (t.user[p] if p >= 0 else None) for i, p in enumerate(t.parent)}
  assert par == {"u1": None, "u2": "u1", "u3": "u1", "u4": "u1"}
  np.testing.assert_allclose(sorted(t.delay), [0, 1, 2, 3])
  with pytest.raises(DataError, match=r"tw.tar.gz:twitter15/tree/100.txt:4: tree '100': self-loop"):
    T.read_twitter15(tar, strict=True)
  tar2 = _tw_tar(tmp_path, {"200": [_edge(R, A), _edge(C, D), _edge(A, D)]})
  with pytest.raises(DataError, match=r"100.txt|200.txt:3: tree '200': node .* two parents"):
    T.read_twitter15(tar2, strict=True)


def test_twitter_missing_parent_cycle_and_empty(tmp_path):
  # C's parent D never connects to the root; C and D form a cycle.
  lines = [_edge(R, A), _edge(A, B), _edge(D, C), _edge(C, D)]
  tar = _tw_tar(tmp_path, {"300": lines})
  (t,), rep = T.read_twitter15(tar)
  assert t.size == 2 and rep.unreachable_nodes == 2
  with pytest.raises(DataError, match="tree '300'.*not reachable"):
    T.read_twitter15(tar, strict=True)
  tar = _tw_tar(tmp_path, {"400": [_edge(R, A), _edge(B, C)]})  # parent B missing
  with pytest.raises(DataError, match=r"400.txt:2: tree '400'.*not reachable"):
    T.read_twitter15(tar, strict=True)
  tar = _tw_tar(tmp_path, {"500": []})
  with pytest.raises(DataError, match="tree '500' is empty"):
    T.read_twitter15(tar)
  tar = _tw_tar(tmp_path, {"600": ["garbage line"]})
  with pytest.raises(DataError, match=r"600.txt:1: tree '600': cannot parse"):
    T.read_twitter15(tar)


def test_weibo_reader(tmp_path):
  p = tmp_path / "w.txt"
  p.write_text("1\t7\t0\t5\t7:0 7/8:60 7/9:120 7/8/10:180 7/9/8:240 7/8/11:300")
  (t,), rep = T.read_weibo(p)
  # uid 8 retweeted twice (via 7 at 60 s, via 9 at 240 s): the earliest wins.
  par = {t.user[i]: (t.user[q] if q >= 0 else None) for i, q in enumerate(t.parent)}
  assert par == {"7": None, "8": "7", "9": "7", "10": "8", "11": "8"}
  assert rep.multi_parent_nodes == 1
  np.testing.assert_allclose(t.delay, [0, 1, 2, 3, 5])
  with pytest.raises(DataError, match=r"w.txt:1: tree '1': node '8' has two parents"):
    T.read_weibo(p, strict=True)
  p.write_text("1\t7\t0\t5\t7:0 7/8:60\n2\t5\t0\t0\t")
  with pytest.raises(DataError, match=r"w.txt:2: cascade '2' is empty"):
    T.read_weibo(p)


def test_weibo_sample_reads():
  path = require_shared("weibo_casflow_sample", "dataset.txt")
  ts, rep = T.read_weibo(path)
  assert len(ts) == 30
  assert np.bincount([T.tree_stats(t)["depth"] for t in ts]).tolist() == [0, 19, 6, 4, 1]
  assert rep.kept_nodes == sum(t.size for t in ts)


def test_twitter15_known_quirks_are_counted():
  tar = require_shared("twitter15_16_trees", "twitter15_tree.tar.gz")
  ts, rep = T.read_twitter15(tar, max_trees=60)
  assert len(ts) == 60 and all(t.label is not None for t in ts)
  for t in ts:
    assert t.parent[0] == -1 and np.all(t.parent[1:] < np.arange(1, t.size))
    assert np.all(t.depth[1:] == t.depth[t.parent[1:]] + 1)


def test_batch_layout_is_level_wise_and_parents_precede():
  rng = np.random.default_rng(0)
  exs = []
  for j, n in enumerate((1, 6, 13, 4)):
    par = [-1] + [int(rng.integers(0, i)) for i in range(1, n)]
    t = T.tree_from_parents(par, name=str(j))
    exs.append(T.TreeExample(t.name, t.parent, t.depth, rng.normal(size=(n, 2)).astype(np.float32),
                             rng.integers(0, 3, n).astype(np.int32), np.ones(2, np.float32)))
  chunk = 3
  k = T.num_chunks_needed([e.depth for e in exs], chunk)
  b = T.make_tree_batch(exs, num_protos=3, chunk=chunk, num_chunks=k + 1, batch_trees=5)
  assert b.x.shape == ((k + 1) * chunk, 2) and b.content.shape == (5, 2)
  assert int(b.node_mask.sum()) == 24 and b.tree_mask.tolist() == [True] * 4 + [False]
  slots = np.flatnonzero(b.node_mask)
  chunk_of = slots // chunk
  # Every chunk holds one depth; each node's parent row is an earlier chunk or a virtual root row.
  assert np.all(b.chunk_depth[chunk_of] == b.depth[slots])
  prow = b.parent[slots]
  is_root = b.depth[slots] == 0
  assert np.all(prow[is_root] == b.tree[slots][is_root])
  assert np.all((prow[~is_root] - 5) // chunk < chunk_of[~is_root])
  assert np.all(b.tree[prow[~is_root] - 5] == b.tree[slots][~is_root])
  with pytest.raises(ValueError, match="chunks"):
    T.make_tree_batch(exs, num_protos=3, chunk=chunk, num_chunks=k - 1, batch_trees=5)


@pytest.mark.parametrize("width", [1, 2, 5, 64])
def test_parent_chunks_list_every_parent_after_its_own_parent(width):
  """TreeBatch.parent_chunks: exactly the slots with children, each once; a listed parent's own
  parent is a virtual root or in an earlier chunk; unused entries hold N; chunks fill in slot
  order and a chunk may mix depths (a deep tree beside a wide one); S is bucketed."""
  rng = np.random.default_rng(3)
  pars = [[-1] + [0] * 9, [-1, 0, 1, 2, 3, 4, 5], [-1],
          [-1] + [int(rng.integers(0, i)) for i in range(1, 30)]]
  exs = []
  for j, par in enumerate(pars):
    t = T.tree_from_parents(par, name=str(j))
    exs.append(T.TreeExample(t.name, t.parent, t.depth, np.ones((t.size, 1), np.float32),
                             np.zeros(t.size, np.int32), np.ones(1, np.float32)))
  k = T.num_chunks_needed([e.depth for e in exs], 4)
  b = T.make_tree_batch(exs, num_protos=1, chunk=4, num_chunks=k, batch_trees=4,
                        parent_chunk=width)
  n = b.x.shape[0]
  pc = b.parent_chunks
  assert pc.shape[1] == width and pc.dtype == np.int32
  listed = pc[pc < n]
  has_child = np.zeros(n, bool)
  real = np.flatnonzero(b.node_mask & (b.depth > 0))
  has_child[b.parent[real] - 4] = True
  assert sorted(listed.tolist()) == np.flatnonzero(has_child).tolist()
  assert np.all(np.diff(listed) > 0)  # slot order
  chunk_of = {int(slot): s for s, row in enumerate(pc) for slot in row if slot < n}
  for slot, s in chunk_of.items():
    own = int(b.parent[slot])
    assert own < 4 or chunk_of[own - 4] < s
  # Unused entries only at the end of a chunk.
  for row in pc:
    used = row < n
    assert np.all(used[:used.sum()])
  s_need = pc.shape[0]
  assert s_need >= 1 + max(int(e.depth[np.bincount(e.parent[1:], minlength=e.parent.size) > 0]
                               .max(initial=0)) for e in exs)
  b2 = T.make_tree_batch(exs, num_protos=1, chunk=4, num_chunks=k, batch_trees=4,
                         parent_chunk=width, parent_buckets=(s_need + 3,))
  assert b2.parent_chunks.shape == (s_need + 3, width)
  np.testing.assert_array_equal(b2.parent_chunks[:s_need], pc)
  assert np.all(b2.parent_chunks[s_need:] == n)
  b3 = T.make_tree_batch(exs, num_protos=1, chunk=4, num_chunks=k, batch_trees=4,
                         parent_chunk=width, parent_buckets=(1,))
  assert b3.parent_chunks.shape[0] == s_need  # beyond the largest bucket: a multiple of it
  empty = T.make_tree_batch([], num_protos=1, chunk=4, num_chunks=2, batch_trees=2,
                            parent_chunk=width)
  assert empty.parent_chunks.shape == (1, width) and np.all(empty.parent_chunks == 8)
  if width == 5:  # a chunk mixes depths: the chain's deep parents beside the random tree's
    depths = [{int(b.depth[s]) for s in row if s < n} for row in pc]
    assert any(len(d) > 1 for d in depths)


def test_node_targets_and_truncation():
  t = T.tree_from_parents([-1, 0, 0, 1, 1, 1], name="t")
  proto = np.array([0, 1, 2, 2, 2, 0])
  tg = T.node_targets(t.parent, proto, 3)
  np.testing.assert_array_equal(tg, [[0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1],
                                     [0, 0, 0, 1], [0, 0, 0, 1]])
  tt = T.truncate_tree(t, max_depth=1)
  assert tt.size == 3 and T.tree_stats(tt)["depth"] == 1
  assert T.truncate_tree(t, max_size=4).size == 4
