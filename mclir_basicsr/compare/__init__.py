"""Does the method help, and what does it cost? Train a baseline and a method run (SPN, CR, the
uncertainty-weighted loss, or several) with the same seed and budget.

    python -m mclir_basicsr.compare BASELINE.yml METHOD.yml [--out DIR] [--seeds 0 1 2] [--iters N]
    python -m mclir_basicsr.compare OPT.yml --spn on     # OPT.yml is the baseline: the method run adds SPN
    python -m mclir_basicsr.compare OPT.yml --cr on      # ... adds CR (AECR-Net; default pixel, weight 0.1)
    python -m mclir_basicsr.compare OPT.yml --spn off    # OPT.yml uses a method: the baseline run drops it
    python -m mclir_basicsr.compare ... --equal-time     # also a baseline given the method run's training time
    python -m mclir_basicsr.compare ... --budget-seconds S   # both arms: the iterations that fit in S seconds

"The method" is whatever the second file adds over the baseline (``train.spn_opt`` or the official
``neg_*`` keys, ``train.cr_opt``, ``train.uncertainty_opt``); the baseline must have none of them. Titles,
tables and plots name it ('SPN', 'CR', 'SPN+uncertainty', ...); in the files its runs keep the label
``spn`` (runs.csv, summary.json, checkpoints/spn_seed<S>.pth, the ``*_spn`` columns), as before.
With one option file, the baseline is ModelContrastiveModel without the method (SRModel's training with
the add-on's ``train.amp`` and exact resume), so both arms share precision, data path and resume.
All runs (per seed) go through BasicSR's own pipeline as subprocesses
(``python -m mclir_basicsr.train`` then ``python -m mclir_basicsr.test``) with the output folder as
working directory, so ``experiments/``, ``tb_logger/`` and ``results/`` land there. Of the option
files only ``name``, ``manual_seed``, ``train.total_iter`` (``--iters``), ``val.val_freq``
(``--val-freq``) and paths (made absolute; ``resume_state`` cleared) are rewritten, so any
architecture and task (SR or scale-1 restoration) works; runs whose iteration count the tool
chooses (equal time, budget) get their learning-rate schedule stretched with it
(:func:`stretch_schedule`). Metrics come from BasicSR's outputs: the validation curve from the
training log, per-image PSNR/SSIM (``basicsr.metrics``) from the images the test pipeline saves for
the final checkpoint, seconds per iteration from the logged iteration times (validation excluded).
Written into ``--out``:

    table.csv / table.md      per validation image and mean (mean over seeds): PSNR, SSIM, deltas
                              (at equal iterations, and at equal time when that baseline ran)
    runs.csv                  per run: seed, iterations, mean PSNR/SSIM, seconds per iteration, wall time
    psnr_curve.png            validation PSNR against iterations (top), method - baseline delta (bottom)
    crops.png                 input (upscaled), baseline, method, ground truth side by side
    checkpoints/              the final network of every run (<baseline|spn|baseline_eqtime>_seed<S>.pth)
    summary.json              all of the above as data

Modules, one job each: options (editing option dicts; :class:`CompareError`), logs (BasicSR log parsing), runner
(subprocesses, progress), evaluation (validation images, metrics), equal_time (iterations at equal
time, calibration), report (statistics, CSV, markdown), plots, pipeline (:func:`compare`), cli,
methods (several method arms against one shared baseline: scripts/compare_methods.py).
"""
from mclir_basicsr.compare.cli import build_parser, main, run_cli
from mclir_basicsr.compare.equal_time import calibrate, equal_time_iters
from mclir_basicsr.compare.evaluation import collect, image_metrics, load_val_images
from mclir_basicsr.compare.logs import parse_iter_line, parse_train_log
from mclir_basicsr.compare.methods import compare_methods
from mclir_basicsr.compare.options import (
    CompareError,
    add_cr,
    add_sections,
    add_spn,
    has_method,
    has_spn,
    load_options,
    method_name,
    method_parts,
    metric_settings,
    rewrite_options,
    save_options,
    spn_description,
    stretch_schedule,
    strip_method,
    strip_spn,
    test_options,
    train_amp,
    val_datasets,
)
from mclir_basicsr.compare.pipeline import compare
from mclir_basicsr.compare.report import EQTIME, RUN_LABELS, markdown, summarize
from mclir_basicsr.compare.runner import Run, plan_run, plan_runs, run_all

__all__ = ['CompareError', 'EQTIME', 'RUN_LABELS', 'Run', 'add_cr', 'add_sections', 'add_spn', 'build_parser',
           'calibrate', 'collect', 'compare', 'compare_methods', 'equal_time_iters', 'has_method', 'has_spn',
           'image_metrics', 'load_options', 'load_val_images', 'main', 'markdown', 'method_name', 'method_parts',
           'metric_settings', 'parse_iter_line', 'parse_train_log', 'plan_run', 'plan_runs', 'rewrite_options',
           'run_all', 'run_cli', 'save_options', 'spn_description', 'stretch_schedule', 'strip_method', 'strip_spn',
           'summarize', 'test_options', 'train_amp', 'val_datasets']
