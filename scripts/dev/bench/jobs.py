"""The worker process's side: the set-up job (what is installed; the random VGG weights written), a
variant's model timed one repetition at a time, and ``serve``, the loop that answers the parent."""
import platform
import statistics
import tempfile
import traceback
import types

import basicsr
import torch
from basicsr.models import build_model

import mclir_basicsr  # noqa: F401  registers the add-on (the start-up hook normally has)
from bench.components import ComponentsJob
from bench.floors import samples_of
from bench.measure import init_worker, memory, random_batches, rss_now_mb, timer
from bench.options import make_options
from bench.published import published_step
from mclir_basicsr.losses.vgg import write_random_weights


def setup_worker(task):
    info = {'torch': torch.__version__, 'basicsr': getattr(basicsr, '__version__', '?'),
            'python': platform.python_version(), 'cuda_available': torch.cuda.is_available(),
            'cuda_device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            'default_threads': torch.get_num_threads(), 'cpu': platform.processor() or platform.machine()}
    try:
        with open('/proc/cpuinfo') as f:
            info['cpu'] = next((ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), info['cpu'])
    except OSError:
        pass
    if task.get('write_vgg'):
        write_random_weights(task['write_vgg'], task['feature'])
    return info


class VariantJob:
    """One variant's model; ``rep()`` times one repetition of ``iters`` training iterations."""

    def __init__(self, task):
        self.cfg, self.device, variant = task['cfg'], task['device'], task['variant']
        self.rss_start = rss_now_mb()
        init_worker(task)
        self.tmp = tempfile.TemporaryDirectory(prefix='bench_step_')
        self.model = build_model(make_options(self.cfg, variant, self.device, self.tmp.name))
        if variant['kind'] == 'published':
            self.model.optimize_parameters = types.MethodType(published_step, self.model)
        self.samples = samples_of(variant['mods'], self.cfg['batch'])  # per iteration: one optimiser step
        self.batches = random_batches(self.cfg, self.device, batch=self.samples)
        self.it = 0
        self.faults = {}
        self.time = timer(self.device, self.faults)
        self.first_step_s = self.time(self.step, 1)  # with compile: the compilation of every graph of a step
        self.time(self.step, max(self.cfg['warmup'] - 1, 0))
        self.faults.clear()  # faults of the timed repetitions only

    def step(self):
        self.it += 1
        self.model.feed_data(self.batches[self.it % len(self.batches)])
        self.model.optimize_parameters(self.it)

    def rep(self):
        return self.time(self.step, self.cfg['iters'])

    def result(self):
        self.tmp.cleanup()
        return dict(rss_start_mb=self.rss_start, output_shape=list(self.model.output.shape), iterations=self.it,
                    minor_faults_per_iter=statistics.median(self.faults[self.step]), samples_per_iter=self.samples,
                    first_step_s=self.first_step_s, compile=self._compile_record(), **memory(self.device))

    def _compile_record(self):
        """The first compiled call's seconds of net_g and of the negatives (or why compilation fell back)."""
        g = getattr(self.model, 'compiled_g', None)
        if g is None:
            return None
        pool = getattr(self.model, 'negatives', None)
        neg = pool.copies[0].forward if pool is not None else None
        return {'net_g_s': g.seconds, 'net_g_failed': g.failed,
                'negatives_s': getattr(neg, 'seconds', None), 'negatives_failed': getattr(neg, 'failed', None)}


def serve(task, conn):
    """A worker process: build and warm up its job and say so, then answer 'rep' with one repetition's
    seconds per iteration and 'done' with its final record. Errors come back as text, never raised."""
    try:
        if task['what'] == 'setup':
            conn.send(setup_worker(task))
            return
        job = {'variant': VariantJob, 'components': ComponentsJob}[task['what']](task)
        conn.send({'ready': True})
        while conn.recv() == 'rep':
            conn.send({'sample': job.rep()})
        conn.send(job.result())
    except BaseException as e:  # noqa: BLE001  reported by the parent
        conn.send({'error': f'{type(e).__name__}: {e}', 'traceback': traceback.format_exc()})
    finally:
        conn.close()
