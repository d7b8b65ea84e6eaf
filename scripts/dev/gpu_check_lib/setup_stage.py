"""Stage setup: what the stages' interpreter has; with --wheels, the offline install of the wheel set first."""
import json
import os
import shutil
import tempfile

from .procs import child_env, run_step
from .wheel_set import WHEELS
from .wheels import OFFLINE_PIP_ENV, offline_editable_cmd, offline_install_cmd, site_for, wheel_files
from .where import PY

# the modules the stages import (lmdb: the wheel set carries it; basicsr's LMDB datasets need it)
REQUIRED = ('torch', 'torchvision', 'basicsr', 'lmdb', 'cv2', 'skimage', 'scipy', 'yaml', 'pytest', 'matplotlib',
            'tensorboard')

PROBE = r'''
import importlib.util, json, platform, sys
info = {'python': platform.python_version(), 'executable': sys.executable,
        'missing': [m for m in sys.argv[1].split(',') if importlib.util.find_spec(m) is None],
        'xdist': importlib.util.find_spec('xdist') is not None}
spec = importlib.util.find_spec('mclir_basicsr')
info['mclir_basicsr'] = spec.origin if spec else None
try:
    import torch
    info.update(torch=torch.__version__, cuda=torch.cuda.is_available())
    if info['cuda']:
        info.update(gpu=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), gpu_count=torch.cuda.device_count())
except Exception as e:
    info['torch_error'] = f'{type(e).__name__}: {e}'
try:
    import mclir_basicsr, basicsr.train
    info['basicsr'] = basicsr.__version__
    info['basicsr_from'] = basicsr.__file__
except Exception as e:
    info['import_error'] = f'{type(e).__name__}: {e}'
print('PROBE ' + json.dumps(info))
'''


def probe(st, label):
    """What the stages' interpreter has, as seen from outside the repo (so an install is what counts)."""
    with tempfile.TemporaryDirectory() as cwd:
        if not st.step(label, [PY, '-c', PROBE, ','.join(REQUIRED)], timeout=120, cwd=cwd):
            return None
    with open(os.path.join(st.out, f'{label}.log')) as f:
        lines = [line for line in f if line.startswith('PROBE ')]
    return json.loads(lines[-1][6:]) if lines else None


def install_wheels(st):
    """The --wheels folder's wheels into their scratch folder, emptied first (on the stages' PYTHONPATH from then
    on)."""
    try:
        wheels = wheel_files(st.ctx['wheels'])
    except ValueError as e:
        st.fail('failed', f'--wheels: {e}')
        return False
    site = site_for(st.ctx['wheels'])
    shutil.rmtree(site, ignore_errors=True)
    os.makedirs(site)
    if not st.step('pip_wheels', offline_install_cmd(wheels, site), timeout=120, env=OFFLINE_PIP_ENV):
        return False
    st.ctx['site'] = site
    st.ctx['installed'] = [os.path.basename(w) for w in wheels]
    return True


def install(st, info):
    """Bring what is missing without an index: the given wheels, then the repo itself (editable)."""
    ctx, changed = st.ctx, False
    if ctx['wheels'] and (info['missing'] or info.get('import_error')):
        changed = install_wheels(st)
    if info['mclir_basicsr'] is None:
        res = run_step(offline_editable_cmd(), os.path.join(st.out, 'pip_editable.log'), min(120, st.left()),
                       child_env(ctx, OFFLINE_PIP_ENV))
        st.record['logs'].append('setup/pip_editable.log')
        print(f'  [setup] pip install -e . : rc {res["rc"]}, {res["seconds"]:.1f} s', flush=True)
        if res['rc'] != 0:
            ctx['pythonpath'] = True
            st.record['notes'].append('pip install -e . failed (setup/pip_editable.log): the stages import the repo '
                                      'through PYTHONPATH instead (only BasicSR\'s own scripts need the install)')
        changed = True
    return changed


def problems_of(info, cpu):
    problems = []
    if info['missing']:
        carried = [m for m in info['missing'] if m in {w.name for w in WHEELS}]
        problems.append(f'missing Python modules: {", ".join(info["missing"])}'
                        + (f'; {", ".join(carried)}: run this check with --fetch-wheels .whl where PyPI is '
                           'reachable and pass --wheels .whl here' if carried else ''))
    for key in ('torch_error', 'import_error'):
        if info.get(key):
            problems.append(f'{key.replace("_", " ")}: {info[key]}')
    if not cpu and not info.get('cuda'):
        problems.append('torch.cuda.is_available() is false: no usable GPU here (use --cpu for the CPU form)')
    return problems


def stage_setup(st):
    st.ctx['site'] = None  # what is missing without an earlier run's scratch folder
    info = probe(st, 'probe')
    if info is None:
        return
    if not st.ctx['no_install'] and install(st, info):
        info = probe(st, 'probe_after_install') or info
    st.ctx['xdist'] = info.get('xdist', False)
    keys = ('python', 'executable', 'torch', 'cuda', 'gpu', 'gpu_count', 'cuda_version', 'cudnn', 'basicsr',
            'basicsr_from', 'mclir_basicsr', 'missing')
    st.record['numbers'] = {k: info.get(k) for k in keys if k in info}
    if st.ctx.get('site'):
        st.record['numbers'].update(wheels_site=st.ctx['site'], wheels_installed=st.ctx['installed'])
    for problem in problems_of(info, st.ctx['cpu']):
        st.fail('failed', problem)
    gpu = (f'{info.get("gpu")} (CUDA {info.get("cuda_version")}, cuDNN {info.get("cudnn")})'
           if info.get('cuda') else 'none')
    st.record['brief'] = (f'python {info.get("python")}, torch {info.get("torch")}, basicsr {info.get("basicsr")}, '
                          f'GPU: {gpu}')
