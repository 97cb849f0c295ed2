"""The objective interface v2 on an objective that exists only here (``ema_test``, registered by a
fixture and removed after): an EMA follower whose teacher after one step is exactly
``m * old + (1 - m) * new_student``, the momentum schedules at the first, middle and last steps,
an objective state (a running mean) updated, checkpointed and restored bit-identically and covered
by the report's fingerprint, the online probe the harness trains and refuses to forget, metric
names, and every objective's arguments checked by the objective itself, all at once."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from ssljax.config_checks import check_config, number_problem
from ssljax.data import views
from ssljax.data.sources import Dataset
from ssljax.errors import UserError
from ssljax.metric_names import headline_loss, headline_losses
from ssljax.models.heads import LinearHead
from ssljax.objectives import OBJECTIVES, schedules
from ssljax.objectives.base import Follower, LossOutput, Objective, register_objective
from ssljax.train import loop
from ssljax.train.checkpoint import Checkpoints, state_fingerprint

STEPS = 4


class EMATest(Objective):
  """A student (encoder + head) pulled towards its EMA teacher and towards 1; its state keeps a
  running mean of the student's outputs. Small enough to compile in seconds."""
  default_config = {"base_momentum": 0.9, "momentum_schedule": "constant", "forget_probe": False}

  @classmethod
  def check_args(cls, args):
    problem = number_problem("base_momentum", args["base_momentum"], low=0, high=1)
    return [problem] if problem else []

  def __init__(self, inputs, encoder):
    super().__init__(inputs, encoder)
    self.view_specs = (views.ViewSpec(("flip",)),)
    self.networks["head"] = LinearHead(4)

  def init(self, key, images):
    variables = super().init(key, images)
    pooled, _ = self.features(variables, images)
    self.init_network(variables, "head", jax.random.fold_in(key, 1), pooled)
    return variables

  def followers(self):
    m0 = self.args["base_momentum"]
    momentum = (schedules.cosine_to_one(m0, self.total_steps)
                if self.args["momentum_schedule"] == "cosine" else schedules.constant(m0))
    return [Follower("teacher", ("encoder", "head"), momentum)]

  def init_state(self, variables):
    return {"running_mean": jnp.zeros((4,), jnp.float32)}

  def loss(self, params, inputs):
    x = views.make_views(inputs.key, views.to_float(inputs.batch["images"]), self.view_specs,
                         self.inputs.views)[0]
    (pooled, stages), stats = self.apply("encoder", params, inputs.batch_stats, x, train=True)
    z, _ = self.apply("head", params, stats, pooled, train=True)
    teacher = inputs.followers["teacher"]
    (t_pooled, _), _ = self.apply("encoder", teacher, {}, x, train=False)
    t, _ = self.apply("head", teacher, {}, t_pooled, train=False)
    loss = jnp.mean((z - jax.lax.stop_gradient(t)) ** 2) + jnp.mean((z - 1.0) ** 2)
    running = 0.5 * inputs.state["running_mean"] + 0.5 * jnp.mean(jax.lax.stop_gradient(z), 0)
    return loss, LossOutput(stats, {"loss": loss}, state={"running_mean": running},
                            probe_input=None if self.args["forget_probe"] else
                            self.probe_input(pooled, stages))


@pytest.fixture(scope="module")
def registered():
  register_objective("ema_test")(EMATest)
  yield
  OBJECTIVES._entries.pop("ema_test")  # registered only for this file's tests


def _dataset(n=32, size=8):
  rng = np.random.default_rng(0)
  images = lambda k: rng.integers(0, 256, (k, size, size, 1), dtype=np.uint8)
  labels = lambda k: rng.integers(0, 10, k).astype(np.int32)
  return Dataset("synthetic", images(n), labels(n), images(16), labels(16), 10)


def _config(**args):
  config = load_config("fmnist_infonce", "smoke")
  config.objective = "ema_test"
  config.objectives.ema_test = {**EMATest.default_config, **args}
  config.encoder = "mlp"
  config.encoders.mlp.update(hidden=(16,), features=8)
  config.devices, config.batch_size, config.steps = 1, 16, STEPS
  config.optimizer.warmup_steps = 0  # a warmup starts at lr 0: the first step would not move
  return config


def _experiment(**args):
  return loop.build_experiment(_config(**args), _dataset())


@pytest.fixture(scope="module")
def cosine_run(registered):
  """STEPS steps of the cosine-momentum objective: (experiment, states 0..STEPS, metrics)."""
  exp = _experiment(momentum_schedule="cosine", base_momentum=0.9)
  step = loop.compiled_train_step(exp)
  state = loop.initial_state(exp)
  states, history = [jax.device_get(state)], []
  for s in range(STEPS):
    state, metrics = step(state, exp.stream.batch(s))
    states.append(jax.device_get(state))
    history.append(jax.device_get(metrics))
  return exp, states, history


# The formula, compiled: XLA fuses each multiply-add into one rounding, so numpy's separately
# rounded products differ from it in the last bit (measured: about a quarter of the elements).
_ema = jax.jit(lambda old, new, m: jax.tree.map(lambda o, n: m * o + (1 - m) * n, old, new))


def test_teacher_is_exactly_the_ema_of_the_updated_student(cosine_run):
  _, states, history = cosine_run
  for k in range(STEPS):
    before, after = states[k], states[k + 1]
    m = np.float32(history[k]["teacher/momentum"])
    for name in ("encoder", "head"):
      expected = jax.device_get(_ema(before.followers["teacher"][name], after.params[name], m))
      jax.tree.map(np.testing.assert_array_equal, after.followers["teacher"][name], expected)
      close = jax.tree.map(lambda o, n: m * o + (np.float32(1) - m) * n,
                           before.followers["teacher"][name], after.params[name])
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                   after.followers["teacher"][name], close)
    # The student moved (so the test is not comparing copies) and the teacher lags it.
    assert not np.array_equal(after.params["head"]["Dense_0"]["kernel"],
                              before.params["head"]["Dense_0"]["kernel"])
  assert np.array_equal(states[0].followers["teacher"]["head"]["Dense_0"]["kernel"],
                        states[0].params["head"]["Dense_0"]["kernel"])  # starts as a copy


def test_momentum_schedules_at_the_first_middle_and_last_steps(cosine_run):
  cosine = schedules.cosine_to_one(0.99, 100)
  assert float(cosine(0)) == pytest.approx(0.99, abs=1e-7)
  assert float(cosine(50)) == pytest.approx(1 - 0.01 / 2, abs=1e-7)  # cos(pi/2) = 0
  assert float(cosine(100)) == pytest.approx(1.0, abs=1e-7)
  assert float(schedules.constant(0.996)(7)) == pytest.approx(0.996)
  # The step reads the schedule at the step it is on, with the run's length from the objective.
  _, _, history = cosine_run
  expected = [1 - 0.1 * (np.cos(np.pi * k / STEPS) + 1) / 2 for k in range(STEPS)]
  np.testing.assert_allclose([h["teacher/momentum"] for h in history], expected, rtol=1e-6)
  assert history[0]["teacher/momentum"] == pytest.approx(0.9)
  assert history[STEPS // 2]["teacher/momentum"] == pytest.approx(0.95)
  warm = schedules.linear_warmup(0.04, 0.07, 10)
  assert [round(float(warm(k)), 6) for k in (0, 5, 10, 20)] == [0.04, 0.055, 0.07, 0.07]


def test_objective_state_is_updated_checkpointed_and_restored_bit_identically(cosine_run,
                                                                               tmp_path):
  exp, states, _ = cosine_run
  running = [s.objective_state["running_mean"] for s in states]
  assert np.all(running[0] == 0) and not np.array_equal(running[1], running[2])
  trained = states[-1]
  checkpoints = Checkpoints(tmp_path)
  checkpoints.save(jax.device_put(trained))
  checkpoints.close()
  checkpoints = Checkpoints(tmp_path)
  restored = jax.device_get(checkpoints.restore(loop.initial_state(exp)))
  checkpoints.close()
  for collection in ("objective_state", "followers", "params"):
    jax.tree.map(np.testing.assert_array_equal, getattr(restored, collection),
                 getattr(trained, collection))
  assert state_fingerprint(restored) == state_fingerprint(trained)
  # The fingerprint covers the objective's state and the followers, not just the parameters.
  nudged = trained.replace(objective_state={"running_mean": np.nextafter(
      trained.objective_state["running_mean"], np.float32(9))})
  assert state_fingerprint(nudged) != state_fingerprint(trained)
  teacher = jax.tree.map(lambda a: a + 1, trained.followers)
  assert state_fingerprint(trained.replace(followers=teacher)) != state_fingerprint(trained)


def test_metric_names_follow_one_rule_and_the_probe_is_trained_by_the_harness(cosine_run):
  exp, states, history = cosine_run
  assert set(history[0]) == {"main/loss", "main/total_loss", "main/grad_norm",
                             "online_probe/loss", "online_probe/acc", "teacher/momentum",
                             "nonfinite_steps"}
  assert headline_losses(history[0]) == {"main/loss": history[0]["main/loss"]}
  assert headline_loss({"discriminator/loss": 1.0, "generator/loss": 2.0}) == 1.0
  np.testing.assert_allclose(history[0]["main/total_loss"],
                             history[0]["main/loss"] + history[0]["online_probe/loss"], rtol=1e-6)
  assert not np.array_equal(states[1].params["online_probe"]["Dense_0"]["kernel"],
                            states[0].params["online_probe"]["Dense_0"]["kernel"])
  assert "online_probe" not in exp.objective.networks  # the harness's, not the objective's


def test_an_encoder_player_without_probe_input_is_refused(registered):
  exp = _experiment(forget_probe=True)
  with pytest.raises(TypeError, match="returned no probe_input"):
    loop.compiled_train_step(exp)(loop.initial_state(exp), exp.stream.batch(0))


def test_every_objectives_arguments_are_checked_by_it_all_at_once(registered):
  config = load_config("fmnist_infonce", "smoke")
  config.batch_size = 0
  config.objectives.infonce.temperature = -1.0
  config.objectives.infonce.invariances = ("flip", "rotate")
  with pytest.raises(UserError) as error:
    check_config(config)
  message = str(error.value)
  assert "batch_size must be >= 1" in message
  assert "objectives.infonce.temperature must be > 0, got -1.0" in message
  assert "objectives.infonce.invariances ('flip', 'rotate') has unknown names" in message
  config = _config(base_momentum=1.5, typo=1)
  with pytest.raises(UserError, match=r"objectives.ema_test.typo: no such argument"):
    check_config(config)
  del config.objectives.ema_test["typo"]
  with pytest.raises(UserError, match=r"objectives.ema_test.base_momentum must be in \[0, 1\]"):
    check_config(config)
  for name in ("gan", "autoencoder", "denoising_autoencoder", "supervised", "align_uniform"):
    assert OBJECTIVES[name].check_args(OBJECTIVES[name].default_config) == [], name
  infonce = OBJECTIVES["infonce"]
  assert len(infonce.check_args({**infonce.default_config, "invariances": 5})) == 1  # no crash
  assert OBJECTIVES["gan"].check_args({**OBJECTIVES["gan"].default_config,
                                       "generator_steps": 0}) == [
      "generator_steps must be >= 1, got 0"]
