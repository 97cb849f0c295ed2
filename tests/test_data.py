"""Dataset sources (IDX, npz, TFDS via mock data, digits) and batching; each user-facing failure
gives a one-line UserError that says what to do."""
import gzip
import pathlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from ssljax.data import sources
from ssljax.data.batches import BatchStream
from ssljax.data.idx import read_idx
from ssljax.errors import UserError
from ssljax.train.parallel import make_mesh


def _write_idx(path: pathlib.Path, array: np.ndarray, gz: bool = True):
  code = {np.dtype(np.uint8): 0x08}[array.dtype]
  header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
  data = header + array.tobytes()
  (gzip.open if gz else open)(path, "wb").write(data)


def _mnist_dir(tmp_path, n_train=20, n_test=10, hw=6):
  rng = np.random.default_rng(0)
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, hw, hw), np.uint8))
    _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 3, (n,), np.uint8))
  return tmp_path


def test_idx_directory_roundtrip(tmp_path):
  d = sources.load_dataset(f"idx:{_mnist_dir(tmp_path)}")
  assert d.train_images.shape == (20, 6, 6, 1) and d.train_images.dtype == np.uint8
  assert d.test_labels.shape == (10,) and d.train_labels.dtype == np.int32
  assert d.num_classes <= 3


def test_fashion_mnist_is_real_and_complete():
  d = sources.load_dataset("fashion_mnist")
  assert d.train_images.shape == (60000, 28, 28, 1) and d.test_images.shape == (10000, 28, 28, 1)
  assert d.num_classes == 10
  assert np.bincount(d.train_labels).tolist() == [6000] * 10


def test_missing_fashion_mnist_names_the_apt_package(tmp_path, monkeypatch):
  monkeypatch.setenv("SSLJAX_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
  with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
    sources.load_dataset("fashion_mnist")


def test_truncated_idx_file_is_named(tmp_path):
  path = tmp_path / "bad-idx3-ubyte"
  _write_idx(path, np.zeros((4, 3, 3), np.uint8), gz=False)
  path.write_bytes(path.read_bytes()[:-5])
  with pytest.raises(UserError, match="bad-idx3-ubyte is truncated or corrupt"):
    read_idx(path)


def test_unknown_dataset_kind_lists_valid_names():
  with pytest.raises(UserError, match="unknown dataset source 'imagenet'; valid names: digits, "
                                       "fashion_mnist, idx, npz, tfds"):
    sources.load_dataset("imagenet")


def test_npz_grey_without_test_split(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (50, 8, 8), np.uint8)
  labels = np.arange(50) % 5
  np.savez(tmp_path / "mine.npz", images=images, labels=labels)
  d = sources.load_dataset(f"npz:{tmp_path / 'mine.npz'}")
  assert d.train_images.shape == (45, 8, 8, 1) and d.test_images.shape == (5, 8, 8, 1)
  assert d.num_classes == 5


def test_npz_rgb_with_test_split_and_no_labels(tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "rgb.npz", images=rng.integers(0, 256, (10, 4, 4, 3), np.uint8),
           test_images=rng.integers(0, 256, (4, 4, 4, 3), np.uint8))
  d = sources.load_dataset(f"npz:{tmp_path / 'rgb.npz'}")
  assert d.train_labels is None and d.test_images.shape == (4, 4, 4, 3) and d.num_classes == 0


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((4, 8, 8), np.float32)}, "must be uint8"),
    ({"images": np.zeros((4, 8), np.uint8)}, r"shape \(N, H, W\) or \(N, H, W, C\)"),
    ({"pixels": np.zeros((4, 8, 8), np.uint8)}, "has no 'images' array"),
    ({"images": np.zeros((4, 8, 8), np.uint8), "labels": np.zeros(3, np.int64)}, "labels'] must be"),
])
def test_npz_bad_arrays(tmp_path, arrays, message):
  np.savez(tmp_path / "bad.npz", **arrays)
  with pytest.raises(UserError, match=message):
    sources.load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_object_arrays_are_refused_not_unpickled(tmp_path):
  np.savez(tmp_path / "evil.npz", images=np.array([{"a": 1}], dtype=object))
  with pytest.raises(UserError, match="refusing to load object"):
    sources.load_dataset(f"npz:{tmp_path / 'evil.npz'}")


def test_npz_missing_file(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    sources.load_dataset(f"npz:{tmp_path / 'nope.npz'}")


def test_tfds_source_with_mock_data():
  with tfds.testing.mock_data(num_examples=12):
    d = sources.load_dataset("tfds:mnist")
  assert d.train_images.shape == (12, 28, 28, 1) and d.train_images.dtype == np.uint8
  assert d.num_classes == 10 and d.test_labels.shape == (12,)


def test_digits_source():
  d = sources.load_dataset("digits")
  assert d.image_shape == (8, 8, 1) and d.num_classes == 10
  assert len(d.train_images) + len(d.test_images) == 1797


def test_batches_are_a_function_of_step_and_cover_an_epoch():
  images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1)
  labels = np.arange(40, dtype=np.int32)
  mesh = make_mesh(2)
  stream = BatchStream(images, labels, 8, seed=3, mesh=mesh)
  epoch = np.concatenate([stream.host_batch(s)["labels"] for s in range(5)])
  assert sorted(epoch.tolist()) == list(range(40))  # each image once per epoch
  again = BatchStream(images, labels, 8, seed=3, mesh=mesh)
  np.testing.assert_array_equal(again.host_batch(7)["labels"], stream.host_batch(7)["labels"])
  assert not np.array_equal(stream.host_batch(5)["labels"], stream.host_batch(0)["labels"])
  batch = stream.batch(2)
  assert batch["images"].shape == (8, 1, 1, 1)
  assert len(batch["images"].sharding.device_set) == 2
