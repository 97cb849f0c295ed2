"""Device-count equivalence for every registered objective: the same global batch on 1, 2, 4 and 8
(fake CPU) devices gives the same losses, gradient norms, parameters and BatchNorm running
statistics after two steps.

This is what DESIGN.md's Parallelism section promises: the step is jitted over the *global* batch,
so InfoNCE's negatives span every device and BatchNorm normalises with global statistics. Were
either per-device, the 8-device loss (negatives from 2 of 16 images; statistics from 2 images)
would differ from the 1-device one by far more than the tolerances, which only absorb the
different order of floating-point sums.

Plain SGD in the test config makes the parameters after a step a linear function of the gradient,
so comparing parameters compares gradients (Adam's first step, g / |g|, would amplify the rounding
of near-zero gradient entries). The GAN's generator keeps its own Adam (``objectives.gan``), hence
its looser parameter tolerance. Configs start from ``experiments/fmnist_infonce.py:smoke`` with only
``objective`` changed (and the encoder, for an objective that cannot train the CNN: MAE gets the
tiny ViT), so objectives added later are covered without touching this file.

Compile time is the whole cost (XLA CPU takes seconds per train step, mostly convolution gradients
and the views' random crops): one initialisation and one 1-device run per objective, reused by
every device count, then one step compilation per count. By default every objective runs on 8
devices (2 images each, the case furthest from 1 device), and on 4 as well the objectives
whose whole loss is a statistic of the global batch (``EVERY_COUNT``: InfoNCE's negatives, and the
variances, covariances, cross-correlations and characteristic functions of VICReg, Barlow Twins and
LeJEPA, where peers' multi-GPU code has been off by the world size: such a loss is off on 4
devices as on 2); ``SSLJAX_SLOW=1`` runs 2 and 4 for every objective. The parts every objective
shares (random-crop views, the online probe) are tested through InfoNCE only; the others test
their own networks, losses and players, with flips for views and no probe.
"""
import os

import jax
import numpy as np
import pytest

from conftest import TINY_VIT, load_config, run_steps
from ssljax.data.sources import Dataset
from ssljax.models import ENCODERS
from ssljax.objectives import OBJECTIVES
from ssljax.train import loop

DEVICE_COUNTS = (2, 4, 8)
# Batch-coupled losses (see above), and MoCo v3's negatives and DINO's centre (the teacher's mean
# output over the global batch, which per-device code must all-reduce).
EVERY_COUNT = ("infonce", "vicreg", "barlow_twins", "lejepa", "moco_v3", "dino")
# SGD steps of similar size (lr x first gradient norm 0.29, 0.12, 0.23): VICReg's coefficients
# (25, 25, 1) and Barlow Twins' sum over D dimensions give first gradient norms of 31 and 23 here,
# against InfoNCE's 2.9. At lr 0.1 their first step moves the parameters so far that the second
# step's float rounding (sums in another order on each device count) exceeds the tolerances: the
# first step's losses and gradient norms agree to 2e-5 at any learning rate.
# DINO's (31: its cosine logits over temperature 0.1), BYOL's and MoCo v3's (5) likewise.
LEARNING_RATES = {"vicreg": 0.004, "barlow_twins": 0.01, "dino": 0.005, "byol": 0.04,
                  "moco_v3": 0.04}
BATCH = 16  # divisible by 8 devices: 2 images per device
STEPS = 2
# Objective arguments shrunk where an objective has them (unknown keys are left alone).
SMALL_ARGS = {"projector_dims": (32, 16), "latent_dim": 16, "decoder_width": 8,
              "generator_width": 8, "num_directions": 16, "predictor_hidden_dims": (16,),
              "num_prototypes": 32, "num_local_crops": 2}


def synthetic_dataset(n=64, size=16, channels=1, seed=0) -> Dataset:
  """Random uint8 images with labels: equivalence needs no real data, only a fixed batch."""
  rng = np.random.default_rng(seed)
  images = lambda k: rng.integers(0, 256, (k, size, size, channels), dtype=np.uint8)
  labels = lambda k: rng.integers(0, 10, k).astype(np.int32)
  return Dataset("synthetic", images(n), labels(n), images(16), labels(16), 10)


def tiny_config(objective: str, devices: int = 1):
  config = load_config("fmnist_infonce", "smoke")
  config.objective = objective
  if OBJECTIVES[objective].encoder_problem(config.encoder, ENCODERS[config.encoder]):
    config.encoder = "vit_tiny"  # MAE trains ViTs only: the tiny one, in 4x4 patches of 16x16
    config.encoders.vit_tiny.update(TINY_VIT)
  config.devices = devices
  config.batch_size = BATCH
  config.steps = STEPS
  config.optimizer.update(name="sgd", lr=LEARNING_RATES.get(objective, 0.1), momentum=0.9,
                          weight_decay=0.0, schedule="constant", warmup_steps=0)
  section = config.objectives[objective]
  for key, value in SMALL_ARGS.items():
    if key in section:
      section[key] = value
  if objective != "infonce":  # InfoNCE covers the shared parts: random crops and the online probe
    config.online_probe = False
    if "invariances" in section:
      section.invariances = ("flip",)
  return config


@pytest.fixture(scope="module")
def dataset():
  return synthetic_dataset()


_REFERENCES = {}  # objective -> (initial host state, 1-device history, 1-device final state)


def reference(objective, dataset):
  """The 1-device run, once per objective, from an initial state every device count reuses."""
  if objective not in _REFERENCES:
    config = tiny_config(objective)
    initial = jax.device_get(loop.initial_state(loop.build_experiment(config, dataset)))
    history, state = run_steps(config, dataset, STEPS, initial=initial)
    for name, value in history[-1].items():
      assert np.isfinite(value), f"{objective}: {name} is {value} on 1 device"
    _REFERENCES[objective] = initial, history, state
  return _REFERENCES[objective]


def _close(tree_a, tree_b, rtol, atol, what):
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(tree_a)[0],
                          jax.tree_util.tree_leaves(tree_b)):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol,
                               err_msg=f"{what}{jax.tree_util.keystr(path)}")


def cases():
  """8 devices for every objective; 4 for EVERY_COUNT; 2 and 4 for all with SSLJAX_SLOW=1."""
  for objective in OBJECTIVES.names():
    for devices in DEVICE_COUNTS:
      if (devices == 8 or (devices == 4 and objective in EVERY_COUNT)
          or os.environ.get("SSLJAX_SLOW")):
        yield pytest.param(objective, devices, id=f"{objective}-{devices}dev")


@pytest.mark.parametrize("objective,devices", cases())
def test_n_devices_give_the_1_device_losses_gradients_and_statistics(objective, devices, dataset):
  initial, ref_history, ref_state = reference(objective, dataset)
  history, state = run_steps(tiny_config(objective, devices), dataset, STEPS, initial=initial)
  for step, (ref, got) in enumerate(zip(ref_history, history)):
    assert set(ref) == set(got)
    for name in ref:
      if name.endswith("loss") or name.endswith("grad_norm"):
        np.testing.assert_allclose(got[name], ref[name], rtol=2e-5, atol=1e-6,
                                   err_msg=f"{objective}: {name} at step {step}, {devices} devices")
  where = f"{objective}, {devices} devices: "
  param_atol = 1e-4 if objective == "gan" else 2e-6  # the generator's Adam (see the docstring)
  _close(state.params, ref_state.params, 1e-4, param_atol, where + "params")
  _close(state.batch_stats, ref_state.batch_stats, 1e-4, 1e-6, where + "batch_stats")
  assert int(state.step) == STEPS
  _STATES[objective, devices] = state


_STATES = {}  # (objective, devices) -> final host state, for the teachers' test below
TEACHERS = ("byol", "moco_v3", "dino")


@pytest.mark.parametrize("objective", TEACHERS)
def test_n_devices_give_the_1_device_teacher_and_objective_state(objective, dataset):
  """The EMA teachers and the objective's own state (DINO's centre, the teachers' BatchNorm
  statistics) after the same steps: a centre averaged over one device's images would differ.
  Reuses the states of the test above (it runs first) for every device count it ran."""
  _, _, ref_state = reference(objective, dataset)
  counts = [d for d in DEVICE_COUNTS if (objective, d) in _STATES] or [8]
  for devices in counts:
    state = _STATES.get((objective, devices))
    if state is None:
      _, state = run_steps(tiny_config(objective, devices), dataset, STEPS,
                           initial=reference(objective, dataset)[0])
    where = f"{objective}, {devices} devices: "
    _close(state.followers, ref_state.followers, 1e-4, 2e-6, where + "followers")
    _close(state.objective_state, ref_state.objective_state, 1e-4, 1e-6, where + "objective_state")
  if objective == "dino":
    assert np.any(ref_state.objective_state["center"] != 0)  # the centre moved
