"""Checks of an add-on run's option file and of the files it reads, before anything is written.

:func:`check_run` is what the start-up hook runs when BasicSR's ``parse_options`` has parsed an option file of
one of the add-on's models, before BasicSR creates ``experiments/`` or ``results/``: BasicSR's own sections
(:mod:`.sections`: ``network_g``, ``scale``, the datasets, ``train.total_iter``), the MCLIR sections
(:mod:`mclir_basicsr.options`), ``train.optim_g`` / ``train.scheduler`` (:mod:`.optim`), the VGG weight files
the losses need, the files and folders the run reads (:mod:`.paths`), and the GT/LQ pairs of the paired
datasets (:mod:`.pairs`), in that order. Every problem is one line that starts with the option path (or the
file) and says what was expected: a :class:`PreflightError` for files and folders, a
:class:`~mclir_basicsr.validate.MCLIROptionError` for option values.
"""
from mclir_basicsr.errors import MCLIRError


class PreflightError(MCLIRError, ValueError):
    """A file or folder named in the option file that the run cannot use. One line, naming it."""


from mclir_basicsr.preflight.paths import (  # noqa: E402  (they raise PreflightError, defined first)
    IMAGE_EXTENSIONS,
    check_dataroot,
    check_dataset,
    check_outputs,
    check_paths,
    readable_resume_state,
    unreadable,
    warn,
)

__all__ = ['IMAGE_EXTENSIONS', 'PreflightError', 'check_dataroot', 'check_dataset', 'check_outputs', 'check_paths',
           'check_run', 'readable_resume_state', 'unreadable']


def check_run(opt, is_train):
    """Every check of an add-on run's options (``opt`` as BasicSR's parse_options returns it); raises the first
    problem found. Returns the validated MCLIR configuration of a training run (None for a test run)."""
    from mclir_basicsr.losses.vgg import find_weights
    from mclir_basicsr.options import parse_mclir_options
    from mclir_basicsr.preflight.optim import check_optim
    from mclir_basicsr.preflight.pairs import check_pairs
    from mclir_basicsr.preflight.sections import check_sections
    check_sections(opt, is_train)
    cfg = None
    if is_train:
        cfg = parse_mclir_options(opt)
        check_optim(opt['train'])
        for section, owner in ((cfg.spn, ('SPNLoss', 'train.spn_opt')), (cfg.cr, ('CRLoss', 'train.cr_opt'))):
            if section is not None and section.feature != 'pixel' and not section.download:
                find_weights(section.feature, section.pretrained, owner=owner)
    check_paths(opt)
    check_outputs(opt)
    check_pairs(opt)
    if not is_train and (opt.get('path') or {}).get('pretrain_network_g') is None:  # said once all is well
        warn(opt, 'path.pretrain_network_g is not set: this test run evaluates a randomly initialised network_g')
    return cfg
