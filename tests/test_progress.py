"""Progress output: with stderr a terminal, tqdm's bar; in a file (Slurm logs, pipes) one plain line
per logged step instead of a bar's carriage-return redraws, from process 0 only."""
import io
import re

from conftest import load_config
from ssljax.tracking import MetricsWriter
from ssljax.train import loop


def test_progress_line_format():
  assert loop.progress_line(150, 702, {"loss": "3.0568", "img_s": "512"}) == \
      "pretrain step 150/702 (21%) loss=3.0568 img_s=512"
  # The first logged interval includes compilation: its speed is not a figure to show.
  assert loop.progress_line(2, 4, {"loss": "1.0000", "img_s": "nan"}) == \
      "pretrain step 2/4 (50%) loss=1.0000"


def test_a_non_terminal_stderr_gets_one_line_per_logged_step(tmp_path, capsys):
  config = load_config("fmnist_infonce", "smoke")
  config.dataset, config.devices, config.steps, config.log_every = "digits", 2, 6, 2
  exp = loop.build_experiment(config)
  loop.pretrain(exp, tmp_path, MetricsWriter(tmp_path, {}, config.wandb))
  err = capsys.readouterr().err
  assert "\r" not in err and "it/s" not in err  # no bar
  lines = [l for l in err.splitlines() if l.startswith("pretrain step")]
  assert [l.split()[2] for l in lines] == ["2/6", "4/6", "6/6"]
  assert re.fullmatch(r"pretrain step 2/6 \(33%\) main/loss=\d+\.\d{4}", lines[0])
  assert re.fullmatch(r"pretrain step 6/6 \(100%\) main/loss=\d+\.\d{4} img_s=\d+", lines[-1])


def test_a_terminal_keeps_the_bar():
  class Terminal(io.StringIO):
    def isatty(self):
      return True
  assert loop._is_terminal(Terminal()) and not loop._is_terminal(io.StringIO())
  assert not loop._is_terminal(None)  # pythonw and daemons may have no stderr at all


def test_logged_metrics_are_the_mean_of_their_window(tmp_path):
  from conftest import run_steps
  from ssljax.tracking import read_metrics
  config = load_config("fmnist_infonce", "smoke")
  config.dataset, config.devices, config.steps, config.log_every = "digits", 2, 6, 3
  history, _ = run_steps(config, steps=6)  # the same steps, one metrics dict each
  exp = loop.build_experiment(config)
  loop.pretrain(exp, tmp_path, MetricsWriter(tmp_path, {}, config.wandb))
  logged = read_metrics(tmp_path)
  assert [r["step"] for r in logged] == [3, 6]
  for record, window in zip(logged, (history[:3], history[3:])):
    for key in ("main/loss", "online_probe/acc", "main/grad_norm"):
      mean = sum(float(m[key]) for m in window) / 3  # written out: the window's three steps
      assert abs(record[key] - mean) <= 1e-5 * max(1.0, abs(mean)), key
    assert record["nonfinite_steps"] == int(window[-1]["nonfinite_steps"])  # a count, not a mean
  assert logged[0]["main/loss"] != float(history[2]["main/loss"])  # not the last batch alone


def test_the_host_waits_for_the_step_before_the_one_it_dispatched(tmp_path, monkeypatch):
  # Free to run log_every steps ahead, the GAN's steps on 2 fake CPU devices stalled at an
  # all-reduce until XLA:CPU aborted the run; one step of look-ahead is what the loop keeps.
  import jax
  events, dispatched = [], []
  real_compiled, real_block = loop.compiled_train_step, jax.block_until_ready

  def compiled(exp, players=None):
    step = real_compiled(exp, players)
    def recorded(state, batch):
      state, metrics = step(state, batch)
      dispatched.append(metrics)  # kept alive: identities stay unique
      events.append(("dispatch", len(dispatched) - 1))
      return state, metrics
    return recorded

  def block(tree):
    events.extend(("wait", k) for k, m in enumerate(dispatched) if m is tree)
    return real_block(tree)

  monkeypatch.setattr(loop, "compiled_train_step", compiled)
  monkeypatch.setattr(jax, "block_until_ready", block)
  config = load_config("fmnist_infonce", "smoke")
  config.dataset, config.devices, config.steps, config.log_every = "digits", 2, 4, 4
  loop.pretrain(loop.build_experiment(config), tmp_path, MetricsWriter(tmp_path, {}, config.wandb))
  assert events == [("dispatch", 0), ("dispatch", 1), ("wait", 0), ("dispatch", 2), ("wait", 1),
                    ("dispatch", 3), ("wait", 2)]
