"""The encoder zoo: paper parameter counts, layer facts, Inception costs, the output contract on
small images, the summary CLI, and one InfoNCE train step per encoder.

Counts and shapes are traced with ``jax.eval_shape`` (via ``ssljax.models.summary``), so the
143M-parameter VGG-19 costs a trace, not an allocation. Real forward passes and train steps use the
narrow configurations in ``SMALL``; compiling a train step costs ~10 s on CPU, so only a few run by
default and the rest are gated by ``SSLJAX_SLOW=1``.
"""
from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY_VIT
from ssljax.errors import UserError
from ssljax.models import ENCODERS, build_encoder
from ssljax.models.__main__ import main as summary_main
from ssljax.models.googlenet import Inception
from ssljax.models.summary import count_macs, count_params, trace

slow = pytest.mark.skipif(not os.environ.get("SSLJAX_SLOW"),
                          reason="slow (compiles a train step); run with SSLJAX_SLOW=1")

IMAGENET = {"stem": "imagenet"}
# (encoder, input shape, classes, args, parameters with a linear classifier): the papers' figures
# (torchvision's / Keras' for the same architectures).
PAPER_COUNTS = [
    ("lenet5", (32, 32, 1), 10, {}, 61_706),
    ("lenet5", (28, 28, 1), 10, {}, 61_706),  # C1 padded: same network as on 32x32
    ("alexnet", (227, 227, 3), 1000, {}, 62_378_344),
    ("vgg11", (224, 224, 3), 1000, {}, 132_863_336),
    ("vgg13", (224, 224, 3), 1000, {}, 133_047_848),
    ("vgg16", (224, 224, 3), 1000, {}, 138_357_544),
    ("vgg19", (224, 224, 3), 1000, {}, 143_667_240),
    ("vgg16", (224, 224, 3), 1000, {"batch_norm": True}, 138_365_992),  # torchvision vgg16_bn
    ("mobilenet_v1", (224, 224, 3), 1000, {}, 4_231_976),
    ("resnet18", (224, 224, 3), 1000, IMAGENET, 11_689_512),
    ("resnet34", (224, 224, 3), 1000, IMAGENET, 21_797_672),
    ("resnet50", (224, 224, 3), 1000, IMAGENET, 25_557_032),
    ("resnet101", (224, 224, 3), 1000, IMAGENET, 44_549_160),
    ("resnet152", (224, 224, 3), 1000, IMAGENET, 60_192_808),
    # ResNet-50 + SE units (r=16, FCs with bias) = 25,557,032 + 2,530,992: the paper's "28.09M".
    ("se_resnet50", (224, 224, 3), 1000, IMAGENET, 28_088_024),
    ("googlenet", (224, 224, 3), 1000, {}, 6_998_552),
    # timm's / big_vision's ViT-Ti/S/B/16 (patch 16 is the automatic choice at 224 px).
    ("vit_tiny", (224, 224, 3), 1000, {}, 5_717_416),
    ("vit_small", (224, 224, 3), 1000, {}, 22_050_664),
    ("vit_base", (224, 224, 3), 1000, {}, 86_567_656),
]

# The smallest sensible configuration of every registered encoder: real forward passes and steps.
SMALL = {
    "cnn": {"widths": (8, 16)},
    "lenet5": {},
    "mlp": {"hidden": (32,), "features": 16},
    "alexnet": {"conv_widths": (8, 16, 16, 16, 16), "fc_width": 32},
    "vgg11": {"width": 4, "fc_widths": (32, 32)},
    "vgg13": {"width": 4, "fc_widths": (32, 32)},
    "vgg16": {"width": 4, "fc_widths": (32, 32)},
    "vgg19": {"width": 4, "fc_widths": (32, 32)},
    "googlenet": {"width_multiplier": 1 / 16},
    "mobilenet_v1": {"width_multiplier": 1 / 8},
    "resnet18": {"width": 8},
    "resnet34": {"width": 8},
    "resnet50": {"width": 8},
    "resnet101": {"width": 8},
    "resnet152": {"width": 8},
    "se_resnet50": {"width": 8},
    "vit_tiny": TINY_VIT,
    "vit_small": TINY_VIT,
    "vit_base": TINY_VIT,
}
SMALL_SHAPES = [(28, 28, 1), (32, 32, 3)]


@pytest.mark.parametrize("name, shape, classes, args, expected", PAPER_COUNTS,
                         ids=[f"{c[0]}-{c[1][0]}-{c[4]}" for c in PAPER_COUNTS])
def test_parameter_count_matches_the_paper(name, shape, classes, args, expected):
  assert count_params(name, shape, classes, **args) == expected


def test_googlenet_size_and_why_reductions_exist():
  reduced = count_params("googlenet", (224, 224, 3), 1000)
  assert 5_000_000 <= reduced <= 7_000_000
  naive = count_params("googlenet", (224, 224, 3), 1000, inception="naive")
  assert naive > 10 * reduced  # Figure 2(a) without 1x1 reductions blows up


def test_alexnet_conv1_and_pool1():
  t = trace(build_encoder("alexnet"), (227, 227, 3))
  conv1 = next(layer for layer in t.layers if layer.path == "conv1")
  assert (conv1.shape, conv1.params) == ((55, 55, 96), 34_944)
  assert t.stages["pool1"] == (27, 27, 96)
  # POOL1 has no parameters: no parameterised layer sits between CONV1 and CONV2.
  paths = [layer.path for layer in t.layers]
  assert paths[paths.index("conv1") + 1] == "conv2"
  assert t.stages["pool5"] == (6, 6, 256) and t.features == (4096,)


@pytest.mark.parametrize("naive, macs, channels", [(True, 854_196_224, 128 + 192 + 96 + 256),
                                                   (False, 271_351_808, 128 + 192 + 96 + 64)])
def test_inception_module_multiply_adds(naive, macs, channels):
  # The paper's 28x28x256 example; MACs come from the module's own conv kernels and outputs.
  module = Inception(c1=128, c3_reduce=64, c3=192, c5_reduce=64, c5=96, pool_proj=64, naive=naive)
  assert count_macs(module, (28, 28, 256)) == macs
  out = jax.eval_shape(lambda: module.init_with_output(jax.random.key(0),
                                                       jnp.zeros((1, 28, 28, 256)))[0])
  assert out.shape == (1, 28, 28, channels)


def test_every_encoder_has_a_small_configuration():
  assert set(SMALL) == set(ENCODERS.names())


@pytest.mark.parametrize("shape", SMALL_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(SMALL))
def test_contract_on_small_images(name, shape):
  """Default (full-width) encoders on small images, traced: (B, D) float32 features + stages,
  also when computing in bfloat16 (checked on one shape: the dtype path does not depend on it)."""
  for dtype in (jnp.float32, jnp.bfloat16) if shape[-1] == 3 else (jnp.float32,):
    encoder = build_encoder(name, {"dtype": dtype})
    x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
    variables = jax.eval_shape(encoder.init, jax.random.key(0), x)
    features, stages = jax.eval_shape(lambda v, x: encoder.apply(v, x, train=False), variables, x)
    assert features.ndim == 2 and features.shape[0] == 2 and features.dtype == jnp.float32
    assert isinstance(stages, dict) and stages
    assert all(s.shape[0] == 2 for s in stages.values())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_final_map_stays_last_when_jax_sorts_the_stages(name):
  # jit outputs and jax.tree.map rebuild dicts in sorted key order; 'last_stage' probes read
  # list(stages)[-1], so stage names must sort with the final map last.
  t = trace(build_encoder(name), (32, 32, 3))
  assert sorted(t.stages)[-1] == list(t.stages)[-1]


def test_small_input_adaptations():
  assert trace(build_encoder("vgg16"), (28, 28, 1)).stages["block5"] == (1, 1, 512)
  assert trace(build_encoder("alexnet"), (32, 32, 3)).stages["pool5"] == (3, 3, 256)
  assert trace(build_encoder("googlenet"), (28, 28, 1)).stages["inception3a"] == (28, 28, 256)
  assert trace(build_encoder("googlenet"), (224, 224, 3)).stages["inception3a"] == (28, 28, 256)
  assert trace(build_encoder("mobilenet_v1"), (32, 32, 3)).stages["block13"] == (2, 2, 1024)
  assert trace(build_encoder("lenet5"), (28, 28, 1)).stages["s4"] == (5, 5, 16)
  with pytest.raises(UserError, match="at least 67x67"):
    trace(build_encoder("alexnet", {"stem": "imagenet"}), (32, 32, 3))



@pytest.mark.parametrize("name", ["resnet18", "se_resnet50"])
def test_resnet_stem_follows_the_input_size_unless_given(name):
  stem_map = lambda shape, **args: trace(build_encoder(name, {"width": 8, **args}), shape).stages["conv1"]
  assert stem_map((64, 64, 3)) == (16, 16, 8)  # the paper's 7x7/2 conv + 3x3/2 pool from 64 px
  assert stem_map((63, 64, 3)) == (63, 64, 8)  # below: the CIFAR stem keeps the resolution
  assert stem_map((64, 64, 3), stem="cifar") == (64, 64, 8)
  assert stem_map((32, 32, 3), stem="imagenet") == (8, 8, 8)
  with pytest.raises(UserError, match="stem 'tiny' unknown; valid: auto, cifar, imagenet"):
    stem_map((32, 32, 3), stem="tiny")


def test_summary_cli_resnet50_at_imagenet_size_gets_the_paper_stem_by_itself(capsys):
  assert summary_main(["resnet50", "--input-shape", "224,224,3", "--num-classes", "1000"]) == 0
  assert capsys.readouterr().out.strip().splitlines()[-1] == "total params: 25557032"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_mode_derivative_through_every_encoder(name):
  """jax.jvp through each encoder (its CPU kernels are custom_jvp rules) equals jax.jvp through
  the stock XLA layers, for tangents on both the parameters and the images."""
  from ssljax.models.cpu_kernels import use_cpu_kernels
  shallow = {"stage_sizes": (1, 1, 1, 1)} if "resnet" in name else {}  # same blocks, less compile
  encoder = build_encoder(name, {**SMALL[name], **shallow})
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
  rng = np.random.default_rng(1)
  random_like = lambda s: jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype)
  shapes = jax.eval_shape(encoder.init, jax.random.key(1), x)
  params = jax.tree.map(random_like, shapes["params"])
  # BatchNorm statistics of a unit normal: random ones could be negative variances (NaN).
  rest = {k: jax.tree_util.tree_map_with_path(
      lambda path, s: jnp.full(s.shape, float(path[-1].key == "var"), s.dtype), v)
      for k, v in shapes.items() if k != "params"}
  tangents = jax.tree.map(random_like, (params, x))
  features = lambda p, x: encoder.apply({"params": p, **rest}, x, train=False)[0]
  results = []
  for enabled in (True, False):
    with use_cpu_kernels(enabled):  # read at trace time: each jit traces under its own setting
      results.append(jax.jit(lambda p, x, t: jax.jvp(features, (p, x), t))(params, x, tangents))
  (out, tangent), (stock_out, stock_tangent) = results
  assert np.isfinite(tangent).all() and np.abs(tangent).max() > 0
  np.testing.assert_allclose(out, stock_out, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(tangent, stock_tangent, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name, shape", [("lenet5", (32, 32, 3)), ("mlp", (28, 28, 1)),
                                         ("alexnet", (32, 32, 3))])
def test_forward_pass_and_dropout(name, shape):
  encoder = build_encoder(name, SMALL[name])
  x = jax.random.uniform(jax.random.key(0), (2, *shape))
  # Random weights from numpy on the traced shapes: compiling Flax's initializers costs ~10 s on
  # CPU, and init itself is exercised by the train-step tests.
  rng = np.random.default_rng(1)
  variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype),
                           jax.eval_shape(encoder.init, jax.random.key(1), x))
  apply = jax.jit(encoder.apply, static_argnames="train")
  features, stages = apply(variables, x, train=False)
  assert features.dtype == jnp.float32 and features.ndim == 2 and np.isfinite(features).all()
  np.testing.assert_array_equal(features, apply(variables, x, train=False)[0])  # deterministic
  if name == "alexnet":  # dropout: needs the 'dropout' rng in training, masks differ per key
    train = [apply(variables, x, train=True, rngs={"dropout": jax.random.key(k)})[0]
             for k in (2, 3)]
    assert not np.allclose(train[0], train[1])
    with pytest.raises(Exception, match="dropout"):  # traced only: the error is raised at trace time
      jax.eval_shape(lambda v: encoder.apply(v, x, train=True), variables)


def test_summary_cli_prints_the_table_and_total(capsys):
  assert summary_main(["lenet5", "--input-shape", "32,32,1", "--num-classes", "10"]) == 0
  out = capsys.readouterr().out.strip().splitlines()
  assert out[-1] == "total params: 61706"
  assert any(line.split()[:3] == ["c1", "28x28x6", "156"] for line in out)


def test_summary_cli_passes_encoder_args(capsys):
  assert summary_main(["resnet18", "--input-shape", "224,224,3", "--num-classes", "1000",
                       "--arg", "stem=imagenet"]) == 0
  assert capsys.readouterr().out.strip().splitlines()[-1] == "total params: 11689512"


def test_summary_cli_unknown_name_is_one_clear_line():
  proc = subprocess.run([sys.executable, "-m", "ssljax.models", "lenet6", "--input-shape", "32,32,1"],
                        capture_output=True, text=True, timeout=120,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: unknown encoder 'lenet6'")
  assert "lenet5" in lines[0] and "googlenet" in lines[0]


def test_summary_cli_unknown_argument(capsys):
  assert summary_main(["vgg16", "--input-shape", "32,32,3", "--arg", "depht=16"]) == 2
  assert "has no argument(s) depht" in capsys.readouterr().err


# --- one InfoNCE train step per encoder ---------------------------------------------------------

FAST_STEPS = {("lenet5", (28, 28, 1))}


def _step_cases():
  for name in sorted(SMALL):
    for shape in SMALL_SHAPES:
      marks = () if (name, shape) in FAST_STEPS else (slow,)
      yield pytest.param(name, shape, marks=marks, id=f"{name}-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize("name, shape", _step_cases())
def test_one_infonce_step(name, shape):
  from ssljax.base_config import base_config
  from ssljax.objectives import build_objective
  from ssljax.objectives.online_probe import OnlineProbe
  from ssljax.train.optim import build_optimizer
  from ssljax.train.state import create_state
  from ssljax.train.step import make_train_step

  config = base_config()
  config.encoder = name
  config.objectives.infonce.projector_dims = (32, 16)
  objective = build_objective(config, build_encoder(name, SMALL[name]), shape, 10, 10)
  txs = {p.name: build_optimizer(p.optimizer, 10) for p in objective.players()}
  probe = OnlineProbe(10)
  step = make_train_step(objective.players(), txs, followers=(), probe=probe)
  images = np.random.default_rng(0).integers(0, 256, (4, *shape), dtype=np.uint8)
  batch = {"images": jnp.asarray(images), "labels": jnp.arange(4) % 10}

  def init_and_step(batch):  # one compilation for both
    state = create_state(objective, txs, 0, batch["images"].astype(jnp.float32), probe)
    return step(state, batch)

  state, metrics = jax.jit(init_and_step)(batch)
  assert int(state.step) == 1
  assert np.isfinite(float(metrics["main/loss"])) and float(metrics["main/grad_norm"]) > 0
