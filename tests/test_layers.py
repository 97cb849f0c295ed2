"""The CPU-fast Conv and max_pool agree with flax's in values and gradients, for every shape the
encoder zoo uses (stride 1/2/4, kernels 1-11, SAME/VALID/explicit padding, 1-64 input channels)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssljax.models import layers

CONVS = [  # (input HWC, features, kernel, strides, padding, use_bias)
    ((28, 28, 1), 8, (3, 3), (1, 1), "SAME", False),  # few channels: GEMM both ways
    ((14, 14, 32), 16, (3, 3), (1, 1), "SAME", False),  # library forward, GEMM kernel gradient
    ((16, 16, 16), 16, (3, 3), (2, 2), 1, False),  # strided 3x3 (ResNet downsampling)
    ((16, 16, 16), 24, (1, 1), (2, 2), "SAME", False),  # 1x1 strided shortcut
    ((32, 32, 3), 8, (7, 7), (2, 2), 3, False),  # ImageNet stem
    ((35, 35, 3), 8, (11, 11), (4, 4), "VALID", True),  # AlexNet conv1
    ((12, 12, 6), 16, (5, 5), (1, 1), "VALID", True),  # LeNet c3
    ((9, 9, 20), 12, (3, 3), (1, 1), ((1, 2), (0, 1)), True),  # asymmetric explicit padding
]


@pytest.mark.parametrize("shape,features,kernel,strides,padding,use_bias", CONVS)
def test_conv_matches_flax_values_and_gradients(shape, features, kernel, strides, padding,
                                                use_bias):
  x = jax.random.normal(jax.random.key(0), (4, *shape))
  ours = layers.Conv(features, kernel, strides, padding=padding, use_bias=use_bias)
  stock = nn.Conv(features, kernel, strides, padding=padding, use_bias=use_bias)
  params = stock.init(jax.random.key(1), x)
  # Same parameter tree, so checkpoints and probes see no difference.
  assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(params)

  def loss(module):
    return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))  # non-trivial output gradient

  # Compiled: op by op, the many small operations of the GEMM paths take ten times longer.
  np.testing.assert_allclose(jax.jit(ours.apply)(params, x), jax.jit(stock.apply)(params, x),
                             rtol=1e-4, atol=1e-4)
  g_ours = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(params, x)
  g_stock = jax.jit(jax.grad(loss(stock), argnums=(0, 1)))(params, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_stock)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_conv_falls_back_to_stock_for_grouped_convolutions():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8))
  depthwise = layers.Conv(8, (3, 3), feature_group_count=8)
  params = depthwise.init(jax.random.key(1), x)
  expected = nn.Conv(8, (3, 3), feature_group_count=8).apply(params, x)
  np.testing.assert_allclose(depthwise.apply(params, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("window,strides,padding", [
    ((2, 2), (2, 2), "VALID"),  # the small CNN, VGG
    ((2, 2), (2, 2), ((0, 0), (0, 0))),  # the same, explicit
    ((3, 3), (3, 3), "VALID"),  # 9x9 -> 3x3, and 10x10 drops a row and a column like flax
    ((3, 3), (2, 2), "VALID"),  # AlexNet's overlapping pooling (stock path)
    ((3, 3), (1, 1), "SAME"),  # Inception's pool branch (stock path)
])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_matches_flax_values_and_gradients(window, strides, padding, ties):
  x = jax.random.normal(jax.random.key(0), (2, 10, 10, 3))
  if ties:  # constant background after BN + ReLU: the first maximum must take the gradient
    x = jnp.round(jax.nn.relu(x))
  ours = lambda x: layers.max_pool(x, window, strides, padding)
  stock = lambda x: nn.max_pool(x, window, strides, padding)
  np.testing.assert_array_equal(ours(x), stock(x))
  loss = lambda pool: lambda x: jnp.sum(jnp.sin(pool(x)))
  np.testing.assert_array_equal(jax.grad(loss(ours))(x), jax.grad(loss(stock))(x))


@pytest.mark.parametrize("shape,features,kernel,strides,padding,use_bias", CONVS[:5])
def test_conv_forward_mode_matches_flax(shape, features, kernel, strides, padding, use_bias):
  # Forward mode through the CPU kernel (jax.jvp), against flax's stock convolution.
  x = jax.random.normal(jax.random.key(0), (2, *shape))
  ours = layers.Conv(features, kernel, strides, padding=padding, use_bias=use_bias)
  stock = nn.Conv(features, kernel, strides, padding=padding, use_bias=use_bias)
  params = stock.init(jax.random.key(1), x)
  tangents = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape), (params, x))
  (_, t_ours), (_, t_stock) = (jax.jit(lambda p, x, t, m=m: jax.jvp(m.apply, (p, x), t))(
      params, x, tangents) for m in (ours, stock))
  np.testing.assert_allclose(t_ours, t_stock, rtol=1e-4, atol=1e-4)


def test_max_pool_forward_mode_follows_the_winning_tap():
  x = jnp.round(jax.nn.relu(jax.random.normal(jax.random.key(0), (2, 8, 8, 3))))  # with ties
  dx = jax.random.normal(jax.random.key(1), x.shape)
  _, ours = jax.jvp(lambda x: layers.max_pool(x, (2, 2), (2, 2)), (x,), (dx,))
  _, stock = jax.jvp(lambda x: nn.max_pool(x, (2, 2), (2, 2)), (x,), (dx,))
  np.testing.assert_array_equal(ours, stock)


def test_cpu_kernels_switch(monkeypatch):
  from ssljax.errors import UserError
  from ssljax.models import cpu_kernels
  x = jnp.ones((1, 8, 8, 4))
  uses_kernel = lambda: "reduce_window" not in str(jax.make_jaxpr(
      lambda x: layers.max_pool(x, (2, 2), (2, 2)))(x))
  monkeypatch.delenv(cpu_kernels.ENV_VAR, raising=False)
  assert cpu_kernels.cpu_kernels_enabled() == (jax.default_backend() == "cpu") and uses_kernel()
  with cpu_kernels.use_cpu_kernels(False):
    assert not cpu_kernels.cpu_kernels_enabled() and not uses_kernel()
  monkeypatch.setenv(cpu_kernels.ENV_VAR, "0")
  assert not uses_kernel()
  with cpu_kernels.use_cpu_kernels(True):  # the explicit switch wins over the environment
    assert uses_kernel()
  monkeypatch.setenv(cpu_kernels.ENV_VAR, "off")
  with pytest.raises(UserError, match="SSLJAX_CPU_KERNELS='off' must be 0"):
    cpu_kernels.cpu_kernels_enabled()
