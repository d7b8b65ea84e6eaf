"""Zero-code use: BasicSR's own train.py / test.py know ModelContrastiveModel once the add-on is installed."""
import glob
import importlib.metadata
import os
import shutil
import sys

import basicsr
import pytest

from helpers import PY, free_port, run, test_options, train_options, write_yaml

BASICSR_DIR = os.path.dirname(basicsr.__file__)
SPN = {'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'}


def test_pth_is_installed_and_recorded_for_uninstall():
    site = [p for p in sys.path if os.path.isfile(os.path.join(p, 'mclir_basicsr_autoload.pth'))]
    assert site, 'the start-up hook is not in site-packages'
    dist, = [d for d in importlib.metadata.distributions(path=site[:1]) if d.metadata['Name'] == 'mclir-basicsr']
    assert 'mclir_basicsr_autoload.pth' in [str(f) for f in dist.files]  # pip uninstall removes what RECORD lists


def test_fresh_interpreter_that_never_imports_basicsr_loads_no_torch(tmp_path):
    code = "import sys; print('torch' in sys.modules, 'basicsr' in sys.modules, 'mclir_basicsr' in sys.modules)"
    assert run([PY, '-c', code], cwd=tmp_path).stdout.split() == ['False', 'False', 'True']
    off = run([PY, '-c', code], cwd=tmp_path, env={'MCLIR_BASICSR_AUTOLOAD': '0'})
    assert off.stdout.split() == ['False', 'False', 'False']


def test_importing_basicsr_alone_registers_the_add_on(tmp_path):
    code = ('from basicsr.utils.registry import MODEL_REGISTRY, LOSS_REGISTRY; '
            "print('ModelContrastiveModel' in MODEL_REGISTRY, 'SPNLoss' in LOSS_REGISTRY)")
    assert run([PY, '-c', code], cwd=tmp_path).stdout.split() == ['True', 'True']


@pytest.mark.slow
def test_import_orders_and_double_import(tmp_path):
    for code in ('import basicsr, mclir_basicsr, mclir_basicsr',
                 'import mclir_basicsr, basicsr; import importlib; importlib.reload(mclir_basicsr)',
                 'from mclir_basicsr.models import ModelContrastiveModel; import basicsr'):
        full = code + ('; from basicsr.utils.registry import MODEL_REGISTRY as M; '
                       "print(M.get('ModelContrastiveModel').__name__)")
        # with the start-up hook off, basicsr 1.4.2 cannot be imported before us on torchvision >= 0.17
        for env in ({}, {'MCLIR_BASICSR_AUTOLOAD': '0'}) if code.startswith('import mclir') else ({},):
            assert run([PY, '-c', full], cwd=tmp_path, env=env).stdout.split()[-1] == 'ModelContrastiveModel'


@pytest.mark.slow
def test_installed_basicsr_scripts_train_and_test_into_cwd(workdir, data_x2):
    write_yaml(workdir / 'train.yml', train_options('via_basicsr', data_x2, spn=SPN))
    proc = run([PY, os.path.join(BASICSR_DIR, 'train.py'), '-opt', 'train.yml'], cwd=workdir)
    assert 'l_spn:' in proc.stdout + proc.stderr
    ckpt = workdir / 'experiments' / 'via_basicsr' / 'models' / 'net_g_latest.pth'
    assert ckpt.is_file()
    assert (workdir / 'tb_logger' / 'via_basicsr').is_dir()
    site = os.path.dirname(BASICSR_DIR)
    assert not os.path.exists(os.path.join(site, 'experiments', 'via_basicsr'))

    write_yaml(workdir / 'test.yml', test_options('test_via_basicsr', data_x2, str(ckpt)))
    run([PY, os.path.join(BASICSR_DIR, 'test.py'), '-opt', 'test.yml'], cwd=workdir)
    assert glob.glob(str(workdir / 'results' / 'test_via_basicsr' / 'visualization' / 'tinytest' / '*.png'))


@pytest.mark.slow
def test_basicsr_git_clone_script_keeps_outputs_in_the_clone(tmp_path, data_x2):
    clone = tmp_path / 'BasicSR'
    shutil.copytree(BASICSR_DIR, clone / 'basicsr', ignore=shutil.ignore_patterns('__pycache__'))
    write_yaml(clone / 'train.yml', train_options('via_clone', data_x2, spn=SPN, val=False))
    run([PY, 'basicsr/train.py', '-opt', 'train.yml'], cwd=clone, env={'PYTHONPATH': str(clone)})
    assert (clone / 'experiments' / 'via_clone' / 'models' / 'net_g_latest.pth').is_file()


@pytest.mark.slow
def test_switch_off_leaves_the_model_unknown(workdir, data_x2):
    # a torchvision on which plain basicsr 1.4.2 imports: stand-in for the removed module
    shim = workdir / 'shim'
    shim.mkdir()
    (shim / 'sitecustomize.py').write_text(
        'import sys, types\n'
        'import torchvision.transforms.functional as F\n'
        "m = types.ModuleType('torchvision.transforms.functional_tensor')\n"
        'm.rgb_to_grayscale = F.rgb_to_grayscale\n'
        "sys.modules['torchvision.transforms.functional_tensor'] = m\n")
    write_yaml(workdir / 'train.yml', train_options('off', data_x2, spn=SPN))
    proc = run([PY, os.path.join(BASICSR_DIR, 'train.py'), '-opt', 'train.yml'], cwd=workdir, check=False,
               env={'MCLIR_BASICSR_AUTOLOAD': '0', 'PYTHONPATH': str(shim)})
    assert proc.returncode != 0
    assert "No object named 'ModelContrastiveModel' found in 'model' registry" in proc.stderr


@pytest.mark.slow
def test_torchrun_with_basicsr_own_script(workdir, data_x2):
    opt = train_options('torchrun_basicsr', data_x2, spn=SPN, val=False, total_iter=2)
    opt['datasets']['train']['batch_size_per_gpu'] = 1
    write_yaml(workdir / 'train.yml', opt)
    torchrun = os.path.join(os.path.dirname(PY), 'torchrun')
    run([torchrun, '--nproc_per_node=2', f'--master_port={free_port()}', os.path.join(BASICSR_DIR, 'train.py'),
         '-opt', 'train.yml', '--launcher', 'pytorch'], cwd=workdir, env={'OMP_NUM_THREADS': '1'})
    assert (workdir / 'experiments' / 'torchrun_basicsr' / 'training_states' / '2.state').is_file()
