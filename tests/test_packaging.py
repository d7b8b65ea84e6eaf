"""Every install path pip may take installs the start-up .pth: wheel, sdist, PEP 660 editable, `setup.py develop`.

The builds run on a copy of the sources in a temporary folder, with the environment's setuptools (no build
isolation: nothing is downloaded). A fresh interpreter then sees only the temporary install of mclir_basicsr
(python -S; torch and basicsr come from the venv's site-packages added as a plain path, so the venv's own
editable install and .pth are not processed). And what the install requires: the plots and the demo's photos
(matplotlib, scikit-image) are the ``demo`` extra, which the core never imports."""
import importlib
import os
import runpy
import shutil
import sysconfig
import tarfile
import zipfile

import pytest
import setuptools

from mclir_basicsr import _autoload

from helpers import PY, REPO, run

PTH = 'mclir_basicsr_autoload.pth'
NO_ISOLATION = {'PIP_NO_BUILD_ISOLATION': '0', 'OMP_NUM_THREADS': '1'}  # pip: use this environment's setuptools


@pytest.fixture(scope='module')
def setup_py(monkeypatch_module):
    """setup.py's names, and under 'setup' the arguments it gives setup() (which is not run)."""
    given = {}
    monkeypatch_module.setattr(setuptools, 'setup', lambda **kwargs: given.update(kwargs))
    return dict(runpy.run_path(os.path.join(REPO, 'setup.py')), setup=given)


@pytest.fixture(scope='module')
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture
def source(tmp_path):
    """A copy of what a release contains (no build/, no egg-info, no caches)."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'pyproject.toml', 'README.md'):
        shutil.copy(os.path.join(REPO, name), src / name)
    shutil.copytree(os.path.join(REPO, 'mclir_basicsr'), src / 'mclir_basicsr',
                    ignore=shutil.ignore_patterns('__pycache__'))
    return src


def test_pth_line_uses_the_autoload_switch(setup_py, tmp_path):
    line = setup_py['PTH_LINE']
    assert f"'{_autoload.ENV_SWITCH}'" in line and repr(_autoload.OFF_VALUES) in line and line.endswith('\n')
    code = f'{line.strip()}\nimport sys; print("mclir_basicsr" in sys.modules)'
    assert run([PY, '-S', '-c', code], cwd=tmp_path, env={'PYTHONPATH': REPO}).stdout.split() == ['True']
    off = run([PY, '-S', '-c', code], cwd=tmp_path, env={'PYTHONPATH': REPO, _autoload.ENV_SWITCH: 'off'})
    assert off.stdout.split() == ['False']


def test_pyproject_declares_the_build_system():
    """pip builds through setuptools' PEP 517 backend, whose PEP 660 hook (setuptools >= 64) is the `pip install -e`
    path that writes the .pth (EditableWheelWithPth); this environment's setuptools meets the requirement."""
    import tomllib  # here: the standard library's from Python 3.11 (ruff's target is older)
    from packaging.requirements import Requirement
    with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
        system = tomllib.load(f)['build-system']
    assert system['build-backend'] == 'setuptools.build_meta'
    backend = importlib.import_module(system['build-backend'])
    assert callable(backend.build_wheel) and callable(backend.build_editable)
    requires = {r.name: r.specifier for r in map(Requirement, system['requires'])}
    assert requires['setuptools'].contains(setuptools.__version__)
    assert not requires['setuptools'].contains('63.4')  # setuptools 64.0: the first with PEP 660 editable installs


def test_develop_command_writes_the_pth_only_where_it_installs(setup_py, tmp_path, monkeypatch):
    # setuptools >= 80's develop runs `pip install -e` and leaves install_dir None: that used to crash
    from setuptools.dist import Distribution
    cmd = setup_py['DevelopWithPth'](Distribution())
    monkeypatch.setattr(setup_py['develop'], 'run', lambda self: None)
    cmd.install_dir = None
    cmd.run()
    cmd.install_dir = str(tmp_path)
    cmd.run()
    assert (tmp_path / PTH).read_text() == setup_py['PTH_LINE']


def _wheel_pth(wheel_dir):
    wheel, = [os.path.join(wheel_dir, f) for f in os.listdir(wheel_dir) if f.endswith('.whl')]
    with zipfile.ZipFile(wheel) as z:
        record = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/RECORD'))).decode()
        assert any(line.startswith(PTH + ',') for line in record.splitlines())  # pip uninstall removes it
        return z.read(PTH).decode()


@pytest.mark.slow
def test_wheel_and_sdist_carry_the_pth(setup_py, source, tmp_path):
    run([PY, '-m', 'pip', 'wheel', str(source), '--no-deps', '--no-build-isolation', '-w', str(tmp_path / 'w')],
        cwd=tmp_path, env=NO_ISOLATION)
    assert _wheel_pth(tmp_path / 'w') == setup_py['PTH_LINE']
    run([PY, 'setup.py', '-q', 'sdist', '-d', str(tmp_path / 'sd')], cwd=source, env=NO_ISOLATION)
    sdist, = (tmp_path / 'sd').glob('*.tar.gz')
    with tarfile.open(sdist) as t:
        t.extractall(tmp_path / 'unpacked', filter='data')
    unpacked, = (tmp_path / 'unpacked').iterdir()
    assert (unpacked / 'pyproject.toml').is_file() and (unpacked / 'setup.py').is_file()
    run([PY, '-m', 'pip', 'wheel', str(unpacked), '--no-deps', '--no-build-isolation', '-w', str(tmp_path / 'w2')],
        cwd=tmp_path, env=NO_ISOLATION)
    assert _wheel_pth(tmp_path / 'w2') == setup_py['PTH_LINE']


FRESH = '''
import site, sys
site.addsitedir({site!r})  # processes the install's .pth files, as site-packages' at start-up
print('HOOK', 'mclir_basicsr' in sys.modules, 'torch' in sys.modules)
sys.path.append({venv!r})  # torch, basicsr: a plain path, the venv's own .pth files are not run
import basicsr
from basicsr.utils.registry import MODEL_REGISTRY
print('REGISTERED', 'ModelContrastiveModel' in MODEL_REGISTRY, sys.modules['mclir_basicsr'].__file__)
'''


def _registers_in_fresh_interpreter(site_dir, source, tmp_path):
    assert (site_dir / PTH).is_file()
    code = FRESH.format(site=str(site_dir), venv=sysconfig.get_paths()['purelib'])
    out = run([PY, '-S', '-c', code], cwd=tmp_path).stdout
    assert 'HOOK True False' in out  # the hook is in, torch is not loaded at start-up
    assert f'REGISTERED True {source / "mclir_basicsr" / "__init__.py"}' in out, out


@pytest.mark.slow
def test_setup_py_develop_registers_the_model(source, tmp_path):
    # setuptools < 80: the legacy develop (easy_install); >= 80: develop runs pip's PEP 660 editable install
    run([PY, 'setup.py', 'develop', '--install-dir', str(tmp_path / 'site'), '--no-deps'], cwd=source,
        env=NO_ISOLATION)
    _registers_in_fresh_interpreter(tmp_path / 'site', source, tmp_path)


@pytest.mark.slow
def test_pep660_editable_install_registers_the_model(source, tmp_path):
    run([PY, '-m', 'pip', 'install', '-e', str(source), '--no-deps', '--no-build-isolation', '--target',
         str(tmp_path / 'site')], cwd=tmp_path, env=NO_ISOLATION)
    _registers_in_fresh_interpreter(tmp_path / 'site', source, tmp_path)


def test_pins_match_the_code(setup_py):
    from mclir_basicsr import compat
    reqs = [r.split('#')[0].strip() for r in setup_py['setup']['install_requires']]
    assert 'torch>=2.1' in reqs  # torch._foreach_copy_, torch.load(mmap=True)
    low = '.'.join(map(str, compat.TESTED_RANGE[0]))
    assert f'basicsr>={low}' in reqs  # no upper bound: newer BasicSR versions meet the guard, not a downgrade


def test_plots_and_photos_are_the_demo_extra(setup_py):
    from mclir_basicsr.compare.plots import DEMO_EXTRA, DEMO_INSTALL
    given, demo = setup_py['setup'], {'matplotlib', 'scikit-image'}
    assert set(given['extras_require']['demo']) == demo == set(DEMO_EXTRA.values()) and '[demo]' in DEMO_INSTALL
    assert demo <= set(given['extras_require']['test'])  # the tests draw plots and build data from those photos
    assert not demo & {r.split('#')[0].strip() for r in given['install_requires']}


def test_core_works_without_matplotlib_and_scikit_image(tmp_path):
    # both made unimportable: the add-on, its model, losses and networks, and BasicSR's own train/test entry
    # points import (and register) without them; the comparison tool and the demo import too (they check later)
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = sys.modules['skimage'] = None\n"
        "import mclir_basicsr, mclir_basicsr.models, mclir_basicsr.losses, mclir_basicsr.archs\n"
        "import basicsr.train, basicsr.test\n"
        "from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY\n"
        "import mclir_basicsr.train, mclir_basicsr.compare, mclir_basicsr.demo\n"
        "print(MODEL_REGISTRY.get('ModelContrastiveModel').__name__, LOSS_REGISTRY.get('SPNLoss').__name__)\n")
    out = run([PY, '-c', code], cwd=tmp_path, env={'PYTHONPATH': REPO})
    assert out.stdout.split() == ['ModelContrastiveModel', 'SPNLoss']
