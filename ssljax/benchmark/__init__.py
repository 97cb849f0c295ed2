"""Results tables: a suite file declares rows (experiment config + overrides), one shared encoder, data,
budget and seeds; ``python -m ssljax.benchmark --suite=FILE`` makes one ordinary run directory per
(row, seed), skips finished ones, resumes interrupted ones, and aggregates whatever is finished into
``experiments/results/<suite>.{json,md,png}`` (mean ± 95% CI over pretraining seeds).

- ``suite``: the suite file's format, its checks and the run plan (directories, commands);
- ``runner``: running the plan (one ``python -m ssljax.pretrain`` process per run), the estimate,
  ``--check`` (reproduce one run);
- ``aggregate``: figures per run, statistics per row, the controls, the JSON document;
- ``directions``: the literature's published directions and whether the table agrees;
- ``results_page``: the Markdown page and the README's results section;
- ``plots``: the probe bar chart and the learning curve.
"""
