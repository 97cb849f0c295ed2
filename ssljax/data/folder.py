"""A folder of the user's own PNG/JPEG images, decoded once into uint8 arrays (N, H, W, C).

Layout, in the convention of torchvision's ``ImageFolder``::

    DIR/cat/001.png  DIR/dog/002.jpg ...      class subfolders: labels, class ids in sorted name order
    DIR/001.png  DIR/002.png ...              a flat folder: unlabelled
    DIR/train/...  [DIR/test/...]             explicit splits, each laid out as above

Images are decoded here, once, and held as arrays like every other source (the datasets this project
trains on fit in memory; batches then gather from arrays instead of decoding per step). They must
share one size: resizing silently would change what the encoder sees, so that is the user's choice.
Grey images (Pillow modes ``L``, ``1``) give C=1; colour (``RGB``, ``RGBA``, palette, CMYK) gives
C=3, alpha dropped. When a folder mixes grey and colour, grey images are repeated to 3 channels.
"""
from __future__ import annotations

import pathlib

import numpy as np

from ssljax.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg")
GREY_MODES = ("L", "1", "LA", "I;16", "I;16B", "I;16L")

Split = tuple[np.ndarray, "np.ndarray | None"]


def read_image_folder(root: str | pathlib.Path) -> tuple[Split, Split | None, list[str] | None]:
  """(train split, test split or None when there is no ``test/``, class names or None).

  A split is (uint8 images (N, H, W, C), int32 labels (N,) or None)."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise UserError(f"image folder {root} does not exist (or is not a directory)")
  has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
  if has_test and not has_train:
    raise UserError(f"{root} has a test/ folder but no train/; put the training images in "
                    f"{root / 'train'}")
  train_dir = root / "train" if has_train else root
  files, labels, classes = _list_split(train_dir)
  test = None
  if has_test:
    test_files, test_labels, test_classes = _list_split(root / "test")
    if (classes is None) != (test_classes is None):
      raise UserError(f"{root}: train/ and test/ must both have class subfolders or both be flat")
    if classes is not None:
      unknown = sorted(set(test_classes) - set(classes))
      if unknown:
        raise UserError(f"{root / 'test'} has classes that train/ does not: "
                        f"{', '.join(unknown[:5])}")
      test_labels = [classes.index(test_classes[i]) for i in test_labels]
    test = (test_files, test_labels)
  # Decode both splits together: they must share one size and channel count.
  everything = files + (test[0] if test else [])
  images = _decode_all(everything)
  as_labels = lambda y: None if y is None else np.asarray(y, np.int32)
  train = (images[:len(files)], as_labels(labels))
  if test:
    test = (images[len(files):], as_labels(test[1]))
  return train, test, classes


def _list_split(directory: pathlib.Path) -> tuple[list[pathlib.Path], list[int] | None,
                                                  list[str] | None]:
  """The image files of one split and, with class subfolders, their class indices and the sorted
  class names. Hidden entries (``.ipynb_checkpoints``, ``.DS_Store``) are not data."""
  entries = [p for p in sorted(directory.iterdir()) if not p.name.startswith(".")]
  subdirs = [p for p in entries if p.is_dir()]
  loose = [p for p in entries if p.is_file() and _is_image(p)]
  if not subdirs:
    if not loose:
      raise UserError(f"no images found in {directory} (looked for {', '.join(EXTENSIONS)} files, "
                      "directly or in class subfolders)")
    return loose, None, None
  if loose:
    raise UserError(f"{loose[0]} is not in a class subfolder of {directory}: put every image in "
                    "one (its name is the label), or use a flat folder without subfolders")
  files, labels = [], []
  for label, subdir in enumerate(subdirs):
    found = sorted(p for p in subdir.rglob("*") if p.is_file() and _is_image(p)
                   and not any(part.startswith(".") for part in p.relative_to(subdir).parts))
    if not found:
      raise UserError(f"no images found in class folder {subdir} (looked for "
                      f"{', '.join(EXTENSIONS)} files); remove it or add its images")
    files += found
    labels += [label] * len(found)
  return files, labels, [p.name for p in subdirs]


def _is_image(path: pathlib.Path) -> bool:
  return path.suffix.lower() in EXTENSIONS


def _decode_all(files: list[pathlib.Path]) -> np.ndarray:
  images, first = [], None
  for path in files:
    image = _decode(path)
    if first is None:
      first = (path, image.shape)
    elif image.shape[:2] != first[1][:2]:
      (h0, w0), (h, w) = first[1][:2], image.shape[:2]
      raise UserError(f"images differ in size: {first[0]} is {w0}x{h0} and {path} is {w}x{h} "
                      "(width x height); resize them to one size first, e.g. with Pillow: "
                      f"Image.open(f).resize(({w0}, {h0}))")
    images.append(image)
  if any(image.shape[2] == 3 for image in images):
    images = [np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image for image in images]
  return np.stack(images)


def _decode(path: pathlib.Path) -> np.ndarray:
  """One image as uint8 (H, W, 1) for grey modes or (H, W, 3) for colour ones."""
  from PIL import Image
  try:
    with Image.open(path) as image:
      image.load()  # decode now: a truncated file fails here, not later
      mode = image.mode
      if mode in ("I;16", "I;16B", "I;16L"):  # 16-bit grey: keep the top 8 bits' range
        pixels = np.asarray(image, np.uint16)
        return np.round(pixels / 257.0).astype(np.uint8)[..., None]
      converted = image.convert("L" if mode in GREY_MODES else "RGB")
      pixels = np.asarray(converted, np.uint8)
  except Exception as e:  # a data file: Pillow raises OSError, SyntaxError, ValueError, bombs...
    raise UserError(f"{path} is not a readable image ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}); replace or delete it") from None
  return pixels[..., None] if pixels.ndim == 2 else pixels
