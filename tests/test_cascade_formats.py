"""Cascades by path and format: the plain csv format, format detection, presets over the loaders,
and one clear error (file, line, what was expected) for each kind of malformed input."""

import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popdiff_jax import DataError
from popdiff_jax.data.cascades import DATASETS, FORMATS, detect_format, load_cascades, load_dataset

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "popdiff_jax" / "data" / "examples"


def write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


def test_the_example_csv_loads_with_its_graph():
  ds = load_dataset(EXAMPLES / "cascades.csv", format="csv", graph=EXAMPLES / "graph.csv")
  assert ds.format == "csv" and ds.vocab.num_users == 30 and ds.f_init is None
  assert len(ds.train) + len(ds.valid) + len(ds.test) == 60
  assert ds.graph.shape[1] == 2 and len(ds.graph) > 0
  for c in ds.train + ds.valid + ds.test:
    assert np.all(np.diff(c.times) >= 0) and len(set(c.users.tolist())) == len(c.users)


def test_csv_rows_in_any_order_come_out_in_time_order(tmp_path):
  path = write(tmp_path / "c.csv", "cascade,user,time\nb,x,5\na,u,2\na,v,1\nb,y,5\na,w,3\n")
  ds = load_cascades(path, split="random", fractions=(1.0, 0.0, 0.0))
  users = {tuple(ds.vocab.user(int(i)) for i in c.users) for c in ds.train}
  assert users == {("v", "u", "w"), ("x", "y")}  # sorted by time; ties keep file order


BAD_CSV = [
    ("cascade,user,time\na,u,1\na,v\n", 3, "expected 3"),            # a truncated line
    ("cascade,user,time\na,u,1,9\n", 2, "expected 3"),               # a wrong number of columns
    ("cascade,user,time\na,u,1\na,v,soon\n", 3, "non-numeric"),      # a non-numeric time
    ("cascade,user,time\na,u,1\na,,2\n", 3, "empty 'user'"),         # an empty field
    ("user,cascade,time\na,u,1\n", 1, "header"),                     # no or another header
    ("cascade,user,time\n", None, "no rows"),                        # a header and nothing else
    ("", None, "empty"),                                             # an empty file
]


@pytest.mark.parametrize("text,line,what", BAD_CSV)
def test_malformed_csv_is_one_error_naming_file_and_line(tmp_path, text, line, what):
  path = write(tmp_path / "c.csv", text)
  with pytest.raises(DataError, match=what) as e:
    load_cascades(path, "csv")
  assert e.value.path == str(path) and e.value.line == line
  assert "\n" not in str(e.value)


def test_csv_graph_with_an_unknown_user_names_the_line(tmp_path):
  cascades = write(tmp_path / "c.csv", "cascade,user,time\na,u,1\na,v,2\nb,w,0\nb,u,1\n")
  graph = write(tmp_path / "g.csv", "source,target\nu,v\nv,zed\n")
  with pytest.raises(DataError, match="'zed' appears in no cascade") as e:
    load_cascades(cascades, "csv", graph=graph)
  assert e.value.path == str(graph) and e.value.line == 3
  bad = write(tmp_path / "g2.csv", "source,target\nu\n")
  with pytest.raises(DataError, match="expected 2") as e:
    load_cascades(cascades, "csv", graph=bad)
  assert e.value.line == 2


def test_graph_users_outside_the_cascades_of_published_layouts_are_counted(tmp_path):
  """The published graphs hold users who are in no cascade (they carry paths for DeepWalk):
  their edges are left out of ``graph`` and counted, as documented."""
  folder = tmp_path / "infvae"
  write(folder / "train.txt", "1 2 1.0 3 2.0\n2 3 1.0\n")
  write(folder / "val.txt", "1 3 1.0\n")
  write(folder / "test.txt", "3 1 1.0\n")
  write(folder / "graph.txt", "4 3\n1 2\n2 3\n3 9\n")
  ds = load_cascades(folder)
  assert ds.format == "infvae" and len(ds.graph) == 2
  assert ds.report["graph_edges_outside_cascades"] == 1


def _layout(tmp_path, files):
  folder = tmp_path / "layout"
  for name, text in files.items():
    write(folder / name, text)
  return folder


@pytest.mark.parametrize("files,fmt", [
    ({"cascade.txt": "a,1 b,2\n", "cascadetest.txt": "b,1 c,2\n"}, "ndm"),
    ({"cascade.txt": "a,1 b,2\n", "cascadevalid.txt": "a,1 c,2\n", "cascadetest.txt": "b,1\n"},
     "forest"),
    ({"cascades.txt": "a 1,b 2,\nb 1,c 2,\n"}, "mshgat"),
    ({"train.txt": "a b 1\n", "val.txt": "b c 1\n", "test.txt": "c a 1\n",
      "graph.txt": "3 1\na b\n"}, "infvae"),
    ({"train.txt": "a b 1\n", "test.txt": "c a 1\n", "graph.txt": "a b\n"}, "topolstm"),
])
def test_layouts_are_detected_where_unambiguous(tmp_path, files, fmt):
  folder = _layout(tmp_path, files)
  assert detect_format(folder) == fmt
  assert load_cascades(folder).format == fmt


def test_undetectable_or_unknown_formats_list_the_formats(tmp_path):
  folder = _layout(tmp_path, {"notes.txt": "hello\n"})
  with pytest.raises(DataError, match="cannot tell the format") as e:
    load_cascades(folder)
  for name in FORMATS:
    assert name in str(e.value)
  with pytest.raises(DataError, match="unknown format 'parquet'"):
    load_cascades(folder, "parquet")
  with pytest.raises(DataError, match="reads a file"):
    load_cascades(folder, "csv")
  with pytest.raises(DataError, match="no such file"):
    load_cascades(tmp_path / "absent.csv", "csv")


def test_presets_are_loaders_over_formats_and_unknown_names_list_them():
  ds = load_dataset("ndm/irvine")
  assert ds.format == FORMATS[DATASETS["ndm/irvine"].format].name == "ndm" and ds.f_init == 0
  with pytest.raises(DataError, match="not a registered name") as e:
    load_dataset("my_set")
  assert "ndm/irvine" in str(e.value)
  with pytest.raises(DataError, match="in format 'ndm', not 'csv'"):
    load_dataset("ndm/irvine", format="csv")


_USER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=6)


@st.composite
def _cascades(draw):
  n = draw(st.integers(1, 6))
  out = []
  for i in range(n):
    users = draw(st.lists(_USER, min_size=1, max_size=6, unique=True))
    times = sorted(draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32),
                                 min_size=len(users), max_size=len(users))))
    out.append((f"c{i}", users, times))
  return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_cascades())
def test_random_valid_csv_reads_back_identically(tmp_path, cascades):
  """Property: any valid cascades written in the plain format read back as written (in time
  order, each user's first infection, times to float precision)."""
  lines = ["cascade,user,time"] + [f"{c},{u},{t!r}" for c, users, times in cascades
                                   for u, t in zip(users, times)]
  path = write(tmp_path / "p.csv", "\n".join(lines) + "\n")
  ds = load_cascades(path, "csv", split="random", fractions=(1.0, 0.0, 0.0))
  got = sorted((tuple(ds.vocab.user(int(i)) for i in c.users), tuple(c.times.tolist()))
               for c in ds.train)
  want = sorted((tuple(users), tuple(float(t) for t in times)) for _, users, times in cascades)
  assert got == want
