"""Dataset sources (IDX, npz, image folders, TFDS via mock data, digits) and batching; each
user-facing failure gives a one-line UserError that says what to do."""
import gzip
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import ROOT
from ssljax.data import sources
from ssljax.data.batches import BatchStream
from ssljax.data.idx import read_idx
from ssljax.errors import UserError
from ssljax.train.parallel import batch_sharding, make_mesh


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
                                       "fashion_mnist, folder, idx, npz, tfds"):
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


def _png(path, pixels, mode=None):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels, mode).save(path)
  return pixels


def test_folder_of_class_subfolders_gives_labels_and_a_seeded_holdout(tmp_path):
  rng = np.random.default_rng(0)
  written = {}
  for name in ("dog", "cat", "bird"):  # class ids follow the sorted names: bird 0, cat 1, dog 2
    for i in range(7):
      written[(name, i)] = _png(tmp_path / name / f"{i}.png", rng.integers(0, 256, (5, 6, 3), np.uint8))
  d = sources.load_dataset(f"folder:{tmp_path}")
  assert d.name == f"folder:{tmp_path}" and d.num_classes == 3
  assert d.train_images.shape == (19, 5, 6, 3) and d.test_images.shape == (2, 5, 6, 3)
  assert d.train_images.dtype == np.uint8 and d.train_labels.dtype == np.int32
  images = np.concatenate([d.train_images, d.test_images])
  labels = np.concatenate([d.train_labels, d.test_labels])
  assert np.bincount(labels).tolist() == [7, 7, 7]
  for (name, _), pixels in written.items():  # PNG is lossless: every image, under its label
    match = [j for j in range(len(images)) if np.array_equal(images[j], pixels)]
    assert len(match) == 1 and labels[match[0]] == ["bird", "cat", "dog"].index(name)
  again = sources.load_dataset(f"folder:{tmp_path}")
  np.testing.assert_array_equal(again.test_images, d.test_images)  # the hold-out is seeded


def test_flat_folder_is_unlabelled_and_modes_become_grey_or_rgb(tmp_path):
  rng = np.random.default_rng(1)
  grey = [_png(tmp_path / "grey" / f"{i}.png", rng.integers(0, 256, (4, 4), np.uint8))
          for i in range(10)]
  d = sources.load_dataset(f"folder:{tmp_path / 'grey'}")
  assert d.train_labels is None and d.num_classes == 0
  assert d.train_images.shape == (9, 4, 4, 1) and d.test_images.shape == (1, 4, 4, 1)
  assert sorted(map(bytes, np.concatenate([d.train_images, d.test_images]))) == \
      sorted(bytes(g[..., None]) for g in grey)
  colour = tmp_path / "colour"
  rgba = _png(colour / "a.png", rng.integers(0, 256, (4, 4, 4), np.uint8))
  Image.fromarray(rgba[..., :3]).quantize(8).save(colour / "b.png")  # a palette image
  Image.fromarray(rgba[..., :3]).save(colour / "c.jpg", quality=95)
  _png(colour / "d.png", grey[0])  # grey among colour: repeated to 3 channels
  d = sources.load_dataset(f"folder:{colour}")
  images = np.concatenate([d.train_images, d.test_images])
  assert images.shape == (4, 4, 4, 3)
  assert any(np.array_equal(x, rgba[..., :3]) for x in images)  # alpha dropped
  assert any(np.array_equal(x, np.repeat(grey[0][..., None], 3, 2)) for x in images)


def test_folder_train_and_test_subfolders_are_the_splits(tmp_path):
  rng = np.random.default_rng(2)
  for split, counts in (("train", {"a": 3, "b": 4}), ("test", {"b": 2})):
    for name, n in counts.items():
      for i in range(n):
        _png(tmp_path / split / name / f"{i}.png", rng.integers(0, 256, (3, 3), np.uint8))
  (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # hidden: not a class
  d = sources.load_dataset(f"folder:{tmp_path}")
  assert d.train_labels.tolist() == [0] * 3 + [1] * 4 and d.test_labels.tolist() == [1, 1]
  assert d.num_classes == 2 and d.test_images.shape == (2, 3, 3, 1)


def test_folder_errors_are_one_line_and_name_the_file(tmp_path):
  def error(path):
    with pytest.raises(UserError) as e:
      sources.load_dataset(f"folder:{path}")
    assert "\n" not in str(e.value)
    return str(e.value)

  assert error(tmp_path / "nope") == f"image folder {tmp_path / 'nope'} does not exist (or is not a directory)"
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "notes.txt").write_text("")
  assert error(tmp_path / "empty").startswith(f"no images found in {tmp_path / 'empty'} (looked for .png")
  sizes = tmp_path / "sizes"
  _png(sizes / "a.png", np.zeros((4, 6), np.uint8))
  _png(sizes / "b.png", np.zeros((5, 6), np.uint8))
  assert error(sizes) == (f"images differ in size: {sizes / 'a.png'} is 6x4 and {sizes / 'b.png'} "
                          "is 6x5 (width x height); resize them to one size first, e.g. with "
                          "Pillow: Image.open(f).resize((6, 4))")
  corrupt = tmp_path / "corrupt"
  _png(corrupt / "cat" / "a.png", np.zeros((4, 4), np.uint8))
  (corrupt / "cat" / "b.png").write_bytes(b"\x89PNG not really")
  assert error(corrupt).startswith(f"{corrupt / 'cat' / 'b.png'} is not a readable image (")
  truncated = (corrupt / "cat" / "a.png").read_bytes()
  (corrupt / "cat" / "b.png").write_bytes(truncated[:len(truncated) // 2])
  assert error(corrupt).startswith(f"{corrupt / 'cat' / 'b.png'} is not a readable image (")
  with pytest.raises(UserError, match="needs a directory"):
    sources.load_dataset("folder:")


def test_tfds_source_with_mock_data():
  with tfds.testing.mock_data(num_examples=12):
    d = sources.load_dataset("tfds:mnist")
  assert d.train_images.shape == (12, 28, 28, 1) and d.train_images.dtype == np.uint8
  assert d.num_classes == 10 and d.test_labels.shape == (12,)


def test_tfds_without_its_extra_says_how_to_install_it(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails, as when absent
  with pytest.raises(UserError, match=re.escape(
      "dataset tfds:cifar10 needs the optional package tensorflow-datasets: pip install -e "
      "'.[tfds]' (importing it failed: ")):
    sources.load_dataset("tfds:cifar10")
  # What the user sees: one line, exit code 2.
  script = ("import sys; sys.modules['tensorflow_datasets'] = None; "
            "from ssljax.pretrain import entry_point; entry_point()")
  result = subprocess.run([sys.executable, "-c", script, "--config=experiments/fmnist_infonce.py:smoke",
                           "--config.dataset=tfds:cifar10", f"--workdir={tmp_path}"],
                          cwd=ROOT, text=True, capture_output=True, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "error: dataset tfds:cifar10 needs the optional package tensorflow-datasets: pip install -e "
      "'.[tfds]' (importing it failed: import of tensorflow_datasets halted; None in sys.modules)")


def test_digits_source():
  d = sources.load_dataset("digits")
  assert d.image_shape == (8, 8, 1) and d.num_classes == 10
  assert len(d.train_images) + len(d.test_images) == 1797


def test_batches_are_a_function_of_step_and_cover_an_epoch():
  images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1)
  labels = np.arange(40, dtype=np.int32)
  mesh = make_mesh(2)
  stream = BatchStream(images, labels, 8, seed=3, sharding=batch_sharding(mesh))
  epoch = np.concatenate([stream.host_batch(s)["labels"] for s in range(5)])
  assert sorted(epoch.tolist()) == list(range(40))  # each image once per epoch
  again = BatchStream(images, labels, 8, seed=3, sharding=batch_sharding(mesh))
  np.testing.assert_array_equal(again.host_batch(7)["labels"], stream.host_batch(7)["labels"])
  assert not np.array_equal(stream.host_batch(5)["labels"], stream.host_batch(0)["labels"])
  batch = stream.batch(2)
  assert batch["images"].shape == (8, 1, 1, 1)
  assert len(batch["images"].sharding.device_set) == 2
