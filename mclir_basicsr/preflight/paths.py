"""Checks of the files and folders a run reads, before anything is written.

* :func:`check_paths` (called when the option file is parsed, before BasicSR creates
  ``experiments/`` or ``results/``): every dataset's ``dataroot_gt`` / ``dataroot_lq`` (disk: an
  existing folder with at least one image; lmdb: a folder with ``data.mdb``), ``meta_info_file``,
  and every ``path.pretrain_network_*`` (a file torch can read).
* :func:`readable_resume_state` (called when a training state is about to be loaded): with
  ``--auto_resume``, the newest training state that is readable and whose checkpoints
  ``models/net_*_{iter}.pth`` are readable, with a warning naming each unreadable file skipped;
  with an explicit ``path.resume_state``, a one-line error naming the unreadable file.

Every problem is a :class:`PreflightError` whose message starts with the option path
(``datasets.train.dataroot_gt: ...``) or the file, on one line.
"""
import os
import pickle
import sys
import zipfile

import torch

from mclir_basicsr.preflight import PreflightError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
# Dataset types whose roots are known: (keys that must be set, BasicSR reads meta_info.txt in an lmdb root)
KNOWN_DATASETS = {
    'PairedImageDataset': ('dataroot_gt', 'dataroot_lq'),
    'SingleImageDataset': ('dataroot_lq',),
}
ROOT_KEYS = ('dataroot_gt', 'dataroot_lq')


def _where(path):
    """The path as written, plus where it resolves when it is relative."""
    return path if os.path.isabs(path) else f'{path} (relative to {os.getcwd()})'


# --------------------------------------------------------------------------- datasets
def _has_image(folder):
    """True as soon as one image file is found at any depth (stops at the first)."""
    for _, dirs, files in os.walk(folder):
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            return True
        dirs.sort()
    return False


def check_dataroot(option, root, backend='disk', dataset_type=None):
    """Raise PreflightError when ``root`` (the value of ``option``) is not usable by ``backend``."""
    if not isinstance(root, str) or not root:
        raise PreflightError(f'{option}: not set (expected a folder)')
    if not os.path.exists(root):
        raise PreflightError(f'{option}: {_where(root)} does not exist')
    if not os.path.isdir(root):
        raise PreflightError(f'{option}: {_where(root)} is a file, not a folder')
    if backend == 'lmdb':
        if not os.path.isfile(os.path.join(root, 'data.mdb')):
            raise PreflightError(f'{option}: {_where(root)} is not an LMDB folder (no data.mdb in it)')
        if dataset_type in KNOWN_DATASETS:
            if not root.rstrip('/').endswith('.lmdb'):
                raise PreflightError(f'{option}: {_where(root)}: {dataset_type} needs an LMDB folder named *.lmdb')
            if not os.path.isfile(os.path.join(root, 'meta_info.txt')):
                raise PreflightError(f'{option}: {_where(root)} has no meta_info.txt (BasicSR reads the keys from it)')
    elif backend == 'disk' and not _has_image(root):
        raise PreflightError(f'{option}: {_where(root)} has no image files ({", ".join(IMAGE_EXTENSIONS)})')


def check_dataset(phase, dataset):
    """Check the roots (and meta_info_file) of ``datasets.<phase>``."""
    prefix = f'datasets.{phase}'
    if not isinstance(dataset, dict):
        return
    dataset_type = dataset.get('type')
    backend = (dataset.get('io_backend') or {}).get('type', 'disk')
    keys = KNOWN_DATASETS.get(dataset_type, [k for k in ROOT_KEYS if dataset.get(k) is not None])
    for key in keys:
        if dataset.get(key) is None:
            raise PreflightError(f'{prefix}.{key}: required by {dataset_type} (a folder), not set')
        check_dataroot(f'{prefix}.{key}', dataset[key], backend, dataset_type)
    meta = dataset.get('meta_info_file')
    if meta is not None:
        if not os.path.isfile(meta):
            what = 'is a folder, not a file' if os.path.isdir(meta) else 'does not exist'
            raise PreflightError(f'{prefix}.meta_info_file: {_where(meta)} {what}')
        if os.path.getsize(meta) == 0:
            raise PreflightError(f'{prefix}.meta_info_file: {_where(meta)} is empty')


def check_paths(opt):
    """Every dataset's roots and meta_info_file, every readable ``path.pretrain_network_*``
    (not when ``path.resume_state`` is set: BasicSR then loads the run's own checkpoints)."""
    for phase, dataset in (opt.get('datasets') or {}).items():
        check_dataset(phase, dataset)
    paths = opt.get('path') or {}
    if paths.get('resume_state'):
        return
    for key, value in paths.items():
        if key.startswith('pretrain_network') and value is not None:
            reason = unreadable(value)
            if reason:
                raise PreflightError(f'path.{key}: {_where(value)} cannot be read: {reason}')


def _output_folders(paths):
    """{option key: folder} of the folders BasicSR creates for the run (``make_exp_dirs``)."""
    skipped = ('strict_load', 'pretrain_network', 'resume', 'param_key')
    return {key: value for key, value in paths.items()
            if isinstance(value, str) and not any(s in key for s in skipped)}


def check_outputs(opt):
    """Every folder the run writes (``path.experiments_root``, ``models``, ``log``, ...): neither it nor a folder
    above it may be an existing file (BasicSR would fail with ``NotADirectoryError`` / ``FileExistsError`` when it
    creates it, or when it opens its log there)."""
    for key, folder in _output_folders(opt.get('path') or {}).items():
        here = os.path.abspath(folder)
        while True:
            if os.path.exists(here) and not os.path.isdir(here):
                if here == os.path.abspath(folder):
                    raise PreflightError(f'path.{key}: {_where(folder)} is a file, not a folder; move or rename it')
                raise PreflightError(f'path.{key}: {here} is a file, but the run writes the folder {_where(folder)} '
                                     'inside it; move or rename it')
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent


# --------------------------------------------------------------------------- checkpoints and states
def unreadable(path):
    """None when ``torch.load`` can read ``path``; otherwise why not (one line).

    Files in torch's zip format are checked without unpickling them (the zip directory, every
    member's CRC, a ``data.pkl``), so a truncated or damaged file is found at the cost of reading it
    once; a file in torch's legacy format is loaded (weights only) to see that it parses."""
    if not os.path.exists(path):
        return 'no such file'
    if not os.path.isfile(path):
        return 'not a file'
    if os.path.getsize(path) == 0:
        return 'the file is empty'
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if not any(n.endswith('data.pkl') for n in archive.namelist()):
                    return 'a zip archive, but not one written by torch.save (no data.pkl)'
                bad = archive.testzip()
            return f'damaged: {bad} fails its CRC check' if bad else None
        with open(path, 'rb') as f:
            if f.read(2) == b'PK':
                return 'truncated or damaged: its zip directory is missing or unreadable'
        torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if 'Unsupported global' in text:
            return None  # it parses; which classes it may contain is the loader's business
        detail = text.split('WeightsUnpickler error:')[-1].strip() or text
        return f'not a torch file ({detail.splitlines()[0]})'
    except Exception as e:  # noqa: BLE001  any failure to read is the answer
        return f'{type(e).__name__}: {_first_line(e)}'
    return None


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _checkpoints(opt, iteration):
    """The network files BasicSR loads when resuming at ``iteration`` (as ``check_resume`` names them)."""
    ignore = opt['path'].get('ignore_resume_networks') or []
    return [os.path.join(opt['path']['models'], f'net_{key[len("network_"):]}_{iteration}.pth')
            for key in opt if key.startswith('network_') and key not in ignore]


def _state_problem(opt, state_path):
    """(file, reason) of the first unreadable file among a state and its checkpoints, or None."""
    reason = unreadable(state_path)
    if reason:
        return state_path, reason
    name = os.path.basename(state_path)
    if name.endswith('.state') and name[:-len('.state')].isdigit() and opt['path'].get('models'):
        for ckpt in _checkpoints(opt, int(name[:-len('.state')])):
            reason = unreadable(ckpt)
            if reason:
                return ckpt, reason
    return None


def _states_newest_first(state_dir):
    names = [f for f in os.listdir(state_dir) if f.endswith('.state') and f[:-len('.state')].isdigit()]
    return [os.path.join(state_dir, f) for f in sorted(names, key=lambda f: -int(f[:-len('.state')]))]


def warn(opt, message):
    if opt.get('rank', 0) == 0:
        print(f'mclir-basicsr: warning: {message}', file=sys.stderr, flush=True)


def readable_resume_state(opt, path):
    """The training state to load instead of ``path``.

    With ``--auto_resume`` (``path`` is the newest state found): the newest state that is readable
    together with its checkpoints; each unreadable file skipped is named in a warning, and
    ``opt['path']['resume_state']`` is set to the state chosen. When none is readable: a
    PreflightError (the run never starts again from iteration 0 without saying so). With an
    explicit ``path.resume_state``: a PreflightError naming the file when it (or a checkpoint it
    needs) cannot be read."""
    if not opt.get('auto_resume'):
        problem = _state_problem(opt, path)
        if problem:
            raise PreflightError(f'path.resume_state: {_where(problem[0])} cannot be read: {problem[1]}')
        return path
    skipped = []
    for candidate in _states_newest_first(os.path.dirname(path) or '.'):
        problem = _state_problem(opt, candidate)
        if problem is None:
            if skipped:
                warn(opt, f'--auto_resume: resuming from {candidate} instead')
            opt['path']['resume_state'] = candidate
            return candidate
        skipped.append(problem[0])
        warn(opt, f'--auto_resume: skipping {problem[0]}: cannot be read ({problem[1]})')
    raise PreflightError(f'--auto_resume: no readable training state in {os.path.dirname(path)} '
                         f'(unreadable: {", ".join(skipped)}); remove or move them to start again from iteration 0')
