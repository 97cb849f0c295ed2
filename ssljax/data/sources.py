"""Dataset sources chosen by a spec string: ``fashion_mnist``, ``idx:DIR``, ``tfds:NAME``,
``npz:PATH``, ``folder:DIR`` (your PNG/JPEG images, ``ssljax/data/folder.py``), ``digits``.

Every source returns the same thing, a :class:`Dataset` of uint8 images (N, H, W, C) and int32
labels held in host memory. The datasets this project trains on here are small (Fashion-MNIST is
47 MB), so holding them in RAM and gathering batches with numpy beats any streaming reader; a
source for data that does not fit would plug in at the same place.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from ssljax.data.folder import read_image_folder
from ssljax.data.idx import load_idx_dir
from ssljax.errors import UserError
from ssljax.registry import Registry

SOURCES: Registry = Registry("dataset source")

# Debian's package `dataset-fashion-mnist` installs the four IDX files here.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train_images: np.ndarray  # uint8 (N, H, W, C)
  train_labels: np.ndarray | None  # int32 (N,) or None when unlabelled
  test_images: np.ndarray
  test_labels: np.ndarray | None
  num_classes: int

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])


def load_dataset(spec: str) -> Dataset:
  """Parses ``kind[:argument]`` and loads it, e.g. ``npz:/data/mine.npz``."""
  kind, _, arg = spec.partition(":")
  return SOURCES[kind](arg)


def _from_splits(name, train, test, num_classes: int | None = None) -> Dataset:
  (train_x, train_y), (test_x, test_y) = train, test
  if train_x.shape[1:] != test_x.shape[1:]:
    raise UserError(f"{name}: train images {train_x.shape[1:]} and test images "
                    f"{test_x.shape[1:]} differ in shape")
  labels = [y for y in (train_y, test_y) if y is not None]
  if num_classes is None:
    num_classes = int(max(y.max() for y in labels)) + 1 if labels else 0
  return Dataset(name, train_x, train_y, test_x, test_y, num_classes)


@SOURCES.register("fashion_mnist")
def fashion_mnist(arg: str = "") -> Dataset:
  directory = pathlib.Path(arg or os.environ.get("SSLJAX_FASHION_MNIST_DIR", FASHION_MNIST_DIR))
  if not (directory / "train-images-idx3-ubyte.gz").exists():
    raise UserError(
        f"Fashion-MNIST not found in {directory}. Install it with "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or point "
        "--config.dataset=idx:/path/to/dir at a directory of MNIST-format IDX files")
  return _from_splits("fashion_mnist", *load_idx_dir(directory))


@SOURCES.register("idx")
def idx(arg: str) -> Dataset:
  if not arg:
    raise UserError("dataset spec 'idx:' needs a directory, e.g. idx:/data/mnist")
  return _from_splits(f"idx:{arg}", *load_idx_dir(arg))


def _as_nhwc_uint8(images: np.ndarray, what: str) -> np.ndarray:
  if images.dtype != np.uint8:
    raise UserError(f"{what} must be uint8 (0-255), got {images.dtype}; convert with "
                    "(x * 255).round().astype(np.uint8) if your pixels are floats in [0, 1]")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4:
    raise UserError(f"{what} must have shape (N, H, W) or (N, H, W, C), got {images.shape}")
  return images


def _holdout(images, labels, fraction=0.1, seed=0):
  """Deterministic train/test split for sources that ship one array."""
  order = np.random.default_rng(seed).permutation(len(images))
  cut = len(images) - max(1, int(round(fraction * len(images))))
  train, test = order[:cut], order[cut:]
  pick = lambda a, i: None if a is None else a[i]
  return (images[train], pick(labels, train)), (images[test], pick(labels, test))


@SOURCES.register("npz")
def npz(arg: str) -> Dataset:
  """A user's arrays: ``images`` uint8 (N,H,W[,C]), optional ``labels``; optional ``test_images``
  / ``test_labels``, otherwise a seeded 10% of the images is held out as the test split."""
  path = pathlib.Path(arg)
  if not path.is_file():
    raise UserError(f"npz file {path} does not exist")
  try:
    # allow_pickle=False: a dataset file must never be able to execute code.
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except ValueError as e:
    raise UserError(f"{path}: refusing to load object (pickled) arrays ({e}); save plain numeric "
                    "arrays with np.savez") from None
  except Exception as e:  # zipfile.BadZipFile, OSError, ...
    raise UserError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
  if "images" not in arrays:
    raise UserError(f"{path} has no 'images' array (it has: {', '.join(arrays) or 'nothing'})")
  images = _as_nhwc_uint8(arrays["images"], f"{path}['images']")
  labels = _labels(arrays.get("labels"), len(images), f"{path}['labels']")
  if "test_images" in arrays:
    test_x = _as_nhwc_uint8(arrays["test_images"], f"{path}['test_images']")
    test_y = _labels(arrays.get("test_labels"), len(test_x), f"{path}['test_labels']")
    splits = (images, labels), (test_x, test_y)
  else:
    splits = _holdout(images, labels)
  return _from_splits(f"npz:{arg}", *splits)


@SOURCES.register("folder")
def folder(arg: str) -> Dataset:
  """Your images: class subfolders of PNG/JPEG files (sorted names are class ids 0, 1, ...) or a
  flat folder (unlabelled); ``train/`` and ``test/`` subfolders are the splits, otherwise a seeded
  10% is held out as the test split, as for npz."""
  if not arg:
    raise UserError("dataset spec 'folder:' needs a directory, e.g. folder:/data/my_images")
  train, test, classes = read_image_folder(arg)
  if test is None:
    if len(train[0]) < 2:
      raise UserError(f"{arg} holds one image; a dataset needs at least 2 (one is held out as test)")
    train, test = _holdout(*train)
  return _from_splits(f"folder:{arg}", train, test,
                      num_classes=None if classes is None else len(classes))


def _labels(labels, n, what):
  if labels is None:
    return None
  if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
    raise UserError(f"{what} must be non-negative integers of shape ({n},), got "
                    f"{labels.dtype} {labels.shape}")
  return labels.astype(np.int32)


@SOURCES.register("digits")
def digits(arg: str = "") -> Dataset:
  """scikit-learn's 8x8 handwritten digits (1,797 images), pixel values 0-16 rescaled to 0-255."""
  from sklearn.datasets import load_digits
  d = load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return _from_splits("digits", *_holdout(images, d.target.astype(np.int32), fraction=0.2))


@SOURCES.register("tfds")
def tfds_source(arg: str) -> Dataset:
  """Any TFDS image-classification dataset with 'train' and 'test' splits, read through
  ``tfds.data_source`` (random access, no TensorFlow needed once prepared). Preparing a dataset the
  first time downloads it and needs TensorFlow: ``pip install 'ssljax[tf]'``. The package itself is
  the optional extra ``tfds``: the other sources do not need its import time or dependencies."""
  if not arg:
    raise UserError("dataset spec 'tfds:' needs a name, e.g. tfds:cifar10")
  try:
    import tensorflow_datasets as tfds
  except ImportError as e:
    raise UserError(f"dataset tfds:{arg} needs the optional package tensorflow-datasets: "
                    f"pip install -e '.[tfds]' (importing it failed: {_first_line(e)})") from None
  splits, num_classes = [], None
  for split in ("train", "test"):
    try:
      source = tfds.data_source(arg, split=split)
    except Exception as e:
      raise UserError(f"TFDS dataset {arg!r} split {split!r} is not available ({type(e).__name__}: "
                      f"{_first_line(e)}); preparing it needs internet and "
                      "TensorFlow (pip install 'ssljax[tf]')") from None
    label_feature = source.dataset_info.features["label"] if "label" in source.dataset_info.features else None
    num_classes = getattr(label_feature, "num_classes", None)
    examples = [source[i] for i in range(len(source))]
    images = _as_nhwc_uint8(np.stack([np.asarray(e["image"]) for e in examples]), f"tfds:{arg}")
    labels = np.asarray([e["label"] for e in examples], np.int32) if "label" in examples[0] else None
    splits.append((images, labels))
  return _from_splits(f"tfds:{arg}", *splits, num_classes=num_classes)


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else ""
