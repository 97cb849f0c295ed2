"""On-device views: shapes, ranges, flip really mirrors, scale really crops, per-example randomness."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.data import views
from ssljax.errors import UserError

CONFIG = {"scale": (0.2, 0.6), "ratio": (3 / 4, 4 / 3), "flip_prob": 0.5}


def _images(n=16, h=12, w=12, c=1):
  return jax.random.uniform(jax.random.PRNGKey(0), (n, h, w, c))


def test_view_shape_and_range():
  x = _images(c=3)
  v = views.make_view(jax.random.PRNGKey(1), x, ("flip", "scale"), CONFIG)
  assert v.shape == x.shape and v.dtype == jnp.float32
  assert float(v.min()) >= -1e-6 and float(v.max()) <= 1 + 1e-6


def test_flip_only_mirrors_some_and_leaves_others():
  x = _images()
  v = views.make_view(jax.random.PRNGKey(2), x, ("flip",), CONFIG)
  mirrored = np.array([np.allclose(v[i], x[i, :, ::-1]) for i in range(len(x))])
  same = np.array([np.allclose(v[i], x[i]) for i in range(len(x))])
  assert np.all(mirrored | same)  # each image is either mirrored or untouched
  assert mirrored.any() and same.any()  # independent per example


def test_scale_crops_a_box_and_resizes_back():
  image = jnp.arange(64.0).reshape(8, 8, 1)
  top_left_quarter = views.resize_crop(image, jnp.array([0.0, 0.0, 0.5, 0.5]))
  assert top_left_quarter.shape == image.shape
  # Every output pixel comes from the top-left 4x4 block (bilinear sampling may blend in the
  # neighbouring row/column at the crop's edge, never anything further away).
  assert float(top_left_quarter.max()) <= float(image[:5, :5].max()) + 1e-5
  assert float(top_left_quarter.max()) < float(image.max()) / 2
  full = views.resize_crop(image, jnp.array([0.0, 0.0, 1.0, 1.0]))
  np.testing.assert_allclose(full, image, atol=1e-5)


def test_scale_views_zoom_in():
  # A centred bright square: a crop (zoom-in) makes it cover more of the image on average.
  x = jnp.zeros((32, 16, 16, 1)).at[:, 6:10, 6:10].set(1.0)
  v = views.make_view(jax.random.PRNGKey(3), x, ("scale",), {**CONFIG, "scale": (0.25, 0.25)})
  assert not np.allclose(v, x)
  assert float(v.mean()) > float(x.mean()) * 1.5


def test_views_differ_between_keys_and_repeat_with_same_key():
  x = _images()
  a = views.make_view(jax.random.PRNGKey(4), x, ("flip", "scale"), CONFIG)
  b = views.make_view(jax.random.PRNGKey(4), x, ("flip", "scale"), CONFIG)
  c = views.make_view(jax.random.PRNGKey(5), x, ("flip", "scale"), CONFIG)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_unknown_invariance_lists_valid_names():
  with pytest.raises(UserError, match="unknown invariance.*valid: scale, flip"):
    views.make_view(jax.random.PRNGKey(0), _images(), ("rotate",), CONFIG)


# --- the optional invariances: cutout, colour jitter, blur ----------------------------------------
OPTIONAL = {**CONFIG, "jitter_prob": 1.0, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4,
            "hue": 0.1, "blur_prob": 1.0, "blur_sigma": (0.5, 1.5), "cutout_prob": 1.0,
            "cutout_size": 0.5}


def test_cutout_fills_one_square_with_the_image_mean_and_nothing_else():
  image = _images(n=1)[0]
  out = np.asarray(views.cutout(jax.random.PRNGKey(0), image, size=0.5, prob=1.0))
  changed = np.argwhere((out != np.asarray(image)).any(-1))
  rows, cols = changed[:, 0], changed[:, 1]
  assert 0 < len(changed) <= 6 * 6  # a 6x6 square (half of 12), clipped at the border
  assert len(changed) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # they form a rectangle
  np.testing.assert_allclose(out[rows, cols], np.broadcast_to(np.asarray(image).mean((0, 1)),
                                                              (len(changed), 1)), rtol=1e-6)


def test_blur_smooths_and_keeps_constant_images():
  x = _images(n=4)
  blurred = views.make_view(jax.random.PRNGKey(1), x, ("blur",), OPTIONAL)
  assert float(jnp.var(blurred)) < 0.5 * float(jnp.var(x))  # white noise loses most variance
  flat = jnp.full((2, 12, 12, 3), 0.3)
  np.testing.assert_allclose(views.make_view(jax.random.PRNGKey(1), flat, ("blur",), OPTIONAL),
                             flat, atol=1e-6)


def test_color_jitter_keeps_grey_grey_and_changes_colour():
  grey_rgb = jnp.repeat(_images(n=8), 3, axis=-1)
  out = np.asarray(views.make_view(jax.random.PRNGKey(2), grey_rgb, ("color_jitter",), OPTIONAL))
  np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)  # hue/saturation need colour
  assert not np.allclose(out, grey_rgb)  # brightness/contrast still act
  colour = _images(n=8, c=3)
  jittered = np.asarray(views.make_view(jax.random.PRNGKey(2), colour, ("color_jitter",), OPTIONAL))
  assert not np.allclose(jittered, colour) and jittered.min() >= 0 and jittered.max() <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_all_invariances_together_keep_shape_and_range(channels):
  x = _images(c=channels)
  v = views.make_view(jax.random.PRNGKey(3), x, tuple(views.INVARIANCES), OPTIONAL)
  assert v.shape == x.shape
  assert float(v.min()) >= -1e-6 and float(v.max()) <= 1 + 1e-6


# --- several views per image, each its own invariances and size (DINO's multi-crop) --------------
MULTI_CROP = (views.ViewSpec(("flip", "scale"), scale=(0.4, 1.0)),) * 2 + \
             (views.ViewSpec(("flip", "scale"), size=(12, 12), scale=(0.05, 0.4)),) * 4


def test_multi_crop_shapes_and_range():
  x = _images(n=8, h=28, w=28, c=3)
  out = views.make_views(jax.random.PRNGKey(0), x, MULTI_CROP, CONFIG)
  assert [v.shape for v in out] == [(8, 28, 28, 3)] * 2 + [(8, 12, 12, 3)] * 4
  assert all(float(v.min()) >= -1e-6 and float(v.max()) <= 1 + 1e-6 for v in out)
  # A smaller view without a crop is the whole image resized: a constant image stays constant.
  flat = jnp.full((2, 28, 28, 1), 0.25)
  small = views.make_views(jax.random.PRNGKey(0), flat, (views.ViewSpec((), size=(14, 14)),),
                           CONFIG)[0]
  assert small.shape == (2, 14, 14, 1)
  np.testing.assert_allclose(small, 0.25, atol=1e-6)


def test_multi_crop_is_independent_per_example_and_view_and_fixed_by_the_key():
  one = _images(n=1, h=28, w=28)
  x = jnp.repeat(one, 8, axis=0)  # the same image 8 times: any difference is the views' own
  a = views.make_views(jax.random.PRNGKey(1), x, MULTI_CROP, CONFIG)
  b = views.make_views(jax.random.PRNGKey(1), x, MULTI_CROP, CONFIG)
  c = views.make_views(jax.random.PRNGKey(2), x, MULTI_CROP, CONFIG)
  for va, vb, vc in zip(a, b, c):
    np.testing.assert_array_equal(va, vb)
    assert not np.allclose(va, vc)
    assert len({np.asarray(va[i]).tobytes() for i in range(8)}) == 8  # every example its own
  assert not np.allclose(a[0], a[1]) and not np.allclose(a[2], a[3])  # every view its own
  # Smaller crops of a smaller area range: the local views are crops, not shrunk global views.
  assert not np.allclose(a[2], jax.image.resize(a[0], (8, 12, 12, 1), "linear"))


def test_two_full_size_views_are_the_two_views_drawn_before_view_specs():
  x = _images()
  k1, k2 = jax.random.split(jax.random.PRNGKey(3))
  two = views.make_views(jax.random.PRNGKey(3), x, (views.ViewSpec(("flip", "scale")),) * 2, CONFIG)
  np.testing.assert_array_equal(two[0], views.make_view(k1, x, ("flip", "scale"), CONFIG))
  np.testing.assert_array_equal(two[1], views.make_view(k2, x, ("flip", "scale"), CONFIG))
  # An explicit output size equal to the input's changes nothing.
  box = jnp.array([0.1, 0.2, 0.5, 0.6])
  np.testing.assert_array_equal(views.resize_crop(x[0], box), views.resize_crop(x[0], box, (12, 12)))
