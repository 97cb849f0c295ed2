"""The results-table runner (issue 18) on a tiny suite: 2 rows x 2 seeds of smoke configs on digits.

One module-scoped suite run serves every end-to-end test: first the runner is started and killed
(``kill -9``) in the middle of one run, then the whole suite runs (that run resumes from its
checkpoint), then a second invocation must launch nothing. The statistics, the directions and the
estimate are checked on numbers written out here; every mistake a user can make on the command line
is one line.
"""
import copy
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pytest
from scipy import stats

from conftest import ROOT
from ssljax.benchmark import aggregate, directions, run_suite, runner
from ssljax.benchmark.results_page import curve_lines, page_markdown, write_results
from ssljax.benchmark.suite import check_commands, load_suite, parse_check, parse_seeds, plan
from ssljax.benchmark.suite import Row, RunSpec, select_rows
from ssljax.errors import UserError

# Row b runs long enough (240 steps, a checkpoint every 20) to be killed half-way.
TINY = f'''
import ml_collections
from ssljax.benchmark.suite import row

def get_config():
  s = ml_collections.ConfigDict()
  s.title = "tiny"
  s.dataset = "digits"
  s.encoder = "cnn"
  s.encoder_args = dict(widths=(8, 16))
  s.epochs = 1.0
  s.steps = 8
  s.seeds = (0, 1)
  s.protocol = dict(cpu_devices=2, probe=dict(features="pooled", extra_features=("last_stage",),
                                              seeds=2))
  s.rows = (row("a", "{ROOT}/experiments/fmnist_infonce.py:smoke", "contrastive", "InfoNCE"),
            row("b", "{ROOT}/experiments/fmnist_infonce.py:smoke", "reconstructive", "stand-in",
                steps=240, checkpoint_every=20, log_every=20))
  s.curve = dict(epochs=(1.0, 3.0), seed=0, rows=())
  return s
'''
README = "# project\n\n<!-- results:tiny begin -->\nhow to run it\n<!-- results:tiny end -->\n\nafter\n"


def _lock_released(workdir) -> bool:
  try:
    fd = os.open(workdir / ".lock", os.O_RDWR)
  except FileNotFoundError:
    return True
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except OSError:
    return False
  finally:
    os.close(fd)


def _wait(predicate, timeout, what):
  deadline = time.monotonic() + timeout
  while not predicate():
    assert time.monotonic() < deadline, f"timed out waiting for {what}"
    time.sleep(0.05)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  base = tmp_path_factory.mktemp("benchmark")
  (base / "tiny.py").write_text(TINY)
  (base / "README.md").write_text(README)
  paths = types.SimpleNamespace(base=base, suite=base / "tiny.py", root=base / "runs",
                                results=base / "results", readme=base / "README.md")
  killed_dir = paths.root / "tiny" / "b" / "seed0"
  cli = [sys.executable, "-m", "ssljax.benchmark", f"--suite={paths.suite}", "--only=b",
         "--seeds=0", f"--root={paths.root}", f"--results={paths.results}", "--readme="]
  with open(base / "killed.out", "w") as out:
    process = subprocess.Popen(cli, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
      _wait(lambda: any(p.name.isdigit() for p in (killed_dir / "checkpoints").glob("*")),
            240, "the first checkpoint")
      process.send_signal(signal.SIGKILL)  # the runner dies, and its run with it
      process.wait(timeout=30)
    finally:
      if process.poll() is None:
        process.kill()
  _wait(lambda: _lock_released(killed_dir), 60, "the run to die with the runner")
  paths.killed = {"report": (killed_dir / "report.json").exists(),
                  "steps": sorted(int(p.name) for p in (killed_dir / "checkpoints").iterdir()
                                  if p.name.isdigit())}
  suite = load_suite(paths.suite)
  t0 = time.perf_counter()
  paths.first = run_suite.run_table(suite, list(suite.rows), suite.seeds, paths.root,
                                    paths.results, paths.readme)
  paths.first_wall = time.perf_counter() - t0
  paths.mtimes = {p: p.stat().st_mtime_ns for p in paths.root.glob("tiny/*/seed*/report.json")}
  paths.second = run_suite.run_table(suite, list(suite.rows), suite.seeds, paths.root,
                                     paths.results, paths.readme)
  paths.loaded = suite
  return paths


def test_runs_are_made_in_the_contracted_layout(tiny):
  for name in ("a", "b"):
    for seed in (0, 1):
      workdir = tiny.root / "tiny" / name / f"seed{seed}"
      for entry in ("config.json", "checkpoints", "metrics.jsonl", "report.json", "report.md",
                    "plots"):
        assert (workdir / entry).exists(), workdir / entry
      config = json.loads((workdir / "config.json").read_text())
      assert config["seed"] == seed and config["dataset"] == "digits"
      assert config["encoders"]["cnn"]["widths"] == [8, 16]
      assert config["steps"] == (240 if name == "b" else 8)  # the row's override wins
      assert config["probe"]["extra_features"] == ["last_stage"]
  assert [r.label for r in tiny.first.launched] == ["a seed 0", "a seed 1", "b seed 0", "b seed 1"]
  assert not tiny.first.failed


def test_a_second_invocation_launches_nothing(tiny):
  assert tiny.second.launched == [] and len(tiny.second.skipped) == 4
  assert {p: p.stat().st_mtime_ns for p in tiny.mtimes} == tiny.mtimes


def test_a_run_killed_mid_way_resumes_from_its_checkpoint(tiny):
  assert not tiny.killed["report"] and tiny.killed["steps"]  # stopped with a checkpoint
  assert 0 < max(tiny.killed["steps"]) < 240
  workdir = tiny.root / "tiny" / "b" / "seed0"
  report = json.loads((workdir / "report.json").read_text())["pretrain"]
  assert report["steps"] == 240 and report["resumed_from_step"] == max(tiny.killed["steps"])
  log = (tiny.root / "tiny" / "logs" / "b-seed0.log").read_text()
  assert "Resuming from the checkpoint at step" in log and log.count("$ ") == 2


def test_a_fresh_clone_keeps_the_committed_records_and_reruns_only_stale_ones(tiny, tmp_path,
                                                                            capsys):
  # A new machine: the results JSON is committed, the run directories are not.
  results, fresh_root = tmp_path / "results", tmp_path / "runs"
  results.mkdir()
  stored = json.loads((tiny.results / "tiny.json").read_text())
  (results / "tiny.json").write_text(json.dumps(stored))
  outcome = run_suite.run_table(tiny.loaded, list(tiny.loaded.rows), tiny.loaded.seeds, fresh_root,
                                results, dry_run=True)
  out = capsys.readouterr().out
  assert "0 to run; 4 finished in an earlier sitting" in out and len(outcome.skipped) == 4
  kept = write_results(tiny.loaded, fresh_root, results)
  assert kept["finished_runs"] == 4 and kept["rows"] == stored["rows"]
  # A record made under other settings than the suite gives its run now is not the table's.
  stored["rows"][0]["runs"][1]["config"]["probe"]["seeds"] = 3
  (results / "tiny.json").write_text(json.dumps(stored))
  run_suite.run_table(tiny.loaded, list(tiny.loaded.rows), tiny.loaded.seeds, fresh_root, results,
                      dry_run=True)
  out = capsys.readouterr().out
  assert "a seed 1: its record in" in out and "probe.seeds: 3 -> 2); running it again" in out
  assert "1 to run; 3 finished in an earlier sitting" in out
  assert "--workdir=" + str(fresh_root / "tiny" / "a" / "seed1") in out


# A child that counts the SIGTERMs it receives; the runner must forward exactly one.
COUNTING_CHILD = """
import signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
print("child", "up", flush=True)  # not the command text the log starts with
while not got:
  time.sleep(0.01)
time.sleep(0.3)
print("signals", len(got), flush=True)
"""


def test_a_stop_signal_to_the_runner_reaches_its_run_once(tmp_path):
  row = Row("x", "unused", "contrastive", "", 1.0, {})
  run = RunSpec(row, 0, 1.0, tmp_path / "run", tmp_path / "x.log",
                (sys.executable, "-c", COUNTING_CHILD))

  def stop_when_ready():
    _wait(lambda: run.log.exists() and "child up" in run.log.read_text(), 60, "the child")
    os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would: to the runner only

  threading.Thread(target=stop_when_ready, daemon=True).start()
  assert runner.launch(run) == (0, "SIGTERM")
  assert "signals 1" in run.log.read_text()
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the runner's own handler is back


def test_the_table_json_page_plots_and_readme(tiny):
  document = json.loads((tiny.results / "tiny.json").read_text())
  assert (document["finished_runs"], document["expected_runs"]) == (4, 4)
  assert [r["name"] for r in document["rows"]] == ["a", "b"]
  run = document["rows"][0]["runs"][0]
  assert run["config"]["seed"] == 0 and "provenance" not in run["config"]
  assert run["commit"] and set(run["figures"]) == {c.name for c in aggregate.COLUMNS}
  assert document["controls"]["random_init"]["n"] == 2 and document["controls"]["raw_pixels"]
  assert (tiny.results / "tiny.png").is_file() and document["plots"] == ["tiny.png"]
  page = (tiny.results / "tiny.md").read_text()
  assert "1 epoch" not in page and "8 steps per run" in page
  assert "| `a` | contrastive | 2 |" in page and "untrained encoder" in page
  assert "The literature's directions, checked" in page
  readme = tiny.readme.read_text()
  assert "how to run it" not in readme and readme.endswith("<!-- results:tiny end -->\n\nafter\n")
  assert "(results/tiny.png)" in readme and "#### Reproduce" not in readme  # one level down
  assert "### Reproduce" in readme


def reference_ci95(values):
  """Student's t 95% half-width, written out: t_{0.975, n-1} * s / sqrt(n), s with ddof=1."""
  values = np.asarray(values, np.float64)
  return stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))


def test_row_statistics_are_the_mean_and_t_interval_over_seeds(tiny):
  for values in ([0.81, 0.83], [0.8612, 0.8590, 0.8655], [0.5, 0.6, 0.7, 0.9]):
    got = aggregate.statistics(values)
    assert got["n"] == len(values) and np.isclose(got["mean"], np.mean(values))
    assert np.isclose(got["ci95"], reference_ci95(values))
  assert aggregate.statistics([0.8])["ci95"] is None and aggregate.statistics([None]) is None
  document = json.loads((tiny.results / "tiny.json").read_text())
  row = document["rows"][0]
  per_seed = [r["figures"]["probe_pooled"] for r in row["runs"]]
  assert np.isclose(row["figures"]["probe_pooled"]["ci95"], reference_ci95(per_seed))
  untrained = document["controls"]["random_init"]
  per_seed = [np.mean([run["random_init"]["probe_pooled"] for r in document["rows"]
                       for run in r["runs"] if run["seed"] == seed]) for seed in (0, 1)]
  assert np.isclose(untrained["figures"]["probe_pooled"]["mean"], np.mean(per_seed))


def test_a_partial_table_says_n(tiny):
  config = copy.deepcopy(tiny.loaded.config)
  config.seeds = (0, 7)  # seed 7 never ran
  partial = aggregate.build_document(
      type(tiny.loaded)(tiny.loaded.name, tiny.loaded.path, config, tiny.loaded.rows), tiny.root)
  assert (partial["finished_runs"], partial["expected_runs"]) == (2, 4)
  assert all(r["n"] == 1 and r["figures"]["probe_pooled"]["ci95"] is None for r in partial["rows"])
  page = page_markdown(partial)
  assert "| `a` | contrastive | 1 |" in page and "2 of 4 runs finished" in page


def synthetic(name, family, mean, ci, n=3):
  return {"name": name, "family": family,
          "figures": {"probe_pooled": {"mean": mean, "ci95": ci, "n": n}}}


def test_directions_agree_disagree_or_cannot_tell_from_the_numbers():
  rows = [synthetic("infonce", "contrastive", 0.860, 0.002),
          synthetic("align_uniform", "contrastive", 0.862, 0.002),   # overlaps infonce
          synthetic("infonce_scale", "contrastive", 0.870, 0.002),   # apart from flip, above
          synthetic("infonce_flip", "contrastive", 0.850, 0.002),
          synthetic("autoencoder", "reconstructive", 0.880, 0.003),  # above every JE row
          synthetic("vicreg", "redundancy_reduction", 0.855, None, n=1),
          synthetic("barlow_twins", "redundancy_reduction", 0.800, 0.010)]
  verdicts = {d["claim"]: d for d in directions.check_directions(rows)}
  je = verdicts["joint-embedding objectives beat reconstruction on a linear probe"]
  assert je["verdict"] == "disagrees" and je["left"]["row"] == "infonce_scale"  # its best row
  assert verdicts["alignment + uniformity ≈ InfoNCE"]["verdict"] == "agrees"
  assert verdicts["crop (scale) invariance matters more than flip"]["verdict"] == "agrees"
  assert verdicts["BYOL ≥ SimCLR"]["verdict"] == "not yet run"
  assert verdicts["VICReg ≈ Barlow Twins"]["verdict"] == "cannot tell"  # n=1: no interval
  a, b = {"mean": 0.86, "ci95": 0.01}, {"mean": 0.85, "ci95": 0.002}
  assert directions.verdict(a, b, directions.BETTER) == "cannot tell"  # overlapping
  assert directions.verdict(b, {"mean": 0.80, "ci95": 0.002}, directions.SAME) == "disagrees"
  assert directions.verdict({"mean": 0.80, "ci95": 0.002}, b, directions.BETTER) == "disagrees"


def test_check_reruns_one_run_and_reproduces_it(tiny, capsys):
  row, seed = parse_check("a:1", tiny.loaded)
  assert run_suite.check(tiny.loaded, row, seed, tiny.root)
  out = capsys.readouterr().out
  assert "check a seed 1: reproduces the stored figures" in out
  assert "params fingerprint: identical" in out and "DIFFERS" not in out
  assert (tiny.root / "tiny" / "check" / "a" / "seed1" / "report.json").is_file()
  stored = json.loads((tiny.root / "tiny" / "a" / "seed1" / "report.json").read_text())
  moved = copy.deepcopy(stored)
  moved["knn"]["top1"] += 2 * runner.CHECK_TOLERANCE
  ok, lines = runner.compare_reports(stored, moved)
  assert not ok and any(line.startswith("kNN") and "DIFFERS" in line for line in lines)


def test_the_curve_picks_the_best_row_of_each_family_and_plots_finished_points(tiny, capsys):
  assert [r.name for r in run_suite.curve_rows(tiny.loaded, tiny.root)] == ["a", "b"]
  run_suite.run_curve(tiny.loaded, tiny.root, tiny.base / "unused", dry_run=True)
  out = capsys.readouterr().out
  assert "learning curve: a, b at 1, 3 epochs, seed 0" in out and "2 finished, 2 to run" in out
  assert "curve/epochs3/a/seed0" in out and "--config.epochs=3.0" in out
  # A finished 3-epoch run, made here by copying the table's run: the curve reads run directories.
  source = plan(tiny.loaded, tiny.root, [tiny.loaded.row("a")], [0])[0].workdir
  target = plan(tiny.loaded, tiny.root, [tiny.loaded.row("a")], [0], epochs=3.0)[0].workdir
  assert target == tiny.root / "tiny" / "curve" / "epochs3" / "a" / "seed0"
  target.mkdir(parents=True)
  (target / "report.json").write_text((source / "report.json").read_text())
  config = json.loads((source / "config.json").read_text())
  (target / "config.json").write_text(json.dumps({**config, "epochs": 3.0}))
  document = write_results(tiny.loaded, tiny.root, tiny.base / "with_curve")
  assert [p["epochs"] for p in document["curve"]["rows"]["a"]] == [1.0, 3.0]
  assert (tiny.base / "with_curve" / "tiny_curve.png").is_file()
  assert "## Learning curve" in (tiny.base / "with_curve" / "tiny.md").read_text()
  # A fresh clone: the curve's points and its runs' records come from the committed JSON alone.
  fresh_root = tiny.base / "fresh_runs"
  run_suite.run_curve(tiny.loaded, fresh_root, tiny.base / "with_curve", dry_run=True)
  out = capsys.readouterr().out
  assert "3 finished, 1 to run; 3 finished in an earlier sitting" in out
  assert "curve/epochs3/b/seed0" in out and "curve/epochs3/a/seed0" not in out
  kept = write_results(tiny.loaded, fresh_root, tiny.base / "with_curve")
  assert kept["curve"]["rows"] == document["curve"]["rows"]
  assert [(r["row"], r["epochs"]) for r in kept["curve"]["runs"]] == [("a", 3.0)]


def test_the_curve_says_why_a_point_has_no_bar():
  point = lambda epochs, ci: {"epochs": epochs, "top1": 0.8, "ci95": ci, "dir": "x"}
  curve = {"epochs": [1.0, 3.0], "seed": 0, "random_init": 0.7,
           "rows": {"a": [point(1.0, 0.002), point(3.0, 0.003)]}}
  assert "a point without one" not in " ".join(curve_lines(curve, None))
  curve["rows"]["a"][0]["ci95"] = None  # a record from before the probe-seed CI was kept
  text = " ".join(curve_lines(curve, None))
  assert "a point without one is a run recorded before that CI was kept" in text
  assert "| `a` | 0.8000 | 0.8000 |" in text


def test_check_on_a_fresh_clone_compares_with_the_committed_record(tiny, tmp_path, capsys):
  row, seed = parse_check("a:0", tiny.loaded)
  fresh_root = tmp_path / "runs"
  with pytest.raises(UserError, match="a seed 0 has no finished run to check against"):
    run_suite.check(tiny.loaded, row, seed, fresh_root)  # no directory and no results JSON
  assert run_suite.check(tiny.loaded, row, seed, fresh_root, tiny.results)
  out = capsys.readouterr().out
  assert f"comparing with its record in {tiny.results}" in out
  assert "check a seed 0: reproduces the stored figures" in out
  assert "params fingerprint: identical" in out and "DIFFERS" not in out
  stored = json.loads((tiny.root / "tiny" / "a" / "seed0" / "report.json").read_text())
  record = aggregate.report_from_record(aggregate.run_record(
      plan(tiny.loaded, tiny.root, [row], [seed])[0], stored, tiny.root / "tiny"))
  assert record["knn"]["top1"] == stored["knn"]["top1"]
  assert record["linear_probes"]["pooled"]["top1"] == stored["linear_probes"]["pooled"]["top1"]


def test_estimates_come_from_the_prior_then_from_measured_runs(tiny):
  suite = tiny.loaded
  runs = plan(suite, tiny.root)
  (prior, how) = runner.estimate(suite, runs, [])
  assert "prior" in how and np.isclose(prior, sum(runner.prior_seconds(suite, r) for r in runs))
  measured, how = runner.estimate(suite, runs, runs)
  assert "measured here" in how and measured > 0
  report = {"pretrain": {"steps": 10, "batch_size": 32, "epochs": 0.5, "images_per_s": 64.0},
            "eval_wall_s": 7.0}
  assert np.isclose(runner.measured_seconds(report, 2.0), 2.0 * 10 * 32 / 0.5 / 64.0 + 7.0)


def test_what_a_user_gets_wrong_is_one_clear_line(tiny, tmp_path):
  suite = tiny.loaded
  cases = [(lambda: select_rows(suite, "a,nope"), "unknown row 'nope'.*its rows: a, b"),
           (lambda: parse_check("a", suite), "give ROW:SEED, e.g. --check=a:0"),
           (lambda: parse_check("a:x", suite), "give ROW:SEED"),
           (lambda: parse_check("zz:0", suite), "unknown row 'zz'"),
           (lambda: parse_seeds("0,one", suite), "comma-separated integers")]
  broken = tmp_path / "broken.py"
  broken.write_text(TINY.replace("  s.epochs = 1.0\n", ""))
  cases.append((lambda: load_suite(broken), "missing key.*epochs; every suite declares"))
  bad_row = tmp_path / "bad_row.py"
  bad_row.write_text(TINY.replace('"contrastive", "InfoNCE"', '"contrastiv", "InfoNCE"'))
  cases.append((lambda: load_suite(bad_row), "family 'contrastiv'; valid: contrastive"))
  typo = tmp_path / "typo.py"
  typo.write_text(TINY.replace("seeds=2))", "seedz=2))"))
  cases.append((lambda: check_commands(plan(load_suite(typo), tmp_path)),
                "row 'a' .seed 0.: .*does not parse"))
  changed = tmp_path / "tiny.py"  # the same suite name and runs, one probe setting changed
  changed.write_text(TINY.replace("seeds=2))", "seeds=3))"))
  cases.append((lambda: run_suite.run_table(load_suite(changed), select_rows(load_suite(changed)),
                                            (0, 1), tiny.root, tmp_path / "results"),
                "4 finished run.s. were made with another config.*probe.seeds: 2 -> 3"))
  for call, message in cases:
    with pytest.raises(UserError, match=message) as error:
      call()
    assert "\n" not in str(error.value)
  result = subprocess.run([sys.executable, "-m", "ssljax.benchmark", f"--suite={broken}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and result.stderr.count("\n") == 1
  assert result.stderr.startswith("error: suite file") and "epochs" in result.stderr
