"""TFDS builders for the cascade datasets: ArrayRecord files read with ``tfds.data_source``.

One ``tfds.core.GeneratorBasedBuilder`` per dataset family, with one ``BuilderConfig`` per dataset:

=====================  ==============================  =============================================
builder (TFDS name)    configs                         manual dir (``dl_manager.manual_dir``)
=====================  ==============================  =============================================
``ndm_cascades``       irvine, lastfm, memetracker     ``shared/data/ndm`` or the package's embedded
                                                       ``popdiff_jax/data/embedded/ndm`` (default)
``forest_cascades``    twitter, memetracker            ``shared/data/forest``
``mshgat_cascades``    twitter                         ``shared/data/mshgat``
``infvae_cascades``    android, christianity           ``shared/data/infvae``
``topolstm_cascades``  twitter                         ``shared/data/topolstm_twitter``
=====================  ==============================  =============================================

Nothing is parsed here: every builder calls ``popdiff_jax.data.cascades.load_dataset(name,
split="files")`` on its manual dir, so a built dataset holds exactly the cascades, vocabulary
indices and splits of the library's readers: same order, same default seed 0 for the validation
part drawn from a training file (ndm, topolstm), same seeded 80/10/10 split of MS-HGAT's single
file.

Each example is one cascade:

* ``users``: int32 [n] vocabulary indices (0 = padding and 1 = Terminate are never stored; real
  users start at 2).
* ``times``: float64 [n] timestamps in the file's unit.
* ``cascade_id``: int64, the cascade's position in its split (also the example key; shuffling is
  disabled, so ``source[i]`` is cascade ``i``).

Splits are ``train``, ``validation`` and ``test`` (``CascadeDataset.train/valid/test``). What is not
one row per cascade goes to ``info.metadata`` (``metadata.json`` beside ``dataset_info.json``):
``vocab`` (the raw user ids in index order, including ``"<pad>"`` and ``"<terminate>"`` at 0 and 1),
``graph`` (``[[u, v], ...]`` directed edges in vocabulary indices, or ``None``), ``split`` (how the
splits were made) and ``report`` (what the readers dropped).

TensorFlow is not needed: ArrayRecord files are written and read by ``array_record`` and decoded by
TFDS's NumPy code paths (``pip install popdiff_jax[tfds]``). Importing this module imports
``tensorflow_datasets`` and registers the five builders; the rest of the package never imports it.

Build and read one::

  import tensorflow_datasets as tfds
  from popdiff_jax.data import tfds_builders  # registers the builders

  builder = tfds_builders.ForestCascades(config="twitter", data_dir="/tmp/tfds")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir="../shared/data/forest"))
  sources = tfds.data_source("forest_cascades/twitter", data_dir="/tmp/tfds")  # split -> source
  example = sources["train"][0]   # {"users": int32[n], "times": float64[n], "cascade_id": int64}
  vocab = builder.info.metadata["vocab"]           # raw user id of every index

or in one call, with the conversion back to ``Cascade`` lists::

  sources = tfds_builders.build_and_load("forest/twitter", "/tmp/tfds", "../shared/data/forest")
  train = tfds_builders.source_to_cascades(sources["train"])
  dataset = tfds_builders.load_prepared("forest/twitter", "/tmp/tfds")  # a CascadeDataset
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from popdiff_jax._errors import DataError
from popdiff_jax.data.cascades import (DATASETS, Cascade, CascadeDataset, UserVocab, embedded_root,
                                       load_dataset, resolve_data_dir)

VERSION = tfds.core.Version("1.0.0")
# TFDS split name -> CascadeDataset attribute.
SPLITS = {"train": "train", "validation": "valid", "test": "test"}


@dataclasses.dataclass
class CascadeConfig(tfds.core.BuilderConfig):
  """One dataset of a family.

  Attributes:
    dataset: the ``DATASETS`` key read through ``load_dataset``, e.g. ``"forest/twitter"``.
  """

  dataset: str = ""


def _config(dataset: str, description: str, name: str = "") -> CascadeConfig:
  return CascadeConfig(name=name or dataset.split("/")[-1], dataset=dataset,
                       description=description)


class _CascadeBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared logic: ``load_dataset`` on the manual dir, one example per cascade."""

  VERSION = VERSION
  RELEASE_NOTES = {"1.0.0": "popdiff_jax.data.cascades readers, split='files'."}
  # The manual dir holds one folder per dataset of the family (``irvine/``, ``twitter/``, ...), or
  # the dataset's files themselves for a family of one folder (``topolstm_twitter``).
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("Point manual_dir at the family's folder of shared/data "
                                  "(see shared/data/README.md).")

  def __init__(self, *, file_format: str = "array_record", **kwargs):
    # ArrayRecord (random access, no TensorFlow) unless the caller asks otherwise.
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "users": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            # tf.train.Example floats are float32 (Unix seconds would round to 64 s): raw bytes.
            "times": tfds.features.Tensor(shape=(None,), dtype=np.float64, encoding="bytes"),
            "cascade_id": tfds.features.Scalar(np.int64),
        }),
        supervised_keys=None,
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _load(self, manual_dir: pathlib.Path) -> CascadeDataset:
    """Runs the library's reader on ``manual_dir`` (whatever that folder is called)."""
    name = self.builder_config.dataset
    folder = DATASETS[name].folder                      # e.g. "forest/twitter", "topolstm_twitter"
    inner = folder.split("/", 1)[1] if "/" in folder else ""
    if not (manual_dir / inner).is_dir():
      raise DataError(f"manual dir has no {inner or folder!r} folder for {name}", str(manual_dir))
    # load_dataset wants the folder *above* the family folder; link the manual dir under that name
    # so any manual dir works (and an embedded dataset cannot silently replace a missing one).
    with tempfile.TemporaryDirectory() as tmp:
      os.symlink(manual_dir.resolve(), pathlib.Path(tmp) / folder.split("/")[0])
      return load_dataset(name, tmp, split="files")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    ds = self._load(pathlib.Path(os.fspath(dl_manager.manual_dir)))
    self.info.metadata.update({
        "dataset": ds.name,
        "vocab": [ds.vocab.user(i) for i in range(len(ds.vocab))],
        "graph": None if ds.graph is None else ds.graph.tolist(),
        "split": ds.split,
        "report": dict(ds.report),
    })
    return {split: self._generate_examples(getattr(ds, attr)) for split, attr in SPLITS.items()}

  def _generate_examples(self, cascades: list[Cascade]):
    for i, c in enumerate(cascades):
      yield i, {"users": c.users.astype(np.int32), "times": c.times.astype(np.float64),
                "cascade_id": i}


class NdmCascades(_CascadeBuilder):
  """NDM's own Irvine, Lastfm and Memetracker (albertyang33/NeuralDiffusionModel).

  No validation file: the validation split is 10% of the training file, seed 0 (``load_dataset``).
  """

  BUILDER_CONFIGS = [
      _config("ndm/irvine", "UCI Irvine messages: 540 users, 471 cascades."),
      _config("ndm/lastfm", "Last.fm: 982 users, 23,802 cascades."),
      _config("ndm/memetracker", "Small Memetracker: 498 users, 8,304 cascades."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("Point manual_dir at shared/data/ndm or at the package's "
                                  "embedded copy, popdiff_jax/data/embedded/ndm (the default of "
                                  "build_and_load).")


class ForestCascades(_CascadeBuilder):
  """FOREST's Twitter and Memetracker with their own 80/10/10 split files."""

  BUILDER_CONFIGS = [
      _config("forest/twitter", "Twitter: 12,627 users, 3,461 cascades (2,768/347/346)."),
      _config("forest/memetracker", "Memetracker: 4,709 users, 12,663 cascades."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at shared/data/forest."


class MshgatCascades(_CascadeBuilder):
  """MS-HGAT's Twitter: one file, split 80/10/10 by a seeded permutation (seed 0)."""

  BUILDER_CONFIGS = [
      _config("mshgat/twitter", "Twitter: 12,627 users, 3,454 cascades; truncated token dropped."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at shared/data/mshgat."


class InfvaeCascades(_CascadeBuilder):
  """Inf-VAE's StackExchange Android and Christianity, with their social graphs."""

  BUILDER_CONFIGS = [
      _config("infvae/android", "Android: 2,927 cascade users, 679 cascades, social graph."),
      _config("infvae/christianity", "Christianity: 1,651 cascade users, 589 cascades, graph."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at shared/data/infvae."


class TopolstmCascades(_CascadeBuilder):
  """Topo-LSTM's small Twitter set with its follower graph (validation: 10% of train, seed 0)."""

  BUILDER_CONFIGS = [
      _config("topolstm_twitter", "Twitter: 6,126 users, 569 cascades, graph.", name="twitter"),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Point manual_dir at shared/data/topolstm_twitter."


BUILDERS: dict[str, type[_CascadeBuilder]] = {
    "ndm": NdmCascades, "forest": ForestCascades, "mshgat": MshgatCascades,
    "infvae": InfvaeCascades, "topolstm_twitter": TopolstmCascades,
}


def builder_for(name: str, data_dir: str | os.PathLike) -> _CascadeBuilder:
  """The builder of registry dataset ``name`` (e.g. ``"ndm/irvine"``) writing under ``data_dir``."""
  if name not in DATASETS:
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
  cls = BUILDERS[name.split("/")[0]]
  config = next(c for c in cls.BUILDER_CONFIGS if c.dataset == name)
  return cls(config=config.name, data_dir=os.fspath(data_dir))


def default_manual_dir(name: str) -> pathlib.Path:
  """The embedded copy for ``ndm/*``; else the family folder of the shared data dir."""
  family = DATASETS[name].folder.split("/")[0]
  if name.startswith("ndm/"):
    return embedded_root() / family
  root = resolve_data_dir(None)
  if root is None:
    raise DataError(f"no data dir for {name}: pass manual_dir or set POPDIFF_DATA_DIR")
  return root / family


def build_and_load(name: str, data_dir: str | os.PathLike,
                   manual_dir: str | os.PathLike | None = None) -> dict[str, object]:
  """Builds dataset ``name`` (once; a built version is reused) and opens its splits.

  Args:
    name: a ``DATASETS`` key, e.g. ``"ndm/irvine"`` or ``"infvae/christianity"``.
    data_dir: where TFDS writes (and finds) the ArrayRecord files.
    manual_dir: the family's raw folder (``shared/data/forest``...); default
      ``default_manual_dir(name)``.

  Returns:
    ``{"train", "validation", "test"}`` -> random-access data source (``len``, ``source[i]``).
  """
  builder = builder_for(name, data_dir)
  manual = pathlib.Path(manual_dir) if manual_dir is not None else default_manual_dir(name)
  if not builder.is_prepared() and not manual.is_dir():
    raise DataError(f"manual dir for {name} does not exist", str(manual))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual),
      compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return {split: builder.as_data_source(split=split) for split in SPLITS}


def source_to_cascades(source) -> list[Cascade]:
  """A data source (or any sequence of examples) back to ``Cascade`` s, in ``cascade_id`` order."""
  keys = range(len(source))
  if hasattr(source, "__getitems__"):
    examples = list(source.__getitems__(keys))  # one batched read instead of one per cascade
  else:
    examples = [source[i] for i in keys]
  examples.sort(key=lambda e: int(e["cascade_id"]))
  return [Cascade(np.asarray(e["users"], np.int32), np.asarray(e["times"], np.float64))
          for e in examples]


def load_prepared(name: str, data_dir: str | os.PathLike) -> CascadeDataset:
  """A built dataset back as a ``CascadeDataset`` (vocabulary and graph from the metadata)."""
  builder = builder_for(name, data_dir)
  if not builder.is_prepared():
    raise DataError(f"{name} is not built under {data_dir}; call build_and_load first")
  meta = builder.info.metadata
  vocab = UserVocab(meta["vocab"][2:])
  graph = None if meta["graph"] is None else np.asarray(meta["graph"], np.int32).reshape(-1, 2)
  parts = {attr: source_to_cascades(builder.as_data_source(split=split))
           for split, attr in SPLITS.items()}
  return CascadeDataset(name, vocab, parts["train"], parts["valid"], parts["test"], graph,
                        meta["split"], dict(meta["report"]))
