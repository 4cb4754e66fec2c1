"""Propagation trees by path and format: the plain csv format and its labels, format detection,
the preset over the loaders, and one clear error (file, line, what was expected) for each kind of
malformed input in every format."""

import io
import pathlib
import random
import tarfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popdiff_jax import DataError
from popdiff_jax.data.trees import (TREE_FORMATS, Tree, detect_tree_format, load_tree_dataset,
                                    load_trees, read_tree_csv, tree_from_parents,
                                    write_parent_arrays, write_tree_csv)

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "popdiff_jax" / "data" / "examples"


def write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def _edge(p, c):
  return f"{list(map(str, p))}->{list(map(str, c))}"


def tw_tar(path, files: dict[str, str]):
  """A Twitter15-like archive: ``twitter15/tree/<name>.txt`` members with the given texts."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with tarfile.open(path, "w:gz") as tf:
    for name, text in files.items():
      data = text.encode()
      info = tarfile.TarInfo(f"twitter15/tree/{name}.txt")
      info.size = len(data)
      tf.addfile(info, io.BytesIO(data))
  return path


R, A, B, C = ("ROOT", "ROOT", "0.0"), ("u1", "10", "0.0"), ("u2", "10", "1.0"), ("u3", "10", "2.0")
TW_OK = "\n".join([_edge(R, A), _edge(A, B), _edge(B, C)]) + "\n"


# ----------------------------------------------------------------------------- the plain format


def test_the_example_csv_loads_with_its_labels():
  ts = load_trees(EXAMPLES / "trees.csv", labels=EXAMPLES / "tree_labels.csv")
  s = ts.summary()
  assert ts.format == "csv" and (s["trees"], s["users"], s["labelled"], s["labels"]) == (
      64, 40, 64, 2)
  assert s["dropped_edges"] == s["dropped_nodes"] == 0 and ts.labels.endswith("tree_labels.csv")
  for t in ts.trees:
    assert t.parent[0] == -1 and (t.parent[1:] < np.arange(1, t.size)).all()
    assert (t.delay[1:] >= t.delay[t.parent[1:]]).all() and t.delay[0] == 0
    assert len(set(t.user.tolist())) == t.size and t.label in ("news", "meme")


def test_the_example_is_what_its_script_writes():
  import importlib.util
  spec = importlib.util.spec_from_file_location("make_trees", EXAMPLES / "make_trees.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  trees, labels = module.make_rows()
  assert (EXAMPLES / "trees.csv").read_text().splitlines()[1:] == trees
  assert (EXAMPLES / "tree_labels.csv").read_text().splitlines()[1:] == labels
  assert (EXAMPLES / "trees.csv").stat().st_size < 100_000


def test_csv_rows_in_any_order_give_breadth_first_trees(tmp_path):
  path = write(tmp_path / "t.csv", "tree,parent,child,time\nb,,x,100\na,u,w,3\na,,u,1\n"
                                   "a,w,v,4\na,u,z,2\nb,x,y,101.5\n")
  b, a = read_tree_csv(path)
  assert (b.name, a.name) == ("b", "a")  # in the order of their first row
  assert a.user.tolist() == ["u", "w", "z", "v"] and a.parent.tolist() == [-1, 0, 0, 1]
  np.testing.assert_array_equal(a.delay, np.float32([0, 2, 1, 3]))  # time minus the root's
  np.testing.assert_array_equal(b.delay, np.float32([0, 1.5]))


BAD_CSV = [
    ("tree,parent,child,time\nt,,a,0\nt,a,b\n", 3, "expected 4"),              # truncated line
    ("tree,parent,child,time\nt,,a,0,9\n", 2, "expected 4"),                    # wrong columns
    ("tree,parent,child,time\nt,,a,0\nt,a,b,soon\n", 3, "time is not a number"),  # time
    ("tree,parent,child,time\nt,,a,0\nt,a,b,inf\n", 3, "not finite"),
    ("tree,parent,child,time\nt,,a,0\nt,zed,b,1\n", 3, "parent 'zed' of 'b' is no node"),
    ("", None, "empty file"),                                                   # empty file
    ("\n\n", None, "empty file"),
    ("tree,parent,child,time\n", None, "no rows"),
    ("tree,child,parent,time\nt,,a,0\n", 1, "header"),
    ("tree,parent,child,time\nt,,a,0\nt,a,,1\n", 3, "empty 'child'"),
    ("tree,parent,child,time\nt,a,b,0\n", 2, "no root row"),
    ("tree,parent,child,time\nt,,a,0\nt,,b,1\n", 3, "second root row"),
    ("tree,parent,child,time\nt,,a,0\nt,a,b,1\nt,a,b,2\n", 4, "listed twice"),
    ("tree,parent,child,time\nt,,a,0\nt,b,b,1\n", 3, "its own parent"),
    ("tree,parent,child,time\nt,,a,0\nt,c,b,1\nt,b,c,2\n", 3, "cycle"),
    ("tree,parent,child,time\nt,,a,5\nt,a,b,4\n", 3, "earlier than its parent"),
]


@pytest.mark.parametrize("text,line,what", BAD_CSV)
def test_malformed_csv_is_one_error_naming_file_and_line(tmp_path, text, line, what):
  path = write(tmp_path / "t.csv", text)
  with pytest.raises(DataError, match=what) as e:
    load_trees(path, "csv")
  assert e.value.path == str(path) and e.value.line == line and "\n" not in str(e.value)


@pytest.mark.parametrize("text,line,what", [
    ("tree,label\nt,news\nnope,meme\n", 3, "tree 'nope', which is not in"),  # unknown tree
    ("tree,label\nt,news\nt,meme\n", 3, "labelled twice"),
    ("tree,label\nt\n", 2, "expected 2"),
    ("tree,label\nt,\n", 2, "empty 'label'"),
    ("name,label\nt,news\n", 1, "header"),
    ("", None, "empty file"),
])
def test_malformed_label_csv_names_the_line(tmp_path, text, line, what):
  trees = write(tmp_path / "t.csv", "tree,parent,child,time\nt,,a,0\nt,a,b,1\n")
  labels = write(tmp_path / "labels.csv", text)
  with pytest.raises(DataError, match=what) as e:
    load_trees(trees, labels=labels)
  assert e.value.path == str(labels) and e.value.line == line


def test_labels_in_twitter15_lines_and_unlabelled_trees(tmp_path):
  trees = write(tmp_path / "t.csv", "tree,parent,child,time\nt,,a,0\ns,,b,0\n")
  ts = load_trees(trees, labels=write(tmp_path / "label.txt", "true:t\n"))
  assert [t.label for t in ts.trees] == ["true", None] and ts.summary()["labelled"] == 1
  with pytest.raises(DataError, match="two labels") as e:
    load_trees(trees, labels=write(tmp_path / "l2.txt", "true:t\nfalse:t\n"))
  assert e.value.line == 2
  with pytest.raises(DataError, match="expected 'label:tweet_id'"):
    load_trees(trees, labels=write(tmp_path / "l3.txt", "true t\n"))
  with pytest.raises(DataError, match="no such label file"):
    load_trees(trees, labels=tmp_path / "absent.csv")


# ----------------------------------------------------------------------------- the other formats


BAD_PARENT_ARRAYS = [
    ("a\t-1 0 0\tu v\n", 1, "2 user ids for 3 nodes"),                 # truncated line (users)
    ("a\t-1 0\tu v\t0\n", 1, "1 delays for 2 nodes"),                   # truncated line (delays)
    ("a\t-1 0\tu v\t0 1\textra\n", 1, "at most 4"),                     # wrong columns
    ("a\t-1 0\tu v\t0 soon\n", 1, "delay is not a number"),             # non-numeric time
    ("a\t-1 x\n", 1, "must be integers"),
    ("a\t-1 0\nb\t-1 5\n", 2, "parent 5, which is missing"),            # unknown parent
    ("a\t-1 0\na\t-1\n", 2, "used twice"),
    ("", None, "empty file"),                                           # empty file
]


@pytest.mark.parametrize("text,line,what", BAD_PARENT_ARRAYS)
def test_malformed_parent_arrays_name_file_and_line(tmp_path, text, line, what):
  path = write(tmp_path / "trees.tsv", text)
  with pytest.raises(DataError, match=what) as e:
    load_trees(path, "parent_arrays")
  assert e.value.path == str(path) and e.value.line == line and "\n" not in str(e.value)


BAD_WEIBO = [
    ("1\t7\t0\t2\t7:0 7/8\n", 1, "lacks ':dt'"),                        # truncated line
    ("1\t7\t0\n", 1, "expected 5"),
    ("1\t7\t0\t2\t7:0 7/8:60\tx\n", 1, "expected 5"),                   # wrong columns
    ("1\t7\t0\t2\t7:0 7/8:soon\n", 1, "time is not a number"),          # non-numeric time
    ("1\t7\tnoon\t2\t7:0 7/8:60\n", 1, "pub_time is not a number"),
    ("1\t7\t0\ttwo\t7:0 7/8:60\n", 1, "participant count"),
    ("1\t7\t0\t2\t7:0 5/8:60\n", 1, "does not start at the origin"),
    ("1\t7\t0\t1\t7:0\n1\t7\t0\t1\t7:0\n", 2, "used twice"),
    ("", None, "empty file"),                                           # empty file
]


@pytest.mark.parametrize("text,line,what", BAD_WEIBO)
def test_malformed_weibo_names_file_and_line(tmp_path, text, line, what):
  path = write(tmp_path / "dataset.txt", text)
  with pytest.raises(DataError, match=what) as e:
    load_trees(path, "weibo")
  assert e.value.path == str(path) and e.value.line == line and "\n" not in str(e.value)


BAD_TWITTER15 = [
    (_edge(R, A) + "\n" + _edge(A, B)[:-9] + "\n", 2, "cannot parse"),            # truncated
    (_edge(R, A) + "\n['u1', '10', '0.0', 'x']->['u2', '10', '1.0']\n", 2, "cannot parse"),
    (_edge(R, A) + "\n" + _edge(A, ("u2", "10", "soon")) + "\n", 2, "delay is not a number"),
    ("", None, "is empty"),                                                        # empty tree
    (_edge(A, B) + "\n", None, "no \\['ROOT'"),
]


@pytest.mark.parametrize("text,line,what", BAD_TWITTER15)
def test_malformed_twitter15_names_member_and_line(tmp_path, text, line, what):
  path = tw_tar(tmp_path / "tw.tar.gz", {"100": TW_OK, "200": text})
  with pytest.raises(DataError, match=what) as e:
    load_trees(path)
  assert e.value.path == f"{path}:twitter15/tree/200.txt" and e.value.line == line


def test_an_empty_archive_or_folder_is_an_error(tmp_path):
  with pytest.raises(DataError, match="no tree files") as e:
    load_trees(tw_tar(tmp_path / "tw.tar.gz", {}))
  assert e.value.path == str(tmp_path / "tw.tar.gz")
  (tmp_path / "tree").mkdir()
  with pytest.raises(DataError, match="no tree files"):
    load_trees(tmp_path / "tree")
  write(tmp_path / "broken.tar.gz", "not gzip")
  with pytest.raises(DataError, match="cannot read the tree archive"):
    load_trees(tmp_path / "broken.tar.gz")


@pytest.mark.parametrize("fmt,name,text,line", [
    ("twitter15", "tw.tar.gz", None, 4),
    ("weibo", "dataset.txt", "1\t7\t0\t3\t7:0 7/8:60 7/9/5:90\n", 1),
])
def test_a_parent_that_never_appears_is_counted_or_with_strict_raises(tmp_path, fmt, name, text,
                                                                      line):
  """The tree analogue of an unknown user: the cleaning rule drops the node (counted, with a
  warning); ``strict=True`` names the line."""
  if fmt == "twitter15":
    path = tw_tar(tmp_path / name, {"300": TW_OK + _edge(("u9", "10", "5.0"), C)
                                    .replace("u3", "u4") + "\n"})
  else:
    path = write(tmp_path / name, text)
  with pytest.warns(UserWarning, match="1 nodes not reachable from the root"):
    ts = load_trees(path, fmt)
  assert ts.report.unreachable_nodes == 1 and ts.summary()["dropped_nodes"] == 1
  with pytest.raises(DataError, match="not reachable from the root") as e:
    load_trees(path, fmt, strict=True)
  assert e.value.line == line


def test_the_twitter15_folder_reads_as_the_archive(tmp_path):
  files = {"100": TW_OK, "200": _edge(R, B) + "\n" + _edge(B, C) + "\n"}
  tar = tw_tar(tmp_path / "tw.tar.gz", files)
  for name, text in files.items():
    write(tmp_path / "twitter15" / "tree" / f"{name}.txt", text)
  write(tmp_path / "twitter15" / "label.txt", "false:100\ntrue:200\n")
  from_tar = load_trees(tar)
  assert [t.label for t in from_tar.trees] == ["false", "true"]  # twitter15/label.txt beside
  for folder in (tmp_path / "twitter15", tmp_path / "twitter15" / "tree"):
    ts = load_trees(folder)
    assert ts.format == "twitter15" and ts.labels == str(tmp_path / "twitter15" / "label.txt")
    for a, b in zip(ts.trees, from_tar.trees):
      assert_same_tree(a, b)


# ----------------------------------------------------------------------------- detection, presets


def test_formats_are_detected_where_unambiguous(tmp_path):
  assert detect_tree_format(write(tmp_path / "a.csv", "x")) == "csv"
  assert detect_tree_format(tw_tar(tmp_path / "t.tar.gz", {"1": TW_OK})) == "twitter15"
  assert detect_tree_format(tmp_path) == "twitter15"
  txt = write(tmp_path / "dataset.txt", "1\t7\t0\t1\t7:0\n")
  with pytest.raises(DataError, match="cannot tell the tree format") as e:
    load_trees(txt)
  assert "\n" not in str(e.value)
  for name in TREE_FORMATS:
    assert name in str(e.value)
  assert load_trees(txt, "weibo").format == "weibo"
  with pytest.raises(DataError, match="unknown tree format 'newick'"):
    load_trees(txt, "newick")
  with pytest.raises(DataError, match="reads a file, not a folder"):
    load_trees(tmp_path, "csv")
  with pytest.raises(DataError, match="no such file"):
    load_trees(tmp_path / "absent.csv")


def test_the_preset_is_a_loader_over_a_format(tmp_path):
  folder = tmp_path / "twitter15_16_trees"
  tw_tar(folder / "twitter15_tree.tar.gz", {"100": TW_OK})
  write(folder / "twitter15" / "label.txt", "non-rumor:100\n")
  for data_dir in (tmp_path, folder):  # the data dir, or the dataset's folder itself
    ts = load_tree_dataset("twitter15", data_dir)
    assert ts.name == "twitter15" and ts.format == "twitter15"
    assert [t.label for t in ts.trees] == ["non-rumor"]
  with pytest.raises(DataError, match="in format 'twitter15', not 'csv'"):
    load_tree_dataset("twitter15", tmp_path, format="csv")
  with pytest.raises(DataError, match="brings its own labels"):
    load_tree_dataset("twitter15", tmp_path, labels=folder / "twitter15" / "label.txt")
  with pytest.raises(DataError, match="not shipped"):
    load_tree_dataset("twitter15", tmp_path / "absent")
  with pytest.raises(DataError, match="not a registered name") as e:
    load_tree_dataset("pinterest")
  assert "twitter15" in str(e.value)


# ----------------------------------------------------------------------------- round trips


def assert_same_tree(a: Tree, b: Tree):
  assert (a.name, a.label) == (b.name, b.label)
  for field in ("parent", "depth", "user", "delay"):
    x, y = getattr(a, field), getattr(b, field)
    assert x.dtype == y.dtype and x.tolist() == y.tolist(), field


_ID = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=6)
_STEP = st.floats(0, 1e4, allow_nan=False, width=32)


@st.composite
def _trees(draw, unique_users: bool):
  """Random valid trees: parents before children, delays never below the parent's."""
  out = []
  for name in draw(st.lists(_ID, min_size=1, max_size=5, unique=True)):
    n = draw(st.integers(1, 12))
    parent = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    users = draw(st.lists(_ID, min_size=n, max_size=n, unique=unique_users))
    delay = [0.0]
    for i in range(1, n):
      # Delays are float32 as the readers store them: each is the parent's plus a step.
      delay.append(float(np.float32(delay[parent[i]] + draw(_STEP))))
    label = draw(st.one_of(st.none(), _ID))
    out.append(tree_from_parents(parent, name=name, user=users, delay=delay, label=label))
  return out


_SETTINGS = dict(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(**_SETTINGS)
@given(trees=_trees(unique_users=True), seed=st.integers(0, 2**16))
def test_random_valid_trees_read_back_identically_from_csv(tmp_path, trees, seed):
  """Property: trees written in the plain format (with their labels) read back equal; with the
  rows shuffled, every tree keeps its nodes, parents and delays."""
  path, labels = tmp_path / "t.csv", tmp_path / "labels.csv"
  write_tree_csv(trees, path, labels)
  back = load_trees(path, labels=labels if any(t.label for t in trees) else None).trees
  assert len(back) == len(trees)
  for a, b in zip(back, trees):
    assert_same_tree(a, b if any(t.label for t in trees) else b._replace(label=None))
  header, *rows = path.read_text().splitlines()
  random.Random(seed).shuffle(rows)
  write(path, "\n".join([header] + rows) + "\n")

  def edges(t):
    return sorted((t.user[i], t.user[t.parent[i]] if i else "", float(t.delay[i]))
                  for i in range(t.size))

  shuffled = {t.name: edges(t) for t in read_tree_csv(path)}
  assert shuffled == {t.name: edges(t) for t in trees}


@settings(**_SETTINGS)
@given(trees=_trees(unique_users=False))
def test_random_valid_trees_read_back_identically_from_parent_arrays(tmp_path, trees):
  path = tmp_path / "trees.tsv"
  write_parent_arrays(trees, path)
  back = load_trees(path, "parent_arrays").trees
  assert len(back) == len(trees)
  for a, b in zip(back, trees):
    assert_same_tree(a, b._replace(label=None))


def test_the_writers_refuse_what_they_cannot_write(tmp_path):
  t = tree_from_parents([-1, 0], name="t", user=["a", "b,c"])
  with pytest.raises(ValueError, match="commas"):
    write_tree_csv([t], tmp_path / "t.csv")
  with pytest.raises(ValueError, match="appears twice"):
    write_tree_csv([tree_from_parents([-1, 0], name="t", user=["a", "a"])], tmp_path / "t.csv")
  with pytest.raises(ValueError, match="white space"):
    write_parent_arrays([tree_from_parents([-1, 0], name="t", user=["a", "b c"])],
                        tmp_path / "t.tsv")
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # a strict format never warns
    load_trees(write(tmp_path / "ok.csv", "tree,parent,child,time\nt,,a,0\n"))
