"""Sweeps: a W&B sweep YAML whose parameter names are config paths, run by a W&B agent, or, without
W&B, run here (a grid in order, or seeded random draws), one run directory each, then compared.

    python -m ssljax.sweep SWEEP.yaml [--count=N] [--seed=S] [--local] [--dry_run] [--root=DIR] \
        [-- --config.steps=300 ...]          # extra flags for every run (e.g. a smaller budget)

The YAML is W&B's own format (``method``, ``metric``, ``parameters``, ``command``), so the file that
drives ``wandb agent`` is the file this runs locally. Parameter names are ``config.<path>``, so W&B's
``${args}`` macro (``--NAME=VALUE`` per parameter) becomes ``--config.optimizer.lr=0.001``, exactly
the pretraining CLI's override syntax. The command gives each run ``--workdir=.../$WANDB_RUN_ID``;
``ssljax.pretrain`` expands it (the agent starts commands without a shell).

Before anything starts, every expanded command is parsed the way ``ssljax.pretrain`` will parse it
(ml_collections config flags), so a typo in a 16-run sweep fails in a second, not after run 1.
W&B is used when an API key is configured and ``WANDB_MODE`` is not offline/disabled; otherwise this
says so and runs the sweep locally: ``ROOT/NAME/<run>/`` per run (an existing ``report.json`` means
done: delete the directory to rerun it), then ``python -m ssljax.compare`` over them into
``ROOT/NAME/comparison.md``. Locally, ``method: grid`` runs the grid in order (at most ``--count``);
``method: random`` draws ``--count`` points (required: W&B's random search has no end) from each
parameter's distribution the way W&B does, seeded by ``--seed``; ``method: bayes`` needs W&B's
server and is refused.
"""
from __future__ import annotations

import copy
import itertools
import math
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
    if not isinstance(spec, dict) or not ({"value", "values", "distribution"} & set(spec)
                                          or {"min", "max"} <= set(spec)):
      raise UserError(f"{path}: parameter {name!r} needs 'value', 'values', 'min'/'max' or a "
                      "'distribution'")
  if sweep.get("method", "grid") not in METHODS:
    raise UserError(f"{path}: method {sweep['method']!r} is not a W&B sweep method; use one of "
                    f"{', '.join(METHODS)}")
  if "${args}" not in sweep.get("command", []):
    raise UserError(f"{path}: 'command' must contain ${{args}} (where the parameters go)")
  sweep.setdefault("name", path.stem)
  return sweep


METHODS = ("grid", "random", "bayes")
# The distributions the local runner samples, with W&B's meaning (its `sweeps` library, params.py):
# x uniform in [min, max] (int_uniform: integers, max included); log_uniform: exp(x) with min/max
# the exponents (natural log), log_uniform_values: min/max the values themselves; q_*: x rounded to
# a multiple of q (default 1; an integer q gives integers).
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "q_log_uniform", "q_log_uniform_values")


def grid(sweep: dict, count: int = 0) -> list[dict]:
  """The full grid of the ``value``/``values`` lists, in order; at most ``count`` (0 = all)."""
  names, choices = [], []
  for name, spec in sweep["parameters"].items():
    if "value" in spec:
      values = [spec["value"]]
    elif "values" in spec:
      values = list(spec["values"])
    else:
      raise UserError(f"parameter {name!r} is a distribution (min/max); a grid expands only "
                      "'value'/'values' lists: use method: random with --count=N, or run this "
                      "sweep on W&B")
    names.append(name)
    choices.append(values)
  combos = [dict(zip(names, values)) for values in itertools.product(*choices)]
  return combos[:count] if count else combos


def distribution(name: str, spec: dict) -> str:
  """The parameter's distribution, explicit or inferred as W&B infers it."""
  if "distribution" in spec:
    kind = spec["distribution"]
  elif "value" in spec:
    kind = "constant"
  elif "values" in spec:
    kind = "categorical"
  else:
    ints = all(isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool)
               for k in ("min", "max"))
    kind = "int_uniform" if ints else "uniform"
  if kind not in DISTRIBUTIONS:
    raise UserError(f"parameter {name!r}: distribution {kind!r} is not sampled locally (supported: "
                    f"{', '.join(DISTRIBUTIONS)}); run this sweep on W&B")
  return kind


def sample(name: str, spec: dict, rng: random.Random):
  """One draw of parameter ``name`` from its ``spec``."""
  kind = distribution(name, spec)
  if kind == "constant":
    return spec["value"]
  if kind == "categorical":
    return rng.choices(list(spec["values"]), weights=spec.get("probabilities"))[0]
  if not {"min", "max"} <= set(spec) or not spec["min"] < spec["max"]:
    raise UserError(f"parameter {name!r}: {kind} needs min < max, got min={spec.get('min')!r} "
                    f"max={spec.get('max')!r}")
  low, high = spec["min"], spec["max"]
  if kind == "int_uniform":
    return rng.randint(int(low), int(high))
  if kind.endswith("log_uniform_values"):
    if low <= 0:
      raise UserError(f"parameter {name!r}: {kind} needs min > 0, got {low!r}")
    low, high = math.log(low), math.log(high)
  x = rng.uniform(low, high)
  if "log_uniform" in kind:  # exp(log(high)) can overshoot high by an ulp: clip to the bounds
    x = min(max(math.exp(x), math.exp(low)), math.exp(high))
  if kind.startswith("q_"):
    q = spec.get("q", 1)
    x = round(x / q) * q
    x = int(round(x)) if isinstance(q, int) else x
  return x


def points(sweep: dict, count: int = 0, seed: int = 0) -> list[dict]:
  """The parameter sets a local sweep runs: ``grid`` in order (at most ``count``), ``random``
  ``count`` seeded draws (the first k of them are the same for any count >= k)."""
  method = sweep.get("method", "grid")
  if method == "bayes":
    raise UserError("method: bayes needs W&B (the Bayesian search runs on W&B's server); set "
                    "WANDB_API_KEY or run `wandb login`, or use method: random (with --count=N) "
                    "or grid to run it here")
  if method == "grid":
    return grid(sweep, count)
  if count <= 0:
    raise UserError("method: random draws runs without end (as on W&B); say how many with "
                    "--count=N")
  rng = random.Random(seed)
  return [{name: sample(name, spec, rng) for name, spec in sweep["parameters"].items()}
          for _ in range(count)]


def run_name(params: dict, index: int | None = None) -> str:
  """A directory name from the parameter values: ``lr=0.001,temperature=0.1``,
  ``invariances=flip+scale``; random draws are numbered (``r003,lr=...``): two may coincide."""
  show = lambda v: "+".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
  parts = [f"{name.rsplit('.', 1)[-1]}={show(value)}" for name, value in params.items()]
  if index is not None:
    parts.insert(0, f"r{index:03d}")
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
    raise UserError(f"the command does not parse: {shlex.join(argv[1:])}: "
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


def run_local(sweep: dict, count: int, root: pathlib.Path, dry_run: bool, seed: int = 0,
              why: str | None = None) -> int:
  """Runs the sweep's points one after another; then the comparison report. Returns an exit code.
  ``why``: the reason W&B is not used, said once the sweep is known to run here."""
  from ssljax.compare import write_comparison
  from ssljax.evaluate.figures import format_value
  out = pathlib.Path(root) / sweep["name"]
  numbered = sweep.get("method", "grid") == "random"
  plan = [(params, out / run_name(params, i if numbered else None))
          for i, params in enumerate(points(sweep, count, seed))]
  commands = [expand_command(sweep, params, str(workdir)) for params, workdir in plan]
  for command in commands:
    parse_command(command)
  if why:
    print(f"W&B unavailable ({why}): running the sweep locally instead.")
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
    print(f"then: {sys.executable} -m ssljax.compare <the run dirs> --out={out}")
    return 0
  if done:
    document = write_comparison(done, out)
    best = document["runs"][0]
    print(f"comparison of {len(done)} run(s): {out / 'comparison.md'}; best by probe top-1: "
          f"{best['run']} ({format_value(best['probe_top1'])})")
  if failed:
    print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
  return 1 if failed else 0


def agent_invocation(sweep_path: str, count: int = 0, environ: dict | None = None
                     ) -> tuple[list[str], dict]:
  """The command and environment that start a W&B agent on ``sweep_path`` with this interpreter.

  The agent runs each trial's ``${interpreter}`` as a bare ``python`` looked up on PATH, so outside
  an activated virtualenv it would find another Python (or none). Starting the agent as
  ``sys.executable -m wandb`` and putting this interpreter's directory first on PATH makes both
  the agent and its trials use the interpreter that has ssljax installed.
  """
  env = dict(os.environ if environ is None else environ)
  bin_dir = str(pathlib.Path(sys.executable).parent)
  if not (pathlib.Path(bin_dir) / "python").exists():
    raise UserError(f"W&B's agent starts each run as `python`, and {bin_dir} (this interpreter's "
                    "directory) has none; run from a virtualenv (./launch/sweep.sh creates .venv)")
  rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
  env["PATH"] = os.pathsep.join([bin_dir, *rest])
  command = [sys.executable, "-m", "wandb", "agent", *(["--count", str(count)] if count else []),
             sweep_path]
  return command, env


def run_wandb(sweep: dict, count: int, dry_run: bool) -> int:
  """Creates the W&B sweep and runs an agent on it here (more agents: ``wandb agent ID``)."""
  # One parameter set is enough to catch a bad key: the first value, or a draw W&B could make.
  rng = random.Random(0)
  first = {}
  for name, spec in sweep["parameters"].items():
    try:
      first[name] = spec["values"][0] if "values" in spec else sample(name, spec, rng)
    except UserError:  # a distribution only W&B samples: its location parameter has the type
      first[name] = spec.get("min", spec.get("mu", spec.get("a")))
  parse_command(expand_command(sweep, first))
  project, entity = sweep.get("project", "ssljax"), sweep.get("entity")
  definition = {k: v for k, v in sweep.items() if k not in ("project", "entity")}
  if dry_run:
    agent, _ = agent_invocation("SWEEP_ID", count)
    print(f"would create a W&B sweep in {entity + '/' if entity else ''}{project}: "
          f"{sweep['name']} ({sweep.get('method')}, metric {sweep.get('metric', {}).get('name')})")
    print("then run:", shlex.join(agent))
    return 0
  import wandb
  sweep_id = wandb.sweep(definition, project=project, entity=entity)
  path = "/".join(p for p in (entity, project, sweep_id) if p)
  print(f"W&B sweep {path}; more agents on other machines: wandb agent {path}", flush=True)
  agent, env = agent_invocation(path, count)
  return subprocess.run(agent, env=env).returncode


def main(argv):
  if len(argv) < 2:
    raise UserError("usage: python -m ssljax.sweep SWEEP.yaml [--count=N] [--seed=S] [--local] "
                    "[--dry_run] [-- --config.key=value ...]")
  f = flags.FLAGS
  sweep = with_extra_args(load_sweep(argv[1]), argv[2:])
  reason = None if f.local else wandb_unavailable()
  if f.local or reason:
    return run_local(sweep, f.count, pathlib.Path(f.root), f.dry_run, f.seed, why=reason)
  return run_wandb(sweep, f.count, f.dry_run)


def define_flags() -> None:
  """Command-line flags, defined only when this is the program (the module is also a library)."""
  flags.DEFINE_integer("count", 0, "At most this many runs (0 = the whole grid); method: random "
                       "needs it locally.")
  flags.DEFINE_integer("seed", 0, "Local method: random: the sampling seed (same seed, same runs).")
  flags.DEFINE_bool("local", False, "Run the sweep here even if W&B is available.")
  flags.DEFINE_bool("dry_run", False, "Print what would run; run nothing.")
  flags.DEFINE_string("root", "runs/sweeps", "Local sweeps: run directories go to ROOT/NAME/.")
  flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def entry_point():
  """Runs ``main``; a UserError becomes one line on stderr and exit code 2."""
  define_flags()
  run_app(main)


if __name__ == "__main__":
  entry_point()
