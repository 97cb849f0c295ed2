"""Fill in a results table: ``python -m ssljax.benchmark --suite=experiments/suites/fmnist_cnn.py``.

    python -m ssljax.benchmark --suite=FILE [--only=ROW[,ROW]] [--seeds=0,1,2] [--dry_run]
    python -m ssljax.benchmark --suite=FILE --curve [--only=ROW[,ROW]]   # the learning curve
    python -m ssljax.benchmark --suite=FILE --check=ROW:SEED             # does one run reproduce?

Runs go to ``--root/<suite>/<row>/seed<k>/`` (finished ones are skipped, interrupted ones resume);
the table to ``--results/<suite>.{json,md,png}`` and between the README's markers. The logic is
``ssljax.benchmark.run_suite``; this file parses the flags and calls it.
"""
from __future__ import annotations


from absl import flags

from ssljax.errors import UserError, run_app

_SUITE = flags.DEFINE_string("suite", None, "Suite file (experiments/suites/*.py).")
_ONLY = flags.DEFINE_string("only", "", "Comma-separated row names to run (default: every row).")
_SEEDS = flags.DEFINE_string("seeds", "", "Comma-separated pretraining seeds (default: the suite's).")
_CHECK = flags.DEFINE_string("check", "", "ROW:SEED: rerun that run into a scratch directory and "
                             "report whether it reproduces the stored figures.")
_CURVE = flags.DEFINE_bool("curve", False, "Run the learning curve (the suite's curve.epochs, one "
                           "seed) instead of the table.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the plan, the estimate and the commands; run "
                             "nothing.")
_ROOT = flags.DEFINE_string("root", "runs/suites", "Run directories go to ROOT/<suite>/.")
_RESULTS = flags.DEFINE_string("results", "experiments/results", "Where the table, its JSON and "
                               "plots go.")
_README = flags.DEFINE_string("readme", "README.md", "README whose results markers get the table "
                              "('' = none).")
_DEBUG = flags.DEFINE_bool("debug", False, "Show full tracebacks instead of one-line errors.")


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _SUITE.value:
    raise UserError("--suite is required, e.g. --suite=experiments/suites/fmnist_cnn.py")
  from ssljax.benchmark import run_suite
  from ssljax.benchmark.suite import load_suite, parse_check, parse_seeds, select_rows
  suite = load_suite(_SUITE.value)
  if _CHECK.value:
    row, seed = parse_check(_CHECK.value, suite)
    return 0 if run_suite.check(suite, row, seed, _ROOT.value, _RESULTS.value) else 1
  rows = select_rows(suite, _ONLY.value)
  if _CURVE.value:
    outcome = run_suite.run_curve(suite, _ROOT.value, _RESULTS.value, _README.value,
                                  rows if _ONLY.value else None, _DRY_RUN.value)
  else:
    outcome = run_suite.run_table(suite, rows, parse_seeds(_SEEDS.value, suite), _ROOT.value,
                                  _RESULTS.value, _README.value, _DRY_RUN.value)
  return 1 if outcome.failed else 0


def entry_point():
  """Runs ``main``; a UserError becomes one line on stderr and exit code 2."""
  run_app(main)


if __name__ == "__main__":
  entry_point()
