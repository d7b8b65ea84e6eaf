"""Reading BasicSR's training logs: iteration lines (iteration, ETA, seconds per iteration, losses)
and the validation curve."""
import glob
import os
import re
from collections import OrderedDict

# an add-on run's line adds its speed and peak memory inside the time bracket: ", 4.7 it/s, peak mem: ..."
_ITER_RE = re.compile(r'iter:\s*([\d,]+).*?\[eta: ([^,\]]+), time \(data\): ([\d.]+) \(([\d.]+)\)[^\]]*\]\s*(.*)')
_LOSS_RE = re.compile(r'(\w+): ([-+\d.eE]+|nan|inf)')
_START_RE = re.compile(r'Start training from epoch: \d+, iter: (\d+)')
_VAL_RE = re.compile(r'Validation (\S+)')
METRIC_RE = re.compile(r'# (\w+): ([-+\d.eE]+|nan|inf)')


def parse_iter_line(line):
    """(iteration, eta string, seconds per iteration, {loss: value}) of a BasicSR log line, or None."""
    m = _ITER_RE.search(line)
    if not m:
        return None
    losses = {k: float(v) for k, v in _LOSS_RE.findall(m.group(5))}
    return int(m.group(1).replace(',', '')), m.group(2).strip(), float(m.group(3)), losses


def _metric_block(lines, i):
    """The ``# metric: value`` lines following a validation line at i: ({metric: value}, index after)."""
    values, j = {}, i + 1
    while j < len(lines) and METRIC_RE.search(lines[j]) and 'INFO' not in lines[j]:
        k, v = METRIC_RE.search(lines[j]).groups()
        values[k] = float(v)
        j += 1
    return values, j


def _add_points(curves, dataset, it, values):
    for k, v in values.items():
        points = curves.setdefault(dataset, OrderedDict()).setdefault(k, [])
        if not (points and points[-1][0] == it):
            points.append((it, v))


def parse_train_log(text, val_freq, total_iter):
    """From a BasicSR training log: {'curves': {dataset: {metric: [(iter, value)]}}, 'iter_times': [...],
    'losses': [(iter, {name: value})]}. Validations happen at multiples of val_freq and once more at
    the end (counted as total_iter; a duplicate of the last one is dropped)."""
    curves, iter_times, losses = OrderedDict(), [], []
    last_val, ended, current = OrderedDict(), False, 0
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _START_RE.search(line)
        if m:
            current = int(m.group(1))
            last_val = OrderedDict()
        parsed = parse_iter_line(line)
        if parsed:
            iter_times.append(parsed[2])
            losses.append((parsed[0], parsed[3]))
        ended = ended or 'End of training' in line
        m = _VAL_RE.search(line)
        if m and 'INFO' in line:
            dataset = m.group(1)
            it = total_iter if ended else (last_val.get(dataset, current) // val_freq + 1) * val_freq
            values, i = _metric_block(lines, i)
            last_val[dataset] = it
            _add_points(curves, dataset, it, values)
            continue
        i += 1
    return {'curves': curves, 'iter_times': iter_times, 'losses': losses}


def latest_file(pattern):
    files = glob.glob(pattern)
    return max(files, key=os.path.getmtime) if files else None
