"""What the add-on adds to BasicSR, for add-on runs only (an option file of one of the add-on's models, or every
run with ``MCLIR_BASICSR_ADDON=1``); a Real-ESRGAN, GFPGAN or plain SRModel run never meets it.

=====  ==================================================================================
 W6    atomic checkpoints and training states with retries, one save path (:mod:`.saving`)
 W7    an installed BasicSR's ``basicsr/train.py`` writes ``experiments/`` next to its own
       package, i.e. into site-packages: outputs go to the working directory instead
       (:mod:`.outputs`; decided when BasicSR is imported: the script computes its root
       before it parses the option file)
 W8    exact resume: BasicSR restarts the current epoch's data order on resume and does not
       save RNG states (:mod:`.resume`, :mod:`.resumable_data`)
 W9    data errors that name the sample's files (:mod:`.data_errors`); a resume that skips
       an unreadable newest state (:func:`mclir_basicsr.preflight.readable_resume_state`) and
       reads states without running code (:mod:`.state_files`)
 W10   Ctrl-C / SIGTERM save a resumable state and exit 130 / 143 (:mod:`.interrupts`)
 W11   the log line gives the speed and peak memory; tensorboard the learning rate, the speed
       and the SPN distances in a group of their own (:mod:`.progress_log`)
 W12   gradient accumulation: the training loader hands one iteration the samples of one
       optimiser step (:mod:`.accumulation`)
=====  ==================================================================================

:func:`use` is called by the start-up hook (:mod:`mclir_basicsr._autoload`) for every option file BasicSR's
``parse_options`` parses: ``use(True)`` binds the add-on's objects in the pipelines' namespaces for an add-on
run, ``use(False)`` restores BasicSR's own for any other run. Nothing here is replaced at import time.
"""
import sys

from mclir_basicsr import compat
from mclir_basicsr.compat import main_basicsr_script
from mclir_basicsr.runs.saving import AtomicSaveMixin

_PIPELINES = ('basicsr.train', 'basicsr.test')
_BASE_MODEL = ('basicsr.models.base_model', 'BaseModel')
ORIGINALS = {}   # (namespace name, attribute) -> BasicSR's object, recorded before the first switch


def replacements():
    """{name in the pipelines' namespaces: the add-on's object} (W8-W12)."""
    from mclir_basicsr.runs import accumulation
    from mclir_basicsr.runs import resumable_data as rd  # imports basicsr: at first use
    from mclir_basicsr.runs.data_errors import build_dataset
    from mclir_basicsr.runs.interrupts import build_model
    from mclir_basicsr.runs.progress_log import RunLogger
    new = {'EnlargedSampler': rd.ResumableSampler, 'CPUPrefetcher': rd.ResumableCPUPrefetcher,
           'CUDAPrefetcher': rd.ResumableCUDAPrefetcher, 'build_dataset': build_dataset,
           'build_model': build_model, 'MessageLogger': RunLogger,
           'create_train_val_dataloader': _accumulating_loader(accumulation)}
    if compat.STATUS.get('W4 resume states') == 'applied':  # W4's loader, choosing the newest readable state
        new['load_resume_state'] = load_readable_resume_state
    return new


_LOADER = []  # the wrapped create_train_val_dataloader, built once (the same object at every switch)


def _accumulating_loader(accumulation):
    if not _LOADER:
        import basicsr.train  # BasicSR's function, read before any switch has replaced it in that namespace
        original = basicsr.train.create_train_val_dataloader
        _LOADER.append(accumulation.wrap(getattr(original, 'wrapped', original)))
    return _LOADER[0]


def load_readable_resume_state(opt):
    """W4's ``load_resume_state``, loading the newest state that is readable together with its checkpoints
    (:func:`mclir_basicsr.preflight.readable_resume_state`), or a one-line error naming the unreadable file; the
    state is read without running code (:func:`mclir_basicsr.runs.state_files.load_training_state`)."""
    from mclir_basicsr.preflight import readable_resume_state
    from mclir_basicsr.runs.state_files import load_training_state
    return compat.load_state(opt, select=readable_resume_state, load=load_training_state)


def _namespaces():
    found = {name: sys.modules[name] for name in _PIPELINES if name in sys.modules}
    if main_basicsr_script():
        found['__main__'] = sys.modules['__main__']
    return found


def remember_originals(new):
    """Record BasicSR's objects in the pipelines' namespaces and BaseModel's save methods (idempotent)."""
    for ns_name, ns in _namespaces().items():
        for attr in new:
            value = getattr(ns, attr, None)
            if value is not None and value is not new[attr]:
                ORIGINALS.setdefault((ns_name, attr), value)
    base = getattr(sys.modules[_BASE_MODEL[0]], _BASE_MODEL[1])
    for name in ('save_network', 'save_training_state'):
        if base.__dict__[name] is not AtomicSaveMixin.__dict__[name]:
            ORIGINALS.setdefault((_BASE_MODEL, name), base.__dict__[name])


def _saves_atomically(model_type):
    from basicsr.utils.registry import MODEL_REGISTRY
    return model_type in MODEL_REGISTRY and issubclass(MODEL_REGISTRY.get(model_type), AtomicSaveMixin)


def use(on, model_type=None):
    """Bind W8-W12 in the pipelines' namespaces when ``on``, and W6 on BaseModel's save methods
    for a ``model_type`` that does not save atomically itself; restore BasicSR's objects otherwise."""
    from mclir_basicsr.runs.interrupts import INTERRUPTS
    INTERRUPTS.disarm()  # a new option file: a new run (a run armed before in this process is over)
    new = replacements()
    remember_originals(new)
    for ns_name, ns in _namespaces().items():
        for attr, replacement in new.items():
            if (ns_name, attr) in ORIGINALS:
                setattr(ns, attr, replacement if on else ORIGINALS[(ns_name, attr)])
    patch = on and not _saves_atomically(model_type)
    base = getattr(sys.modules[_BASE_MODEL[0]], _BASE_MODEL[1])
    for name in ('save_network', 'save_training_state'):
        setattr(base, name, AtomicSaveMixin.__dict__[name] if patch else ORIGINALS[(_BASE_MODEL, name)])
