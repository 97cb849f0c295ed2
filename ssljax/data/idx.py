"""Reader for the IDX format of (Fashion-)MNIST: big-endian header, then raw uint8 data.

We read the files ourselves rather than through TFDS because Debian's ``dataset-fashion-mnist`` gzips
them with different headers, so TFDS's checksums would not match the same bytes.
"""
from __future__ import annotations

import gzip
import pathlib

import numpy as np

from ssljax.errors import UserError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | pathlib.Path) -> np.ndarray:
  """Reads one IDX file (``.gz`` or plain) into a numpy array of its declared shape."""
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise UserError(f"IDX file {path} does not exist") from None
  except (OSError, EOFError) as e:
    raise UserError(f"IDX file {path} is unreadable ({e}); re-download or reinstall it") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
    raise UserError(f"{path} is not an IDX file (bad magic number); re-download or reinstall it")
  dtype, ndim = np.dtype(_DTYPES[data[2]]), data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  body = data[4 + 4 * ndim:]
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(body) != expected:
    raise UserError(f"IDX file {path} is truncated or corrupt: header says {shape} "
                    f"({expected} bytes) but it holds {len(body)}; re-download or reinstall it")
  return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
    if (directory / name).exists():
      return directory / name
  raise UserError(f"{directory} has no {stem}[.gz]; an MNIST-format directory holds "
                  "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                  "t10k-labels-idx1-ubyte (optionally .gz)")


def load_idx_dir(directory: str | pathlib.Path):
  """Loads the four standard MNIST-format files: ((train_x, train_y), (test_x, test_y))."""
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    raise UserError(f"IDX directory {directory} does not exist")
  splits = []
  for prefix in ("train", "t10k"):
    images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise UserError(f"{directory}: {prefix} images {images.shape} and labels {labels.shape} "
                      "do not match (expected (N, H, W) and (N,))")
    splits.append((images[..., None], labels.astype(np.int32)))
  return splits[0], splits[1]
