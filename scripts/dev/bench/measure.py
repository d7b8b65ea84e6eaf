"""What a worker process measures with: a timer (seconds and minor page faults per call, CUDA synchronised),
peak and current memory, the random batches the models train on, and the process's start."""
import logging
import os
import resource
import sys
import time

import torch
from basicsr.utils import get_root_logger


def _peak_rss_mb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == 'darwin' else peak / 1024  # bytes on macOS, KiB on Linux


def rss_now_mb():
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except OSError:
        return _peak_rss_mb()


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timer(device, faults=None):
    """time(fn, n): seconds per call of n calls of fn (synchronising CUDA before and after). With a
    dict `faults`, faults[fn] gets the process's minor page faults per call (memory the kernel had to
    map in, e.g. large buffers malloc gave back and got again)."""
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

    def time_it(fn, n):
        sync()
        f0, t0 = _minor_faults(), time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        seconds = (time.perf_counter() - t0) / max(n, 1)
        if faults is not None:
            faults.setdefault(fn, []).append((_minor_faults() - f0) / max(n, 1))
        return seconds
    return time_it


def random_batches(cfg, device, n=2, batch=None):
    """``n`` random (lq, gt) batches of ``batch`` samples (default: the config's batch)."""
    g = torch.Generator().manual_seed(0)
    b, p, s = batch or cfg['batch'], cfg['patch'], cfg['scale']
    return [{'lq': torch.rand(b, 3, p, p, generator=g).to(device),
             'gt': torch.rand(b, 3, p * s, p * s, generator=g).to(device)} for _ in range(n)]


def init_worker(task):
    sys.stdout = sys.stderr  # the parent's stdout may carry the JSON
    get_root_logger(log_level=logging.WARNING)
    if task['threads']:
        torch.set_num_threads(task['threads'])
    torch.manual_seed(0)
    if task['device'] == 'cuda':
        torch.cuda.reset_peak_memory_stats()


def memory(device):
    out = {'peak_rss_mb': _peak_rss_mb()}
    if device == 'cuda':
        out['peak_cuda_mb'] = torch.cuda.max_memory_allocated() / 2 ** 20
    out['peak_mem_mb'] = out.get('peak_cuda_mb', out['peak_rss_mb'])
    return out
