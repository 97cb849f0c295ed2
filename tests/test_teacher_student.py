"""BYOL, SimSiam, MoCo v3 and DINO (issue 14): each pure loss against a numpy loop written here from
its formula; the teacher gets no gradient, equals ``m * old + (1 - m) * new_online`` after every
step, with the momentum on its schedule at the first, middle and last steps; DINO's centre is the
EMA of the teacher's outputs over the batch's global crops, local crops never reach the teacher,
and the centre and teacher resume from a checkpoint and are in the fingerprint; the collapse watch
is logged by each and flags SimSiam without its predictor; encoders take DINO's small local crops;
the teacher probe reads the teacher. Device counts: ``test_device_equivalence.py``; kill -9:
``test_resume.py``.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config, run_steps
from ssljax.config_checks import check_config
from ssljax.data.sources import load_dataset
from ssljax.errors import UserError
from ssljax.evaluate.features import variables_of
from ssljax.evaluate.figures import collapse_warning
from ssljax.evaluate.geometry import embedding_fn
from ssljax.evaluate.rank import rank_report
from ssljax.evaluate.run import teacher_probe
from ssljax.evaluate.tables import figure_rows
from ssljax.models import ENCODERS
from ssljax.objectives import LossInputs, losses
from ssljax.train import loop
from ssljax.train.checkpoint import Checkpoints, state_fingerprint
from test_device_equivalence import synthetic_dataset

RNG = np.random.default_rng(0)
TEACHERS = ("byol", "moco_v3", "dino")
STEPS = 4  # the whole run: its last step is the schedule's last


# --- numpy references: loops over the formulas, nothing shared with the implementation ----------
def cos(a, b):
  return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def byol_reference(p, z):
  return sum(2 - 2 * cos(p[i], z[i]) for i in range(len(p))) / len(p)


def negative_cosine_reference(p, z):
  return -sum(cos(p[i], z[i]) for i in range(len(p))) / len(p)


def moco_v3_reference(q, k, t):
  n, total = len(q), 0.0
  for i in range(n):
    logits = [cos(q[i], k[j]) / t for j in range(n)]
    total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
  return total / n * 2 * t


def dino_reference(s, t, c, student_temp, teacher_temp):
  total = 0.0
  for i in range(len(s)):
    teacher = [math.exp((t[i, k] - c[k]) / teacher_temp) for k in range(s.shape[1])]
    student = [math.exp(s[i, k] / student_temp) for k in range(s.shape[1])]
    total += -sum(teacher[k] / sum(teacher) * math.log(student[k] / sum(student))
                  for k in range(s.shape[1]))
  return total / len(s)


def close(value, expected, rel=1e-5):
  assert float(value) == pytest.approx(expected, rel=rel, abs=1e-6)


def test_byol_and_negative_cosine_match_the_numpy_loops_and_hand_values():
  p, z = RNG.normal(size=(6, 5)), RNG.normal(size=(6, 5))
  close(losses.byol(jnp.array(p), jnp.array(z)), byol_reference(p, z))
  close(losses.negative_cosine(jnp.array(p), jnp.array(z)), negative_cosine_reference(p, z))
  # Orthogonal pairs: cos 0 -> 2 and 0; opposite pairs: cos -1 -> 4 and 1; scale never matters.
  e = jnp.eye(2)
  close(losses.byol(e, e[::-1] * 3), 2.0)
  close(losses.byol(e, -5 * e), 4.0)
  close(losses.negative_cosine(e, 2 * e), -1.0)


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_moco_v3_matches_the_numpy_loop(temperature):
  q, k = RNG.normal(size=(7, 4)), RNG.normal(size=(7, 4))
  close(losses.moco_v3(jnp.array(q), jnp.array(k), temperature),
        moco_v3_reference(q, k, temperature), rel=1e-4)
  # Two orthonormal pairs: CE = log(1 + e^(-1/t)); times 2t.
  e = jnp.eye(2)
  close(losses.moco_v3(e, e, temperature),
        2 * temperature * math.log(1 + math.exp(-1 / temperature)))


def test_dino_matches_the_numpy_loop_and_is_the_entropy_when_the_two_agree():
  s, t, c = RNG.normal(size=(5, 6)), RNG.normal(size=(5, 6)), RNG.normal(size=6) * 0.3
  close(losses.dino(jnp.array(s), jnp.array(t), jnp.array(c), 0.1, 0.04),
        dino_reference(s, t, c, 0.1, 0.04), rel=1e-4)
  # Uniform teacher targets (every logit equal after centring) against a uniform student: log K.
  k = 8
  close(losses.dino(jnp.zeros((3, k)), jnp.ones((3, k)), jnp.ones(k), 0.1, 0.04), math.log(k))


# --- the objectives in real train steps ------------------------------------------------------------
def tiny_config(name, **args):
  """The smoke config at its smallest: flips only (random crops double the compile time and are
  tested elsewhere), 16x16 synthetic images, tiny heads."""
  config = load_config(f"fmnist_{name}", "smoke")
  section = config.objectives[name]
  section.update(invariances=("flip",), projector_dims=(16, 16), **args)
  if "predictor_hidden_dims" in section:
    section.predictor_hidden_dims = (16,)
  if name == "dino":
    section.update(num_prototypes=32, num_local_crops=2)
  config.update(devices=1, batch_size=16, steps=STEPS)
  config.optimizer.warmup_steps = 0  # a warmup starts at lr 0: the first step would not move
  return config


@pytest.fixture(scope="module")
def dataset():
  return synthetic_dataset()


_RUNS = {}


def run(name, dataset):
  """(experiment, host states 0..STEPS, per-step metrics) of ``name``'s tiny config, once."""
  if name not in _RUNS:
    exp = loop.build_experiment(tiny_config(name), dataset)
    step, state = loop.compiled_train_step(exp), loop.initial_state(exp)
    states, history = [jax.device_get(state)], []
    for s in range(STEPS):
      state, metrics = step(state, exp.stream.batch(s))
      states.append(jax.device_get(state))
      history.append(jax.device_get(metrics))
    _RUNS[name] = exp, states, history
  return _RUNS[name]


# XLA fuses each multiply-add into one rounding; the same formula compiled matches bit for bit.
_ema = jax.jit(lambda old, new, m: jax.tree.map(lambda o, n: m * o + (1 - m) * n, old, new))


@pytest.mark.parametrize("name", TEACHERS)
def test_the_teacher_is_exactly_the_ema_of_the_updated_online_networks(name, dataset):
  exp, states, history = run(name, dataset)
  networks = exp.objective.followers()[0].follows
  for k in range(STEPS):
    before, after = states[k], states[k + 1]
    m = np.float32(history[k]["teacher/momentum"])
    for net in networks:
      expected = jax.device_get(_ema(before.followers["teacher"][net], after.params[net], m))
      jax.tree.map(np.testing.assert_array_equal, after.followers["teacher"][net], expected)
    assert not np.array_equal(jax.tree.leaves(after.params["projector"])[0],
                              jax.tree.leaves(before.params["projector"])[0])  # it trained
  jax.tree.map(np.testing.assert_array_equal, states[0].followers["teacher"]["encoder"],
               states[0].params["encoder"])  # starts as a copy


@pytest.mark.parametrize("name", TEACHERS)
def test_the_momentum_follows_the_cosine_at_the_first_middle_and_last_steps(name, dataset):
  _, _, history = run(name, dataset)
  m0 = tiny_config(name).objectives[name].base_momentum
  assert m0 == 0.99
  for k in (0, STEPS // 2, STEPS - 1):
    expected = 1 - (1 - m0) * (math.cos(math.pi * k / STEPS) + 1) / 2
    close(history[k]["teacher/momentum"], expected, rel=1e-6)
  close(history[STEPS // 2]["teacher/momentum"], 1 - (1 - m0) / 2, rel=1e-6)


@pytest.mark.parametrize("name", TEACHERS)
def test_the_teacher_receives_no_gradient(name, dataset):
  exp, states, _ = run(name, dataset)
  state = jax.tree.map(jnp.asarray, states[1])
  player = exp.objective.players()[0]
  assert not set(player.owns) & {"teacher"}

  @jax.jit
  def grads(params, followers):
    inputs = LossInputs(jax.tree.map(jnp.asarray, exp.stream.batch(1)), jax.random.PRNGKey(1),
                        state.step, state.batch_stats, followers, state.objective_state)
    return jax.grad(lambda p, f: player.loss(p, inputs._replace(followers=f))[0],
                    argnums=(0, 1))(params, followers)

  to_params, to_teacher = grads(state.params, state.followers)
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(to_teacher))
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(to_params["encoder"]))


@pytest.mark.parametrize("name", [*TEACHERS, "simsiam"])
def test_every_objective_logs_the_collapse_watch(name, dataset):
  _, _, history = run(name, dataset)
  for metrics in history:
    assert 0 < metrics["main/collapse_std"] <= 1 and np.isfinite(metrics["main/loss"])


# --- DINO's centre and crops -----------------------------------------------------------------------
def test_dino_centre_is_the_ema_of_the_teachers_global_crop_outputs_and_locals_skip_it(dataset):
  exp, states, _ = run("dino", dataset)
  objective, state = exp.objective, states[1]
  calls, traced = [], {}
  apply = objective.apply

  def recording(name, params, *args, **kwargs):
    out = apply(name, params, *args, **kwargs)
    calls.append((name, params is traced["teacher"], args[1].shape, out[0]))
    return out

  @jax.jit
  def loss(params, inputs):  # the teacher's logits come out of the compiled loss beside its state
    calls.clear()
    traced["teacher"] = inputs.followers["teacher"]
    _, out = objective.players()[0].loss(params, inputs)
    return out, [o for name, is_teacher, _, o in calls if name == "prototypes" and is_teacher]

  centre = RNG.normal(size=state.objective_state["center"].shape).astype(np.float32)
  batch = exp.stream.batch(1)
  objective.apply = recording
  try:
    inputs = LossInputs(batch, jax.random.PRNGKey(3), jnp.asarray(1), state.batch_stats,
                        state.followers, {**state.objective_state, "center": centre})
    out, teacher_logits = loss(state.params, inputs)
  finally:
    del objective.apply
  n, side = batch["images"].shape[0], batch["images"].shape[1]
  encoder_inputs = {(is_teacher, shape) for name, is_teacher, shape, _ in calls if name == "encoder"}
  assert encoder_inputs == {(True, (2 * n, side, side, 1)), (False, (2 * n, side, side, 1)),
                            (False, (2 * n, side // 2, side // 2, 1))}  # 2 global, 2 local crops
  assert len(teacher_logits) == 1 and teacher_logits[0].shape == (2 * n, 32)
  expected = 0.9 * centre + 0.1 * np.mean(np.asarray(teacher_logits[0]), axis=0)
  np.testing.assert_allclose(out.state["center"], expected, rtol=1e-5, atol=1e-7)
  # The teacher's running statistics moved with its training-mode pass.
  assert not np.array_equal(out.state["teacher_batch_stats"]["encoder"]["bn0"]["mean"],
                            state.objective_state["teacher_batch_stats"]["encoder"]["bn0"]["mean"])


def test_dino_centre_and_teacher_resume_from_a_checkpoint_and_are_fingerprinted(dataset, tmp_path):
  exp, states, _ = run("dino", dataset)
  centres = [s.objective_state["center"] for s in states]
  assert np.all(centres[0] == 0) and not np.array_equal(centres[1], centres[2])
  checkpoints = Checkpoints(tmp_path)
  checkpoints.save(jax.device_put(states[2]))
  checkpoints.close()
  checkpoints = Checkpoints(tmp_path)
  restored = checkpoints.restore(loop.initial_state(exp))
  checkpoints.close()
  assert state_fingerprint(jax.device_get(restored)) == state_fingerprint(states[2])
  step = loop.compiled_train_step(exp)
  resumed, _ = step(restored, exp.stream.batch(2))
  assert state_fingerprint(jax.device_get(resumed)) == state_fingerprint(states[3])
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.objective_state),
               states[3].objective_state)
  nudged = states[2].replace(objective_state={**states[2].objective_state, "center": np.nextafter(
      centres[2], np.float32(9))})
  assert state_fingerprint(nudged) != state_fingerprint(states[2])
  teacher = jax.tree.map(lambda a: a + 1, states[2].followers)
  assert state_fingerprint(states[2].replace(followers=teacher)) != state_fingerprint(states[2])


@pytest.mark.parametrize("encoder,args", [("cnn", {"widths": (8, 16)}),
                                          ("resnet18", {"width": 4})])
def test_encoders_with_global_pooling_take_dino_local_crops(encoder, args):
  # Shapes only (nothing compiled): the network initialised on 28x28 images runs on 14x14 crops
  # with the same parameters and gives features of the same width.
  net = ENCODERS[encoder](**args)
  images = lambda side: jax.ShapeDtypeStruct((2, side, side, 1), jnp.float32)
  variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), images(28))
  assert jax.tree.structure(jax.eval_shape(net.init, jax.random.PRNGKey(0), images(14))) == \
      jax.tree.structure(variables)
  (full, _), (local, _) = (jax.eval_shape(net.apply, variables, images(side)) for side in (28, 14))
  assert local.shape == full.shape == (2, args.get("width", 16) * (8 if encoder != "cnn" else 1))


# --- collapse, the teacher probe, arguments ---------------------------------------------------------
def test_simsiam_without_its_predictor_collapses_and_the_report_flags_it():
  # Digits, a high constant learning rate, 60 steps: measured 0.03x healthy without the predictor
  # and 0.6x with it (the control: the flag is not raised for everything short).
  digits = load_dataset("digits")
  flagged = {}
  for predictor in (False, True):
    config = load_config("fmnist_simsiam", "smoke" if predictor else "smoke,no_predictor")
    config.objectives.simsiam.output_bn = False  # as no_predictor has it: only the predictor differs
    config.update(dataset="digits", devices=1, batch_size=64, online_probe=False)
    config.optimizer.update(lr=1e-2, schedule="constant")
    exp = loop.build_experiment(config, digits)
    _, state = run_steps(config, digits, steps=60)
    report = rank_report(embedding_fn(exp.objective), variables_of(state), digits.test_images,
                         config.views, ("flip",), config.rank)
    flagged[predictor] = collapse_warning(report)
  assert flagged[False] and flagged[False].startswith("warning: collapsed run: the held-out "
                                                      "projector embeddings' std is")
  assert flagged[True] is None


def test_the_teacher_probe_reads_the_teacher_and_objectives_without_one_have_none(dataset):
  exp, states, _ = run("byol", dataset)
  variables = variables_of(states[0])
  teacher = exp.objective.teacher_variables(variables)
  x = jnp.asarray(dataset.test_images[:4], jnp.float32) / 255
  np.testing.assert_array_equal(exp.objective.features(teacher, x)[0],
                                exp.objective.features(variables, x)[0])  # a copy at step 0
  section = teacher_probe(exp, variables_of(states[-1]), dataset.train_images, dataset.train_labels)
  assert 0 <= section["top1"] <= 1 and section["features"] == exp.config.probe.features
  assert any(label.startswith("teacher (EMA) linear probe top-1")
             for label, _ in figure_rows({"teacher_probe": section}))
  simsiam = loop.build_experiment(tiny_config("simsiam"), dataset)
  assert simsiam.objective.teacher_variables(variables) is None


@pytest.mark.parametrize("name,args,message", [
    ("byol", {"base_momentum": 1.5}, r"objectives.byol.base_momentum must be in \[0, 1\]"),
    ("byol", {"predictor_hidden_dims": (8, 0)}, "objectives.byol.predictor_hidden_dims must be"),
    ("moco_v3", {"temperature": 0.0}, "objectives.moco_v3.temperature must be > 0, got 0.0"),
    ("dino", {"local_scale": (0.5, 0.1)}, r"objectives.dino.local_scale must be an area range"),
    ("dino", {"num_local_crops": -1}, "objectives.dino.num_local_crops must be >= 0, got -1"),
    ("dino", {"teacher_temp": 0}, "objectives.dino.teacher_temp must be > 0, got 0"),
    ("dino", {"center_momentum": 2.0}, r"objectives.dino.center_momentum must be in \[0, 1\]"),
])
def test_each_bad_argument_is_a_one_line_config_error(name, args, message):
  config = load_config(f"fmnist_{name}", "smoke")
  config.objectives[name].update(args)
  with pytest.raises(UserError, match=message) as error:
    check_config(config)
  assert "\n" not in str(error.value)


def test_switches_read_back_from_json_must_be_booleans():
  from ssljax.objectives import OBJECTIVES
  from ssljax.objectives.base import resolve_args
  for name, key in (("simsiam", "predictor"), ("simsiam", "output_bn"), ("dino", "head_bn")):
    _, problems = resolve_args(OBJECTIVES[name], {key: "no"})
    assert problems == [f"{key} must be True or False, got 'no'"]


def test_the_objectives_symmetrise_the_pure_losses(dataset):
  p1, p2, t1, t2 = (jnp.array(RNG.normal(size=(8, 6))) for _ in range(4))
  objective = lambda name: loop.build_experiment(tiny_config(name), dataset).objective
  close(objective("byol").symmetric_loss(p1, p2, t1, t2),
        byol_reference(np.asarray(p1), np.asarray(t2)) + byol_reference(np.asarray(p2),
                                                                         np.asarray(t1)))
  close(objective("simsiam").symmetric_loss(p1, p2, t1, t2),
        (negative_cosine_reference(np.asarray(p1), np.asarray(t2))
         + negative_cosine_reference(np.asarray(p2), np.asarray(t1))) / 2)
  close(objective("moco_v3").symmetric_loss(p1, p2, t1, t2),
        moco_v3_reference(np.asarray(p1), np.asarray(t2), 0.2)
        + moco_v3_reference(np.asarray(p2), np.asarray(t1), 0.2), rel=1e-4)
