"""torch.compile for the training step (``train.compile``), with eager as the fallback.

What is compiled is the training forward only: network_g's (through :func:`compiled_forward`, which puts the
compiled function on the bare network for the duration of the step, so DistributedDataParallel's hooks and
``no_sync`` stay eager and validation, whose image sizes vary, never triggers a recompilation) and the
negatives' (one compiled function of the architecture's ``forward``, called with each negative in turn, so the
K copies share the compiled graph where torch guards allow it). The networks are never replaced by torch's
``OptimizedModule``: checkpoints and training states keep plain keys. The VGG extractor is not compiled (not
measured faster: docs/accumulate_and_compile.md).

A compilation that is unavailable (``torch.compile`` missing or refusing this Python) or fails (no C++
compiler for inductor, an unsupported operation) turns into eager execution with one warning naming the reason;
the step it failed in is run again eagerly.
"""
import contextlib
import time

import torch
from basicsr.utils import get_root_logger


class CompiledOrEager:
    """``fn`` compiled with torch.compile, called in its place; on the first failure (at compile or call time) one
    warning and ``fn`` itself from then on. ``seconds``: the wall time of the first compiled call (compilation
    plus one run), logged once."""

    def __init__(self, fn, name, mode='default', backend='inductor'):
        self.fn, self.name, self.mode, self.backend = fn, name, mode, backend
        self.seconds, self.failed = None, None
        try:
            self.compiled = torch.compile(fn, mode=None if mode == 'default' else mode, backend=backend)
        except Exception as e:  # noqa: BLE001  (any reason means: eager, said once)
            self.compiled = None
            self._fall_back(e)

    def _fall_back(self, error):
        self.failed = _reason(error)
        get_root_logger().warning(f'MCLIR: torch.compile of {self.name} is not available here ({self.failed}); '
                                  'training runs it eagerly.')

    def __call__(self, *args):
        if self.compiled is None:
            return self.fn(*args)
        start = time.perf_counter() if self.seconds is None else None
        try:
            out = self.compiled(*args)
        except Exception as e:  # noqa: BLE001  (a real error of the network repeats eagerly below)
            self.compiled = None
            self._fall_back(e)
            return self.fn(*args)
        if start is not None:
            self.seconds = time.perf_counter() - start
            get_root_logger().info(f'MCLIR: torch.compile of {self.name} (mode {self.mode}, backend {self.backend}): '
                                   f'first call, compilation included, {self.seconds:.1f} s.')
        return out


def _reason(error):
    """The failure in one line: the innermost cause (torch wraps a backend's error, e.g. a missing C++ compiler,
    in BackendCompilerFailed), named after the outer error when they differ."""
    inner = error
    while inner.__cause__ is not None or getattr(inner, 'inner_exception', None) is not None:
        inner = inner.__cause__ or inner.inner_exception
    text = next((line.strip() for line in str(inner).splitlines() if line.strip()), '')
    outer = '' if inner is error else f'{type(error).__name__}, '
    return f'{outer}{type(inner).__name__}: {text}'


def compile_network(net, options):
    """A :class:`CompiledOrEager` of the bare network's class forward (called with the network as first
    argument) with the run's :class:`~mclir_basicsr.options.Compile` ``options``, or None when they are None
    (compile off)."""
    if options is None:
        return None
    return CompiledOrEager(type(net).forward, f'network_g ({type(net).__name__})', options.mode, options.backend)


@contextlib.contextmanager
def compiled_forward(net, compiled):
    """Within the block, calling ``net`` (or a DDP wrapper of it) runs ``compiled`` as its forward; an instance
    attribute, removed afterwards, so the module (its class, hooks and state_dict keys) is otherwise untouched."""
    if compiled is None:
        yield
        return
    net.forward = lambda *args: compiled(net, *args)
    try:
        yield
    finally:
        del net.forward


def compile_negatives(pool, net, options):
    """The negatives' forward compiled once for the architecture (:meth:`mclir_basicsr.history.NegativePool.
    use_forward`); nothing when compile is off."""
    if options is not None and pool is not None:
        pool.use_forward(CompiledOrEager(type(net).forward, f'the negatives ({type(net).__name__})', options.mode,
                                       options.backend))
