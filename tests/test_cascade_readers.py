"""The cascade readers, splits and batching (``popdiff_jax.data.cascades`` / ``.batching``).

Hand-written files in ``tmp_path`` with the expected vocabulary indices (0 padding, 1 Terminate,
users from 2 in order of first appearance over train, valid, test); every kind of bad input must
raise ``DataError`` naming the file and the line; the real datasets must have the counts that
``shared/data/README.md`` documents.
"""

import collections
import filecmp
import math
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _shared_data import require_shared
from popdiff_jax import DataError
from popdiff_jax.data import batching
from popdiff_jax.data.batching import bucket_lengths, make_batches
from popdiff_jax.data.cascades import (DATASETS, PAD, TERMINATE, Cascade, embedded_root,
                                       load_dataset, read_graph, read_seed_then_pairs,
                                       read_user_comma_time, read_user_space_time,
                                       split_cascades, warn_if_truncated)


def write(path: pathlib.Path, content: str | bytes) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(content, str):
    content = content.encode("utf-8")
  path.write_bytes(content)
  return path


def as_lists(cascades):
  return [c.users.tolist() for c in cascades]


# ------------------------------------------------------------------------------------ formats


def test_user_comma_time_three_files(tmp_path):
  folder = tmp_path / "forest" / "twitter"
  # Trailing spaces as in the originals; FOREST Twitter writes ms as floats with exponents.
  write(folder / "cascade.txt", "u1,10 u2,20 u3,30 \nu2,5 u4,6 \n")
  write(folder / "cascadevalid.txt", "u5,1 u1,2 \n")
  write(folder / "cascadetest.txt", "u6,1.285452422e+12 u4,1.285452445e+12 \n")
  ds = load_dataset("forest/twitter", tmp_path)
  assert [ds.vocab.user(i) for i in range(len(ds.vocab))][2:] == ["u1", "u2", "u3", "u4", "u5",
                                                                    "u6"]
  assert ds.vocab.num_users == 6 and ds.num_items == 8
  assert as_lists(ds.train) == [[2, 3, 4], [3, 5]]
  assert as_lists(ds.valid) == [[6, 2]]
  assert as_lists(ds.test) == [[7, 5]]
  np.testing.assert_array_equal(ds.train[0].times, [10.0, 20.0, 30.0])
  np.testing.assert_array_equal(ds.test[0].times, [1.285452422e12, 1.285452445e12])
  assert all(c.users.dtype == np.int32 and c.times.dtype == np.float64
             for c in ds.train + ds.valid + ds.test)
  assert ds.split == "files" and ds.graph is None and ds.report == {}


def test_user_space_time_single_file_with_truncated_last_token(tmp_path):
  lines = [",".join(f"{u} {t}.0" for u, t in zip(range(10 * k, 10 * k + 3), range(3))) + ","
           for k in range(10)]
  lines[-1] += "17892"  # the original Twitter file ends in a bare user id with no timestamp
  write(tmp_path / "mshgat" / "twitter" / "cascades.txt", "\n".join(lines) + "\n")
  ds = load_dataset("mshgat/twitter", tmp_path)
  assert ds.report == {"truncated_tokens": 1}
  assert "17892" not in ds.vocab and ds.vocab.num_users == 30
  # Vocabulary in file order; the one file is split 8/1/1 by a seeded permutation.
  assert ds.vocab.user(2) == "0" and ds.vocab.user(31) == "92"
  pooled = sorted(as_lists(ds.train + ds.valid + ds.test))
  assert pooled == [[2 + 3 * k, 3 + 3 * k, 4 + 3 * k] for k in range(10)]
  assert (len(ds.train), len(ds.valid), len(ds.test)) == (8, 1, 1)

  raw = read_user_space_time(tmp_path / "mshgat" / "twitter" / "cascades.txt")
  assert raw[0].users == ["0", "1", "2"] and raw[0].times == [0.0, 1.0, 2.0]
  assert raw[-1].users == ["90", "91", "92"] and raw[-1].line == 10


def test_bare_user_id_elsewhere_is_an_error(tmp_path):
  path = write(tmp_path / "c.txt", "1 1.0,2 2.0,3,\n4 4.0,\n")  # not the last line: no repair
  with pytest.raises(DataError) as e:
    read_user_space_time(path)
  assert e.value.line == 1 and str(path) in str(e.value)


def test_seed_then_pairs_relative_with_graph(tmp_path):
  folder = tmp_path / "infvae" / "christianity"
  write(folder / "train.txt", "10 11 5.0 12 9.0\n13 10 1.0\n")
  write(folder / "val.txt", "14 15 2.5\n")
  write(folder / "test.txt", "16 11 3.0 17 4.0\n")
  # Header "n_users n_edges", then edges; 99 never infects anyone, so its edge is dropped.
  write(folder / "graph.txt", "9 4\n10 11\n11 12\n13 99\n16 17\n")
  ds = load_dataset("infvae/christianity", tmp_path)
  # 10->2, 11->3, 12->4, 13->5, 14->6, 15->7, 16->8, 17->9
  assert as_lists(ds.train) == [[2, 3, 4], [5, 2]]
  assert as_lists(ds.valid) == [[6, 7]]
  assert as_lists(ds.test) == [[8, 3, 9]]
  np.testing.assert_array_equal(ds.train[0].times, [0.0, 5.0, 9.0])  # the seed at time 0
  np.testing.assert_array_equal(ds.test[0].times, [0.0, 3.0, 4.0])
  assert ds.graph.dtype == np.int32
  assert ds.graph.tolist() == [[2, 3], [3, 4], [8, 9]]
  assert ds.report["graph_edges_outside_cascades"] == 1


def test_seed_then_pairs_absolute_graph_without_header(tmp_path):
  folder = tmp_path / "topolstm_twitter"
  train = "".join(f"{100 + k} {200 + k} {1000 + k} {300 + k} {1005 + k}\n" for k in range(10))
  write(folder / "train.txt", train)
  write(folder / "test.txt", "400 401 77\n")
  write(folder / "graph.txt", "100 200\n200 300\n")  # the first line is a real edge: kept
  ds = load_dataset("topolstm_twitter", tmp_path)
  assert ds.graph.tolist() == [[2, 3], [3, 4]]
  # No valid file: 10% of the training file, seeded; the seed takes its first follower's time.
  assert (len(ds.train), len(ds.valid), len(ds.test)) == (9, 1, 1)
  assert as_lists(ds.test) == [[32, 33]]
  np.testing.assert_array_equal(ds.test[0].times, [77.0, 77.0])
  for c in ds.train + ds.valid:
    k = (int(c.users[0]) - 2) // 3
    np.testing.assert_array_equal(c.times, [1000 + k, 1000 + k, 1005 + k])
  assert sorted(as_lists(ds.train + ds.valid)) == [[2 + 3 * k, 3 + 3 * k, 4 + 3 * k]
                                                   for k in range(10)]


def test_repeated_user_keeps_first_infection(tmp_path):
  folder = tmp_path / "forest" / "memetracker"
  write(folder / "cascade.txt", "a,1 b,2 a,3 c,4 b,5\n")
  write(folder / "cascadevalid.txt", "c,1 c,2\n")
  write(folder / "cascadetest.txt", "d,1\n")
  ds = load_dataset("forest/memetracker", tmp_path)
  assert as_lists(ds.train) == [[2, 3, 4]]
  np.testing.assert_array_equal(ds.train[0].times, [1.0, 2.0, 4.0])
  assert as_lists(ds.valid) == [[4]]
  assert ds.report["repeats_dropped"] == 3


# ---------------------------------------------------------------------------------- bad input

_COMMA = read_user_comma_time
_SPACE = read_user_space_time


def _seed(path):
  return read_seed_then_pairs(path, relative_times=True)


def _graph(path):
  return read_graph(path, header=True)


BAD = [
    # (reader, content, line of the fault)
    (_COMMA, "a,1 b,2\n   \nc,3\n", 2),                  # only spaces
    (_COMMA, "a,1 b,2\n,,,\nc,3\n", 2),                   # only commas
    (_COMMA, "\na,1\n", 1),                               # leading blank line
    (_COMMA, "a,1\nb,2 c,x\n", 2),                        # non-numeric time
    (_COMMA, "a,1\nb,nan\n", 2),                          # non-finite time
    (_COMMA, "a,1\nb,1e999\n", 2),
    (_COMMA, "a,1\nb,2\nc,3,4\n", 3),                     # malformed token
    (_COMMA, "a,1\nb\n", 2),
    (_COMMA, "a,1\n,5\n", 2),
    (_COMMA, "a,1\nb,\n", 2),
    (_COMMA, b"a,1\nb,\xff\xfe2\n", 2),                   # not UTF-8
    (_SPACE, "a 1,b 2,\n   \nc 3,\n", 2),
    (_SPACE, "a 1,b 2,\n,,,\nc 3,\n", 2),
    (_SPACE, "a 1,\nb x,\n", 2),
    (_SPACE, "a 1,\nb 1 2,\nc 3,\n", 2),
    (_SPACE, "a 1,\nb,\nc 3,\n", 2),
    (_SPACE, b"a 1,\nb 2,\n\xc3(\n", 3),
    (_seed, "1 2 3\n  \n4 5 6\n", 2),
    (_seed, "1 2 3\n4 5 x\n", 2),
    (_seed, "1 2 3\n4 5 6 7\n", 2),                       # even number of fields
    (_seed, "1 2 inf\n", 1),
    (_seed, b"1 2 3\n\x80 5 6\n", 2),
    (_graph, "3 2\n1 2\n1 2 3\n", 3),                     # header skipped; line numbers kept
    (_graph, "3 2\n1 2\n\n", None),                       # trailing blank lines are harmless
]


@pytest.mark.parametrize("reader,content,line", BAD)
def test_bad_input_names_file_and_line(tmp_path, reader, content, line):
  path = write(tmp_path / "data.txt", content)
  if line is None:
    reader(path)
    return
  with pytest.raises(DataError) as e:
    reader(path)
  assert e.value.path == str(path) and e.value.line == line
  assert f"{path}:{line}:" in str(e.value)


def test_seed_then_pairs_line_of_commas(tmp_path):
  path = write(tmp_path / "train.txt", "1 2 3\n,,,\n4 5 6\n")
  with pytest.raises(DataError) as e:
    _seed(path)
  assert e.value.line == 2


def test_line_numbers_count_newlines_only(tmp_path):
  path = write(tmp_path / "cascade.txt", "a,1\x0cb,2\nc,x\n")
  with pytest.raises(DataError) as e:
    read_user_comma_time(path)
  assert e.value.line == 2


@pytest.mark.parametrize("reader", [_COMMA, _SPACE, _seed, _graph])
@pytest.mark.parametrize("content", ["", "\n \n\n"])
def test_empty_file(tmp_path, reader, content):
  path = write(tmp_path / "empty.txt", content)
  with pytest.raises(DataError, match="empty") as e:
    reader(path)
  assert str(path) in str(e.value)


def test_missing_file(tmp_path):
  with pytest.raises(DataError) as e:
    read_user_comma_time(tmp_path / "nope.txt")
  assert str(tmp_path / "nope.txt") in str(e.value)
  with pytest.raises(DataError, match="data_dir"):
    load_dataset("forest/twitter", tmp_path)


# ------------------------------------------------------------------------------------- splits


def _numbered(n, rng):
  """n cascades told apart by their first user (2 + i), with random first times."""
  firsts = rng.permutation(n).astype(np.float64) * 10.0
  return [Cascade(np.asarray([2 + i, 2 + n + i], np.int32), np.asarray([t, t + 1.0]))
          for i, t in enumerate(firsts)]


def _ids(parts):
  return [[int(c.users[0]) for c in p] for p in parts]


def test_random_split_is_seeded_and_a_partition():
  cascades = _numbered(50, np.random.default_rng(1))
  a = _ids(split_cascades(cascades, (0.8, 0.1, 0.1), "random", seed=3))
  b = _ids(split_cascades(cascades, (0.8, 0.1, 0.1), "random", seed=3))
  c = _ids(split_cascades(cascades, (0.8, 0.1, 0.1), "random", seed=4))
  assert a == b and a != c
  assert [len(p) for p in a] == [40, 5, 5]
  for parts in (a, c):
    assert sorted(sum(parts, [])) == list(range(2, 52))


def test_time_split_puts_latest_in_test():
  cascades = _numbered(37, np.random.default_rng(2))
  parts = split_cascades(cascades, (0.7, 0.2, 0.1), "time")
  assert sorted(sum(_ids(parts), [])) == list(range(2, 39))
  firsts = [[c.times[0] for c in p] for p in parts]
  assert max(firsts[0]) < min(firsts[1]) and max(firsts[1]) < min(firsts[2])
  assert [len(p) for p in parts] == [26, 7, 4]


def test_split_arguments_are_checked():
  cascades = _numbered(5, np.random.default_rng(0))
  with pytest.raises(ValueError):
    split_cascades(cascades, (0.5, 0.1, 0.1))
  with pytest.raises(ValueError):
    split_cascades(cascades, (0.8, 0.1, 0.1), "alphabetical")


def test_load_dataset_resplits(tmp_path):
  folder = tmp_path / "forest" / "twitter"
  rows = [" ".join(f"u{k}_{j},{100 * k + j}" for j in range(3)) for k in range(40)]
  write(folder / "cascade.txt", "\n".join(rows[:30]) + "\n")
  write(folder / "cascadevalid.txt", "\n".join(rows[30:35]) + "\n")
  write(folder / "cascadetest.txt", "\n".join(rows[35:]) + "\n")
  files = load_dataset("forest/twitter", tmp_path)
  every = sorted(as_lists(files.train + files.valid + files.test))
  r1 = load_dataset("forest/twitter", tmp_path, split="random", seed=1)
  r1b = load_dataset("forest/twitter", tmp_path, split="random", seed=1)
  r2 = load_dataset("forest/twitter", tmp_path, split="random", seed=2)
  t = load_dataset("forest/twitter", tmp_path, split="time")
  assert as_lists(r1.test) == as_lists(r1b.test) and as_lists(r1.train) != as_lists(r2.train)
  for ds in (r1, r2, t):
    assert sorted(as_lists(ds.train + ds.valid + ds.test)) == every
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (32, 4, 4)
  assert [c.times[0] for c in t.test] == [3600.0, 3700.0, 3800.0, 3900.0]
  assert [ds.vocab.user(2) for ds in (files, r1, t)] == ["u0_0"] * 3


# ----------------------------------------------------------------------------------- batching


def _random_cascades(n, max_users, rng):
  out = []
  for _ in range(n):
    k = int(rng.integers(1, max_users + 1))
    users = rng.choice(np.arange(2, 500), size=k, replace=False).astype(np.int32)
    times = np.cumsum(rng.exponential(5.0, size=k)) + rng.uniform(1e9, 2e9)
    out.append(Cascade(users, times))
  return out


def _rows(batches):
  """(users tuple, tokens, ends in Terminate) of every real row of every batch."""
  rows = []
  for b in batches:
    for r in range(b.users.shape[0]):
      if not b.mask[r, 0]:
        continue
      tokens = int(b.mask[r].sum())
      real = b.users[r, :tokens]
      ends = bool(real[-1] == TERMINATE)
      rows.append((tuple(real[:-1].tolist() if ends else real.tolist()), tokens, ends))
  return rows


def test_every_cascade_in_exactly_one_batch():
  rng = np.random.default_rng(0)
  max_len = 16
  cascades = _random_cascades(83, 24, rng)  # some longer than max_len, passed uncut
  batches = make_batches(cascades, 8, max_len=max_len)
  rows = _rows(batches)
  want = collections.Counter(tuple(c.users[:max_len].tolist()) for c in cascades)
  assert collections.Counter(r[0] for r in rows) == want
  assert sum(b.num_cascades for b in batches) == len(cascades)
  by_users = {tuple(c.users[:max_len].tolist()): c for c in cascades}
  for users, tokens, ends in rows:
    cut = len(by_users[users].users) > max_len
    assert ends == (not cut)  # Terminate only after cascades that ended within max_len
    assert tokens == (max_len if cut else len(users) + 1)


def test_batch_shapes_masks_and_times():
  rng = np.random.default_rng(1)
  max_len = 20
  cascades = _random_cascades(50, 20, rng)
  buckets = bucket_lengths(max_len)
  assert buckets == (8, 16, 21)
  batches = make_batches(cascades, 4, max_len=max_len)
  assert len({b.users.shape for b in batches}) <= len(buckets)
  by_users = {tuple(c.users.tolist()): c for c in cascades}
  for b in batches:
    assert b.users.shape[0] == 4 and b.users.shape[1] in buckets
    assert b.users.shape == b.times.shape == b.mask.shape
    assert b.users.dtype == np.int32 and b.times.dtype == np.float32 and b.mask.dtype == bool
    tokens = b.mask.sum(axis=1)
    # The mask is a prefix; outside it users are padding and times 0.
    np.testing.assert_array_equal(b.mask, np.arange(b.mask.shape[1])[None, :] < tokens[:, None])
    assert (b.users[~b.mask] == PAD).all() and (b.times[~b.mask] == 0).all()
    assert (b.users[b.mask] != PAD).all()
    for r in np.flatnonzero(tokens):
      n = int(tokens[r]) - 1  # no cascade is cut here: all end in Terminate
      c = by_users[tuple(b.users[r, :n].tolist())]
      np.testing.assert_array_equal(b.users[r, :n], c.users)
      np.testing.assert_allclose(b.times[r, :n], (c.times - c.times[0]).astype(np.float32))
      assert b.users[r, n] == TERMINATE and b.times[r, n] == b.times[r, n - 1]
      # The smallest bucket that holds n + 1 tokens.
      assert b.users.shape[1] == min(s for s in buckets if s >= n + 1)


def test_shuffling_is_deterministic_in_seed_and_epoch():
  cascades = _random_cascades(60, 30, np.random.default_rng(2))

  def order(**kw):
    return [r[0] for r in _rows(make_batches(cascades, 4, max_len=32, **kw))]

  plain = order()
  assert order() == plain
  a = order(shuffle=True, seed=0, epoch=0)
  assert a == order(shuffle=True, seed=0, epoch=0)
  assert a != order(shuffle=True, seed=0, epoch=1)
  assert a != order(shuffle=True, seed=1, epoch=0)
  assert a != plain and sorted(a) == sorted(plain)


def _packed_per_batch(cascades, batch_size, max_len, shuffle, seed, epoch):
  """Reference: each batch packed from its cascades (``pack``), in the documented order."""
  buckets = bucket_lengths(max_len)
  lengths = np.asarray([batching.sequence_length(c, max_len) for c in cascades])
  which = np.searchsorted(np.asarray(buckets), lengths, side="left")
  rng = np.random.default_rng([seed, epoch]) if shuffle else None
  out = []
  for b, size in enumerate(buckets):
    idx = np.flatnonzero(which == b)
    if rng is not None:
      idx = rng.permutation(idx)
    for start in range(0, len(idx), batch_size):
      chunk = [cascades[i] for i in idx[start:start + batch_size]]
      out.append(batching.pack(chunk, size, batch_size, max_len))
  return out if rng is None else [out[i] for i in rng.permutation(len(out))]


@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_batcher_gives_the_batches_of_packing_each_batch(batch_size):
  cascades = _random_cascades(70, 40, np.random.default_rng(3))
  batcher = batching.CascadeBatcher(cascades, batch_size, max_len=20)
  for kw in ({"shuffle": False, "seed": 0, "epoch": 0}, {"shuffle": True, "seed": 0, "epoch": 0},
             {"shuffle": True, "seed": 4, "epoch": 7}):
    want = _packed_per_batch(cascades, batch_size, 20, **kw)
    for got in (batcher.batches(**kw), make_batches(cascades, batch_size, max_len=20, **kw)):
      assert len(got) == len(want) == len(batcher)
      for g, w in zip(got, want):
        for a, b in zip(g, w):
          assert a.dtype == b.dtype and a.shape == b.shape
          np.testing.assert_array_equal(a, b)


def test_bucket_lengths_and_errors():
  assert bucket_lengths(200) == (8, 16, 32, 64, 128, 201)
  assert bucket_lengths(7) == (8,)
  assert bucket_lengths(3, min_bucket=2) == (2, 4)
  with pytest.raises(ValueError):
    bucket_lengths(0)
  long = Cascade(np.arange(2, 12, dtype=np.int32), np.arange(10.0))
  with pytest.raises(ValueError):
    make_batches([long], 2, max_len=10, buckets=(4, 8))
  with pytest.raises(ValueError):
    batching.pack([long, long], 11, rows=1, max_len=10)
  assert make_batches([], 4) == []


def test_cascade_of_exactly_max_len_ends_with_terminate():
  c = Cascade(np.arange(2, 7, dtype=np.int32), np.arange(5.0))
  (b,) = make_batches([c], 2, max_len=5)
  assert b.users.shape == (2, 6)
  assert b.users[0].tolist() == [2, 3, 4, 5, 6, TERMINATE]
  assert not b.mask[1].any()


def test_truncated_cascade_gets_no_terminate():
  long = Cascade(np.arange(2, 12, dtype=np.int32), np.arange(10.0))
  with pytest.warns(UserWarning):
    assert warn_if_truncated([long], 5) == 1
  (b,) = make_batches([long], 2, max_len=5)
  assert b.users[0].tolist() == [2, 3, 4, 5, 6, 0]
  assert TERMINATE not in b.users[0].tolist()


# ---------------------------------------------------------------------------------- real data

# shared/data/README.md sections 1-5: users, (train, valid, test) as in the files, avg length.
# valid=None: no valid file (load_dataset holds out 10% of the training file); total=...: one file.
README_COUNTS = {
    "ndm/irvine": (540, (424, None, 47), 13.63),
    "ndm/lastfm": (982, (21_422, None, 2_380), 7.66),
    "ndm/memetracker": (498, (7_474, None, 830), 8.43),
    "forest/twitter": (12_627, (2_768, 347, 346), 39.17),
    "forest/memetracker": (4_709, (10_131, 1_266, 1_266), 16.36),
    "mshgat/twitter": (12_627, 3_454, 39.22),
    "infvae/android": (2_927, (475, 68, 136), 42.74),
    "infvae/christianity": (1_651, (411, 59, 119), 26.02),
    "topolstm_twitter": (6_126, (456, None, 113), 17.04),
}
GRAPH_EDGES = {"infvae/android": 48_573, "infvae/christianity": 35_624, "topolstm_twitter": 12_045}


def test_readme_counts_cover_the_registry():
  assert set(README_COUNTS) == set(DATASETS)


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_real_dataset_counts(name):
  folder = require_shared(DATASETS[name].folder)
  root = folder.parents[DATASETS[name].folder.count("/")]
  ds = load_dataset(name, root)
  users, splits, avg_len = README_COUNTS[name]
  got = (len(ds.train), len(ds.valid), len(ds.test))
  assert ds.vocab.num_users == users
  if isinstance(splits, int):  # MS-HGAT: one file, 80/10/10
    assert sum(got) == splits and ds.report["truncated_tokens"] == 1
    assert got == (round(0.8 * splits), round(0.9 * splits) - round(0.8 * splits),
                   splits - round(0.9 * splits))
  elif splits[1] is None:
    assert (got[0] + got[1], got[2]) == (splits[0], splits[2])
    assert got[1] == splits[0] - round(0.9 * splits[0])
  else:
    assert got == splits
  assert ds.summary()["avg_len"] == avg_len
  assert "repeats_dropped" not in ds.report  # README: no duplicates in the sequence datasets
  if name in GRAPH_EDGES:
    assert len(ds.graph) + ds.report["graph_edges_outside_cascades"] == GRAPH_EDGES[name]
    assert ds.graph.min() >= 2 and ds.graph.max() < len(ds.vocab)
  else:
    assert ds.graph is None
  for c in ds.train + ds.valid + ds.test:
    assert len(np.unique(c.users)) == len(c.users) and c.users.min() >= 2


def test_embedded_ndm_is_the_shared_copy():
  shared = require_shared("ndm")
  for name in ("irvine", "lastfm", "memetracker"):
    for f in ("cascade.txt", "cascadetest.txt"):
      assert filecmp.cmp(embedded_root() / "ndm" / name / f, shared / name / f, shallow=False)


# --------------------------------------------------------------------------- property: fuzzing

_GARBAGE_FIELD = st.one_of(
    st.sampled_from(["a", "17", "u_9", "0", "-3", "1.5", "1.28e+12", "nan", "inf", "1e999", "",
                     "x1", "1,2", ",", " ", "  ", "\t", "é", "1_0"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                   blacklist_characters="\n\r"),
            max_size=6),
)
_GARBAGE_LINE = st.lists(_GARBAGE_FIELD, max_size=8).flatmap(
    lambda fields: st.sampled_from([" ", ",", ", ", "\t"]).map(lambda sep: sep.join(fields)))
_UID = st.one_of(st.sampled_from(["1", "2", "17", "u_9", "user_000030"]),
                 st.integers(0, 10**9).map(str))
_TIME = st.one_of(st.integers(-10, 2 * 10**9).map(str),
                  st.floats(allow_nan=False, allow_infinity=False).map(repr))
_PAIRS = st.lists(st.tuples(_UID, _TIME), min_size=1, max_size=6)
# Well-formed lines of each format (so that files also load), mixed with garbage lines.
_VALID_LINE = {
    "comma": _PAIRS.map(lambda ps: " ".join(f"{u},{t}" for u, t in ps) + " "),
    "space": _PAIRS.map(lambda ps: ",".join(f"{u} {t}" for u, t in ps) + ","),
    "seed": st.tuples(_UID, _PAIRS).map(
        lambda x: " ".join([x[0]] + [f"{u} {t}" for u, t in x[1]])),
    "graph": st.tuples(_UID, _UID).map(" ".join),
}


def _file(fmt):
  line = st.one_of(_VALID_LINE[fmt], _VALID_LINE[fmt], _GARBAGE_LINE)
  return st.tuples(st.lists(line, max_size=6), st.booleans(),
                   st.one_of(st.none(), st.none(), st.integers(0, 10**6)))


def _encode(spec):
  lines, trailing_newline, bad_byte_at = spec
  data = ("\n".join(lines) + ("\n" if trailing_newline else "")).encode("utf-8")
  if bad_byte_at is not None:  # a byte that is never valid UTF-8
    i = bad_byte_at % (len(data) + 1)
    data = data[:i] + b"\xff" + data[i:]
  return data


_READERS = [("comma", _COMMA), ("space", _SPACE), ("seed", _seed),
            ("seed", lambda p: read_seed_then_pairs(p, relative_times=False)),
            ("graph", _graph), ("graph", lambda p: read_graph(p, header=False))]


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.sampled_from(range(len(_READERS))), data=st.data())
def test_fuzzed_files_load_or_raise_data_error(tmp_path, which, data):
  fmt, reader = _READERS[which]
  content = _encode(data.draw(_file(fmt)))
  path = write(tmp_path / "fuzz.txt", content)
  try:
    out = reader(path)
  except DataError as e:
    assert e.path == str(path) and str(path) in str(e)
    if e.line is None:
      assert "empty" in str(e) and not content.strip()
    else:
      assert 1 <= e.line <= content.count(b"\n") + 1 and f"{path}:{e.line}:" in str(e)
    return
  for item in out:
    if fmt == "graph":
      assert len(item) == 2 and all(item)
      continue
    assert 1 <= len(item.users) == len(item.times)
    assert all(math.isfinite(t) for t in item.times)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(train=_file("seed"), test=_file("seed"), graph=_file("graph"))
def test_fuzzed_dataset_folder_loads_or_raises_data_error(tmp_path, train, test, graph):
  folder = tmp_path / "topolstm_twitter"
  paths = [write(folder / "train.txt", _encode(train)), write(folder / "test.txt", _encode(test)),
           write(folder / "graph.txt", _encode(graph))]
  try:
    ds = load_dataset("topolstm_twitter", tmp_path)
  except DataError as e:
    assert e.path in {str(p) for p in paths}
    assert e.line is not None or "empty" in str(e)
    return
  n = len(ds.vocab)
  for c in ds.train + ds.valid + ds.test:
    assert len(c.users) >= 1 and c.users.min() >= 2 and c.users.max() < n
  assert ds.graph.shape[1] == 2
