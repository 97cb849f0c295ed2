"""A results table's suite file, checked, and the plan it expands to: one run per (row, seed).

A suite file (``experiments/suites/*.py``) defines ``get_config()`` returning a ConfigDict:

- ``dataset``, ``encoder``, ``encoder_args``: the data and the one encoder every row uses;
- ``epochs``: the pretraining budget of every run (``steps`` > 0 overrides it: smoke suites);
- ``seeds``: the pretraining seeds, written to the config key ``seed_key`` (default ``seed``);
- ``protocol``: config overrides shared by every row (probe, batch size, checkpoints), nested dicts;
- ``rows``: a tuple of :func:`row` entries, in table order (adding a row is one line);
- optional: ``title``, ``budget_note`` (why this budget), ``protocol_note`` (what the shared
  overrides mean, in words), ``curve`` (the learning curve's
  ``epochs``, ``seed`` and ``rows``), ``estimate`` (the prior of the wall-time estimate).

Each (row, seed) becomes an ordinary run directory ``ROOT/<suite>/<row>/seed<k>/`` made by the
pretraining CLI's own command, ``python -m ssljax.pretrain --config=<experiment> --workdir=DIR
--config.KEY=VALUE ...``: the row's experiment config, then the suite's shared overrides, then the
row's own, then the seed. The command is the record of what a run is; the runner prints it and
its log starts with it. Curve runs (other budgets) live in ``ROOT/<suite>/curve/epochs<E>/...`` and
``--check`` reruns in ``ROOT/<suite>/check/...``, so those two names are not row names.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys

import ml_collections

from ssljax.errors import UserError

# Objective families, as the design guide groups them; the literature's directions compare them.
FAMILIES = ("contrastive", "redundancy_reduction", "teacher_student", "reconstructive",
            "adversarial", "supervised")
REQUIRED = ("dataset", "encoder", "epochs", "seeds", "rows")
RESERVED_ROW_NAMES = ("curve", "check", "logs")


def row(name: str, experiment: str, family: str, what: str, cost: float = 1.0, **overrides) -> dict:
  """One row of a suite: ``experiment`` (a config file, ``PATH[:arg]``, relative to the directory
  the runner starts in), its ``family``, a few words on ``what`` it is, its pretraining ``cost``
  relative to InfoNCE's per epoch (for the estimate only) and its own config ``overrides`` as
  nested dicts (``optimizer={"warmup_steps": 0}``), applied after the suite's shared ones."""
  return {"name": name, "experiment": experiment, "family": family, "what": what,
          "cost": float(cost), "overrides": overrides}


def rows_from(suite_file, names) -> tuple[dict, ...]:
  """Rows of another suite file, by name, as :func:`row` entries: a suite that runs some of a
  table's rows at another budget takes them from that table, so each row has one owner."""
  suite = load_suite(suite_file)
  return tuple(row(r.name, r.experiment, r.family, r.what, r.cost, **r.overrides)
               for r in map(suite.row, names))


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  experiment: str
  family: str
  what: str
  cost: float
  overrides: dict  # flat: {"optimizer.warmup_steps": 0}


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str
  path: pathlib.Path
  config: ml_collections.ConfigDict
  rows: tuple[Row, ...]

  @property
  def seeds(self) -> tuple[int, ...]:
    return tuple(int(s) for s in self.config.seeds)

  def row(self, name: str) -> Row:
    for r in self.rows:
      if r.name == name:
        return r
    raise UserError(f"unknown row {name!r} in suite {self.name}; its rows: "
                    f"{', '.join(r.name for r in self.rows)}")


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One (row, seed) at one budget: where it runs and the command that makes it."""
  row: Row
  seed: int
  epochs: float
  workdir: pathlib.Path
  log: pathlib.Path
  command: tuple[str, ...]

  @property
  def label(self) -> str:
    return f"{self.row.name} seed {self.seed}"

  def finished(self) -> bool:
    return (self.workdir / "report.json").is_file()

  def started(self) -> bool:
    checkpoints = self.workdir / "checkpoints"
    return checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())


def flatten(nested, prefix: str = "") -> dict:
  """{"probe": {"seeds": 3}} -> {"probe.seeds": 3} (ConfigDicts too)."""
  out = {}
  for key, value in (nested.items() if nested is not None else ()):
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def load_suite(path) -> Suite:
  """Loads and checks a suite file; every problem is a one-line UserError naming the fix."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f"suite file {path} does not exist (suites live in experiments/suites/)")
  spec = importlib.util.spec_from_file_location(f"_suite_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise UserError(f"suite file {path} defines no get_config() (see experiments/suites/)")
  config = module.get_config()
  missing = [key for key in REQUIRED if key not in config]
  if missing:
    raise UserError(f"suite file {path} is missing key(s) {', '.join(missing)}; every suite "
                    f"declares {', '.join(REQUIRED)}")
  name = config.get("name") or path.stem
  rows = tuple(_checked_row(path, entry) for entry in config.rows)
  if not rows:
    raise UserError(f"suite file {path} declares no rows")
  names = [r.name for r in rows]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise UserError(f"suite file {path}: row name(s) {', '.join(twice)} appear twice")
  if not config.seeds or len(set(config.seeds)) != len(config.seeds):
    raise UserError(f"suite file {path}: seeds must be distinct integers, got {tuple(config.seeds)}")
  return Suite(name, path, config, rows)


def _checked_row(path: pathlib.Path, entry) -> Row:
  if not isinstance(entry, dict) or not {"name", "experiment", "family"} <= set(entry):
    raise UserError(f"suite file {path}: a row is {entry!r}; write rows with "
                    "row(name, experiment, family, what)")
  name, family = entry["name"], entry["family"]
  if name in RESERVED_ROW_NAMES or not name.replace("_", "").replace("-", "").isalnum():
    raise UserError(f"suite file {path}: row name {name!r} must be letters, digits, _ or - and "
                    f"not one of {', '.join(RESERVED_ROW_NAMES)} (directories of their own)")
  if family not in FAMILIES:
    raise UserError(f"suite file {path}: row {name!r} has family {family!r}; valid: "
                    f"{', '.join(FAMILIES)}")
  experiment_file = pathlib.Path(entry["experiment"].split(":", 1)[0])
  if not experiment_file.is_file():
    raise UserError(f"suite file {path}: row {name!r}: experiment file {experiment_file} not found "
                    "(paths are relative to the current directory: run from the repository root)")
  return Row(name, entry["experiment"], family, entry.get("what", ""), float(entry.get("cost", 1.0)),
             flatten(entry.get("overrides") or {}))


def select_rows(suite: Suite, only: str = "") -> list[Row]:
  """The rows ``--only=NAME[,NAME]`` names (all when empty), in suite order."""
  names = [n.strip() for n in only.split(",") if n.strip()]
  for n in names:
    suite.row(n)  # a one-line error listing the rows
  return [r for r in suite.rows if not names or r.name in names]


def parse_seeds(text: str, suite: Suite) -> tuple[int, ...]:
  """``--seeds=0,1,2`` (the suite's seeds when empty)."""
  if not text.strip():
    return suite.seeds
  try:
    return tuple(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
  except ValueError:
    raise UserError(f"--seeds={text}: give comma-separated integers, e.g. --seeds=0,1,2") from None


def parse_check(text: str, suite: Suite) -> tuple[Row, int]:
  """``--check=ROW:SEED`` -> (the row, the seed)."""
  name, sep, seed = text.partition(":")
  if not sep or not name or not seed.strip().lstrip("-").isdigit():
    raise UserError(f"--check={text}: give ROW:SEED, e.g. --check={suite.rows[0].name}:"
                    f"{suite.seeds[0]}")
  return suite.row(name), int(seed)


def run_overrides(suite: Suite, row: Row, seed: int, epochs: float) -> dict:
  """The config overrides of one run, in the order they apply (later keys win)."""
  c = suite.config
  shared = {"dataset": c.dataset, "encoder": c.encoder,
            **flatten({"encoders": {c.encoder: c.get("encoder_args") or {}}}),
            "epochs": float(epochs), "steps": int(c.get("steps", 0) or 0),
            **flatten(c.get("protocol") or {})}
  return {**shared, **row.overrides, c.get("seed_key", "seed"): int(seed)}


def override_flag(key: str, value) -> str:
  """``--config.KEY=VALUE`` as the pretraining CLI parses it: strings as they are, anything else
  (numbers, booleans, tuples) as a Python literal."""
  text = value if isinstance(value, str) else repr(tuple(value) if isinstance(value, list) else value)
  return f"--config.{key}={text}"


def suite_dir(root, suite: Suite) -> pathlib.Path:
  return pathlib.Path(root) / suite.name


def plan(suite: Suite, root, rows=None, seeds=None, epochs: float | None = None,
         scratch: str | None = None) -> list[RunSpec]:
  """The runs of ``rows`` x ``seeds`` (default: all) at ``epochs`` (default: the suite's budget).
  Other budgets go to ``curve/epochs<E>/``; ``scratch`` (``"check"``) to a directory of its own."""
  base = suite_dir(root, suite)
  epochs = float(suite.config.epochs if epochs is None else epochs)
  if scratch:
    base = base / scratch
  elif epochs != float(suite.config.epochs):
    base = base / "curve" / f"epochs{epochs:g}"
  out = []
  for r in (suite.rows if rows is None else rows):
    for seed in (suite.seeds if seeds is None else seeds):
      workdir = base / r.name / f"seed{seed}"
      command = (sys.executable, "-m", "ssljax.pretrain", f"--config={r.experiment}",
                 f"--workdir={workdir}",
                 *(override_flag(k, v) for k, v in run_overrides(suite, r, seed, epochs).items()))
      log = base / "logs" / f"{r.name}-seed{seed}.log"
      out.append(RunSpec(r, int(seed), epochs, workdir, log, command))
  return out


# A finished run's figures depend on its evaluation settings too (unlike a resumed run's
# checkpoints), so of its saved config only logging and device placement may differ from the suite's.
FINISHED_FREE_KEYS = {"log_every", "checkpoint_every", "keep_checkpoints", "devices", "cpu_devices",
                      "nonfinite"}


def config_conflicts(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
  """'key: saved -> now' for each setting of a finished run's saved config (config.json, or a
  results record's ``config``) that differs from ``config``, the one its command gives now."""
  import json
  from ssljax.base_config import base_config
  from ssljax.config_checks import resume_conflicts
  from ssljax.rundir import PROVENANCE, resolved_config
  as_json = lambda d: json.loads(json.dumps(d))  # tuples -> lists, as config.json holds them
  saved = {k: v for k, v in saved.items() if k != PROVENANCE}
  defaults = base_config()
  defaults.encoder, defaults.objective = config.encoder, config.objective
  return resume_conflicts(saved, as_json(resolved_config(config)),
                          as_json(resolved_config(defaults)), ("wandb.",), FINISHED_FREE_KEYS)


def stale_runs(runs: list[RunSpec], configs: list[ml_collections.ConfigDict]) -> list[str]:
  """'label: key: saved -> now' for each run whose saved config.json differs from the config its
  command gives now (the suite file changed since): its figures are not the table's any more."""
  from ssljax.rundir import read_config
  out = []
  for run, config in zip(runs, configs):
    saved = read_config(run.workdir, missing_ok=True)
    conflicts = config_conflicts(saved, config) if saved else []
    if conflicts:
      out.append(f"{run.label}: {', '.join(conflicts[:3])}")
  return out


def check_up_to_date(runs: list[RunSpec]) -> None:
  """A UserError when a finished run of ``runs`` was made under another config than the suite's."""
  finished = [r for r in runs if r.finished()]
  stale = stale_runs(finished, check_commands(finished))
  if stale:
    raise UserError(f"{len(stale)} finished run(s) were made with another config than the suite "
                    f"gives them now ({'; '.join(stale[:3])}{'; ...' if len(stale) > 3 else ''}); "
                    "delete their directories to rerun them, or restore the suite file's values")


def check_commands(runs: list[RunSpec]) -> list[ml_collections.ConfigDict]:
  """Parses every run's command the way ``ssljax.pretrain`` will (config file and overrides), so a
  typo in a suite fails in seconds rather than after an hour of runs; returns the configs."""
  from ssljax.sweep import parse_command
  configs = []
  for run in runs:
    try:
      configs.append(parse_command(list(run.command)))
    except UserError as e:
      raise UserError(f"row {run.row.name!r} (seed {run.seed}): {e}") from None
  return configs
