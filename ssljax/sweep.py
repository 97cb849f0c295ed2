"""Sweeps: a W&B sweep YAML whose parameter names are config paths, run by a W&B agent, or, without
W&B, expanded into a grid and run here, one run directory each, then compared.

    python -m ssljax.sweep SWEEP.yaml [--count=N] [--local] [--dry_run] [--root=runs/sweeps] \
        [-- --config.steps=300 ...]          # extra flags for every run (e.g. a smaller budget)

The YAML is W&B's own format (``method``, ``metric``, ``parameters``, ``command``), so the file that
drives ``wandb agent`` is the file this runs locally. Parameter names are ``config.<path>``, so W&B's
``${args}`` macro (``--NAME=VALUE`` per parameter) becomes ``--config.optimizer.lr=0.001``, exactly
the pretraining CLI's override syntax. The command gives each run ``--workdir=.../$WANDB_RUN_ID``;
``ssljax.pretrain`` expands it (the agent starts commands without a shell).

Before anything starts, every expanded command is parsed the way ``ssljax.pretrain`` will parse it
(ml_collections config flags), so a typo in a 16-run sweep fails in a second, not after run 1.
W&B is used when an API key is configured and ``WANDB_MODE`` is not offline/disabled; otherwise this
says so and runs the grid locally: ``ROOT/NAME/<run>/`` per run (an existing ``report.json`` means
done: delete the directory to rerun it), then ``python -m ssljax.report`` over them into
``ROOT/NAME/comparison.md``.
"""
from __future__ import annotations

import copy
import itertools
import os
import pathlib
import random
import re
import shlex
import subprocess
import sys

import yaml
from absl import flags

from ssljax.errors import UserError, run_app


def load_sweep(path) -> dict:
  path = pathlib.Path(path)
  if not path.is_file():
    raise UserError(f"sweep file {path} does not exist (see experiments/sweeps/)")
  try:
    sweep = yaml.safe_load(path.read_text())
  except yaml.YAMLError as e:
    raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
  if not isinstance(sweep, dict) or not isinstance(sweep.get("parameters"), dict):
    raise UserError(f"{path}: a sweep needs a 'parameters' mapping (W&B sweep format)")
  for name, spec in sweep["parameters"].items():
    if not name.startswith("config."):
      raise UserError(f"{path}: parameter {name!r} must be a config path, e.g. config.optimizer.lr")
    if not isinstance(spec, dict) or not ({"value", "values"} & set(spec) or {"min", "max"} <= set(spec)):
      raise UserError(f"{path}: parameter {name!r} needs 'value', 'values' or 'min'/'max'")
  if "${args}" not in sweep.get("command", []):
    raise UserError(f"{path}: 'command' must contain ${{args}} (where the parameters go)")
  sweep.setdefault("name", path.stem)
  return sweep


def grid(sweep: dict, count: int = 0, seed: int = 0) -> list[dict]:
  """The parameter combinations to run locally: the full grid in order for ``method: grid``; for
  ``random``/``bayes``, the grid shuffled (seeded). At most ``count`` (0 = all)."""
  names, choices = [], []
  for name, spec in sweep["parameters"].items():
    if "value" in spec:
      values = [spec["value"]]
    elif "values" in spec:
      values = list(spec["values"])
    else:
      raise UserError(f"parameter {name!r} is a distribution (min/max); the local runner expands "
                      "only 'value'/'values' lists; run this sweep on W&B")
    names.append(name)
    choices.append(values)
  combos = [dict(zip(names, values)) for values in itertools.product(*choices)]
  if sweep.get("method", "grid") != "grid":
    random.Random(seed).shuffle(combos)
  return combos[:count] if count else combos


def run_name(params: dict) -> str:
  """A directory name from the parameter values: ``lr=0.001,temperature=0.1``,
  ``invariances=flip+scale``."""
  show = lambda v: "+".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
  parts = [f"{name.rsplit('.', 1)[-1]}={show(value)}" for name, value in params.items()]
  return re.sub(r"[^\w.=,+-]", "_", ",".join(parts)) or "run"


def with_extra_args(sweep: dict, extra: list[str]) -> dict:
  """The sweep with ``extra`` flags inserted before ``${args}`` (swept values still win)."""
  sweep = copy.deepcopy(sweep)
  i = sweep["command"].index("${args}")
  sweep["command"][i:i] = list(extra)
  return sweep


def expand_command(sweep: dict, params: dict, workdir: str | None = None,
                   interpreter: str = sys.executable) -> list[str]:
  """The command W&B's agent would run for ``params`` (macros filled the agent's way), with
  ``--workdir`` replaced by ``workdir`` when given (local runs)."""
  args = [f"--{name}={value}" for name, value in params.items()]
  macros = {"${env}": [], "${interpreter}": [interpreter], "${program}": [sweep.get("program", "")],
            "${args}": args, "${args_no_hyphens}": [a[2:] for a in args]}
  command = []
  for part in sweep["command"]:
    part = str(part)
    if part.startswith("${") and part.endswith("}"):
      if part not in macros:
        raise UserError(f"sweep command macro {part} is not supported locally; use "
                        f"{', '.join(macros)}")
      command += macros[part]
    elif workdir is not None and part.startswith("--workdir="):
      continue
    else:
      command.append(part)
  if workdir is not None:
    command.append(f"--workdir={workdir}")
  return command


def parse_command(command: list[str]):
  """Parses a ``python -m ssljax.pretrain`` command's flags exactly as that module will (its
  ``--config`` file and every ``--config.*`` override); returns the resulting ConfigDict."""
  from ml_collections import config_flags
  argv = ["ssljax.pretrain"] + command[command.index("ssljax.pretrain") + 1:] \
      if "ssljax.pretrain" in command else ["ssljax.pretrain", *command]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=argv)
  for name in ("workdir",):
    flags.DEFINE_string(name, None, "", flag_values=fv)
  for name in ("debug", "multihost"):
    flags.DEFINE_bool(name, False, "", flag_values=fv)
  try:
    fv(argv, known_only=False)
    config = fv.config
  except Exception as e:  # absl/ml_collections raise Error, KeyError, AttributeError...
    raise UserError(f"sweep command does not parse: {shlex.join(argv[1:])}: "
                    f"{str(e).strip().splitlines()[0]}") from None
  if config is None:
    raise UserError(f"sweep command has no --config=FILE: {shlex.join(argv[1:])}")
  return config


def wandb_unavailable() -> str | None:
  """Why a W&B sweep cannot run here, or None if it can."""
  from ssljax.tracking import _has_wandb_key
  mode = os.environ.get("WANDB_MODE", "")
  if mode in ("offline", "disabled", "dryrun"):
    return f"WANDB_MODE={mode}"
  if not _has_wandb_key():
    return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
  return None


def run_local(sweep: dict, count: int, root: pathlib.Path, dry_run: bool) -> int:
  """Runs the grid one run after another; then the comparison report. Returns an exit code."""
  from ssljax.report import _f as _fmt, write_comparison
  out = pathlib.Path(root) / sweep["name"]
  plan = [(params, out / run_name(params)) for params in grid(sweep, count)]
  commands = [expand_command(sweep, params, str(workdir)) for params, workdir in plan]
  for command in commands:
    parse_command(command)
  print(f"local sweep {sweep['name']}: {len(plan)} run(s) under {out}/")
  failed, done = [], []
  for i, ((params, workdir), command) in enumerate(zip(plan, commands), 1):
    print(f"[{i}/{len(plan)}] {shlex.join(command)}", flush=True)
    if dry_run:
      continue
    if (workdir / "report.json").is_file():
      print(f"  done already ({workdir / 'report.json'} exists)")
    elif subprocess.run(command).returncode != 0:
      failed.append(str(workdir))
      continue
    done.append(workdir)
  if dry_run:
    print(f"then: {sys.executable} -m ssljax.report <the run dirs> --out={out}")
    return 0
  if done:
    document = write_comparison(done, out)
    best = document["runs"][0]
    print(f"comparison of {len(done)} run(s): {out / 'comparison.md'}; best by probe top-1: "
          f"{best['run']} ({_fmt(best['probe_top1'])})")
  if failed:
    print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
  return 1 if failed else 0


def run_wandb(sweep: dict, count: int, dry_run: bool) -> int:
  """Creates the W&B sweep and runs an agent on it here (more agents: ``wandb agent ID``)."""
  # One combination is enough to catch a bad key; distributions are checked at their minimum.
  first = {name: spec.get("value", (spec.get("values") or [spec.get("min")])[0])
           for name, spec in sweep["parameters"].items()}
  parse_command(expand_command(sweep, first))
  project, entity = sweep.get("project", "ssljax"), sweep.get("entity")
  definition = {k: v for k, v in sweep.items() if k not in ("project", "entity")}
  agent = ["wandb", "agent", *(["--count", str(count)] if count else [])]
  if dry_run:
    print(f"would create a W&B sweep in {entity + '/' if entity else ''}{project}: "
          f"{sweep['name']} ({sweep.get('method')}, metric {sweep.get('metric', {}).get('name')})")
    print("then run:", shlex.join(agent + ["SWEEP_ID"]))
    return 0
  import wandb
  sweep_id = wandb.sweep(definition, project=project, entity=entity)
  path = "/".join(p for p in (entity, project, sweep_id) if p)
  print(f"W&B sweep {path}; more agents on other machines: wandb agent {path}", flush=True)
  return subprocess.run(agent + [path]).returncode


def main(argv):
  if len(argv) < 2:
    raise UserError("usage: python -m ssljax.sweep SWEEP.yaml [--count=N] [--local] [--dry_run] "
                    "[-- --config.key=value ...]")
  f = flags.FLAGS
  sweep = with_extra_args(load_sweep(argv[1]), argv[2:])
  reason = None if f.local else wandb_unavailable()
  if f.local or reason:
    if reason:
      print(f"W&B unavailable ({reason}): running the sweep grid locally instead.")
    return run_local(sweep, f.count, pathlib.Path(f.root), f.dry_run)
  return run_wandb(sweep, f.count, f.dry_run)


def define_flags() -> None:
  """Command-line flags, defined only when this is the program (the module is also a library)."""
  flags.DEFINE_integer("count", 0, "At most this many runs (0 = the whole grid).")
  flags.DEFINE_bool("local", False, "Run the grid here even if W&B is available.")
  flags.DEFINE_bool("dry_run", False, "Print what would run; run nothing.")
  flags.DEFINE_string("root", "runs/sweeps", "Local sweeps: run directories go to ROOT/NAME/.")
  flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def entry_point():
  """Runs ``main``; a UserError becomes one line on stderr and exit code 2."""
  define_flags()
  run_app(main)


if __name__ == "__main__":
  entry_point()
