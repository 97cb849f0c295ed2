"""The GAN as two players of the generic step: each player's step leaves the other's parameters and
running statistics bit-identical (and really changes its own, k1 = 2 times for the discriminator);
one device = two devices; the samples figure."""
import jax
import numpy as np
import optax
import pytest

from conftest import initial_host_state, load_config, run_steps
from ssljax.data.sources import load_dataset
from ssljax.evaluate.features import variables_of
from ssljax.evaluate.run import save_objective_plots
from ssljax.train import loop
from ssljax.train.state import owned_networks


@pytest.fixture(scope="module")
def fmnist():
  return load_dataset("fashion_mnist")


@pytest.fixture(scope="module")
def gan(fmnist):
  """The smoke GAN with k1 = 2 discriminator steps per round, and its initial host state."""
  config = load_config("fmnist_gan", "smoke")
  config.devices = 1
  config.objectives.gan.discriminator_steps = 2
  return loop.build_experiment(config, fmnist), initial_host_state(config, fmnist)


def _adam_steps(opt_state) -> set[int]:
  return {int(c) for _, c in optax.tree_utils.tree_get_all_with_path(opt_state, "count")}


def _one_player_step(exp, name):
  """The generic step built on this player alone: exactly what the full step runs for it."""
  player = next(p for p in exp.objective.players() if p.name == name)
  return loop.compiled_train_step(exp, [player])


def _tree_equal(a, b) -> bool:
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: np.array_equal(x, y), a, b)))


@pytest.mark.parametrize("player,other", [("discriminator", ("generator",)),
                                          ("generator", ("encoder", "disc_head", "online_probe"))])
def test_a_players_step_leaves_the_other_players_networks_bit_identical(gan, player, other):
  exp, before = gan
  owns = next(p.owns for p in exp.objective.players() if p.name == player)
  assert not set(owns) & set(other)
  after, metrics = _one_player_step(exp, player)(before, exp.stream.batch(0))
  after = jax.device_get(after)
  for name in other:
    assert _tree_equal(before.params[name], after.params[name]), name
    if name in before.batch_stats:
      assert _tree_equal(before.batch_stats[name], after.batch_stats[name]), name
  # ... and the step really trained this player's own networks.
  for name in owns:
    assert not _tree_equal(before.params[name], after.params[name]), name
  assert np.isfinite(metrics[f"{player}/loss"])
  assert _adam_steps(after.opt_states[player]) == {2 if player == "discriminator" else 1}  # k1, k2
  idle = "generator" if player == "discriminator" else "discriminator"
  assert _tree_equal(before.opt_states[idle], after.opt_states[idle])


def test_players_own_everything_once_with_their_own_optimizers(gan):
  exp, _ = gan
  players = {p.name: p for p in exp.objective.players()}
  assert set(players) == {"discriminator", "generator"}
  owned = [n for p in players.values() for n in p.owns]
  assert sorted(owned) == sorted(exp.objective.networks) and len(owned) == len(set(owned))
  # The harness adds the online probe to the player that owns the encoder, and to no other.
  assert owned_networks(players["discriminator"], exp.probe)[-1] == "online_probe"
  assert "online_probe" not in owned_networks(players["generator"], exp.probe)
  g = players["generator"].optimizer
  assert (g.name, g.lr, g.b1) == ("adam", 2e-4, 0.5)


def test_smoke_gan_trains_both_players_on_two_devices_and_draws_samples(gan, fmnist, tmp_path):
  # 1 and N devices agreeing is test_device_equivalence's; this is the shipped smoke config.
  config = load_config("fmnist_gan", "smoke")  # k1 = k2 = 1
  config.devices = 2
  history, state = run_steps(config, fmnist, 2, initial=gan[1])
  for key in ("discriminator/loss", "generator/loss"):
    assert all(np.isfinite(h[key]) for h in history), key
  exp = loop.build_experiment(config, fmnist)
  assert save_objective_plots(exp.objective, variables_of(state), tmp_path,
                              fmnist.test_images[:8]) == ["gan_samples.png"]
  assert (tmp_path / "gan_samples.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
  """A finished smoke GAN on digits, its report written by the run itself."""
  from ssljax import pretrain as pretrain_cli
  config = load_config("fmnist_gan", "smoke")
  config.dataset, config.devices = "digits", 2
  config.probe.seeds, config.probe.raw_pixel_baseline, config.probe.random_init = 1, False, False
  workdir = tmp_path_factory.mktemp("runs") / "gan"
  pretrain_cli.run(config, workdir)
  return workdir


def test_evaluating_from_the_checkpoint_gives_the_runs_own_pretrain_section(gan_run, tmp_path):
  # The GAN has no "loss", only each player's: both paths must read the same headline figure.
  import json
  import shutil
  from ssljax.evaluate.from_checkpoint import evaluate_run
  run = tmp_path / "run"
  shutil.copytree(gan_run, run)
  own = json.loads((run / "report.json").read_text())["pretrain"]
  (run / "report.json").unlink()  # so evaluation rebuilds the section from checkpoint + metrics
  again = evaluate_run(run, {"probe.seeds": 1})["pretrain"]
  metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  assert own["final_loss"] == metrics[-1]["discriminator/loss"]  # the first player's loss
  assert again["final_loss"] == own["final_loss"]
  assert again["final_metrics"] == own["final_metrics"]
  for key in ("steps", "epochs", "batch_size", "devices", "nonfinite_skipped",
              "params_fingerprint"):
    assert again[key] == own[key], key
  assert again["evaluated_from_checkpoint"] == own["steps"] and again["wall_s"] is None


def test_report_json_holds_the_provenance_of_the_invocation(gan_run):
  import json
  report = json.loads((gan_run / "report.json").read_text())
  saved = json.loads((gan_run / "config.json").read_text())["provenance"]
  assert set(report["provenance"]) == set(saved) >= {"versions", "git_commit", "command",
                                                      "device_count", "backend"}
  assert report["provenance"]["command"] == saved["command"]  # the same invocation wrote both
  assert report["provenance"]["versions"]["jax"] == jax.__version__
