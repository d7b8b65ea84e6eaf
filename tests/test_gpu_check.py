"""scripts/dev/gpu_check.py: its --cpu mode end to end (so the GPU script cannot rot), its time budgets, and the wheel
set for the GPU image (which wheels and why, the manifest, the offline install --wheels runs; nothing is downloaded).
"""
import base64
import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import tarfile
import zipfile

import pytest

from helpers import PY, REPO, load_script, run

SCRIPT = os.path.join(REPO, 'scripts', 'dev', 'gpu_check.py')


@pytest.fixture(scope='module')
def gc():
    return load_script('dev/gpu_check')


@pytest.fixture(scope='module')
def lib(gc):
    """gpu_check_lib's modules by name (gpu_check put scripts/dev/ on sys.path)."""
    return lambda name: importlib.import_module(f'gpu_check_lib.{name}')


@pytest.mark.slow
def test_cpu_mode_end_to_end(tmp_path):
    out, tar = tmp_path / 'out', tmp_path / 'out.tar.gz'
    proc = run([PY, SCRIPT, '--cpu', '--no-install', str(out), '--archive', str(tar)], cwd=tmp_path,
               env={'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}, timeout=1800)
    summary = json.loads((out / 'summary.json').read_text())
    stages = {s['stage']: s for s in summary['stages']}
    assert list(stages) == ['setup', 'tests', 'bench', 'compare']
    assert all(s['status'] == 'ok' for s in stages.values()), proc.stdout[-4000:]
    assert stages['setup']['numbers']['cuda'] is False and not stages['setup']['numbers']['missing']

    tests = stages['tests']['numbers']
    assert tests['passed'] >= 2 and tests['failed'] == 0  # the CPU forms ran
    assert tests['skipped'] >= 1 and all(reason for reason in tests['skip_reasons'])  # CUDA-only parts say why

    for arch in ('edsr_light_x2', 'swinir_light_x4'):
        rows = stages['bench']['numbers'][arch]
        assert set(rows) == {'baseline', 'spn_k4', 'spn_k4+split', 'spn_k4+split+amp', 'baseline+amp'}
        assert all(r['s_per_iter'] > 0 for r in rows.values())
        assert (out / 'bench' / f'bench_{arch}.json').is_file()

    cmp = stages['compare']['numbers']
    assert cmp['seeds'] == [0] and cmp['s_per_iter_baseline'] > 0 and cmp['psnr_delta_mean'] is not None
    assert 'mean' in (out / 'compare' / 'result' / 'table.md').read_text()

    text = (out / 'summary.txt').read_text()
    assert text in proc.stdout and 'compare  ok' in text
    with tarfile.open(tar) as t:
        names = t.getnames()
    assert 'out/summary.json' in names and not any(n.endswith(('.pth', '.state')) for n in names)


def test_a_stuck_stage_is_killed_at_its_budget_and_the_next_still_runs(gc, tmp_path, monkeypatch):
    def stuck(st):
        st.step('sleep', [sys.executable, '-c', 'import time; time.sleep(120)'])

    def quick(st):
        st.step('echo', [sys.executable, '-c', 'print("hello")'])
        st.record['brief'] = 'ran'

    monkeypatch.setitem(gc.STAGE_FUNCS, 'tests', stuck)
    monkeypatch.setitem(gc.STAGE_FUNCS, 'bench', quick)
    ctx = {'mode': 'cpu', 'cpu': True, 'budgets': {'tests': 2, 'bench': 30}, 'stages': ['tests', 'bench'],
           'out': str(tmp_path), 'wheels': None, 'no_install': True}
    summary = gc.run_stages(ctx)
    tests, bench = summary['stages']
    assert tests['status'] == 'timeout' and tests['seconds'] < 20 and 'time budget' in tests['notes'][0]
    assert bench['status'] == 'ok' and bench['brief'] == 'ran'
    assert 'hello' in (tmp_path / 'bench' / 'echo.log').read_text()
    assert json.loads((tmp_path / 'summary.json').read_text())['stages'][0]['status'] == 'timeout'


def test_a_failed_setup_skips_the_other_stages(gc, tmp_path, monkeypatch):
    monkeypatch.setitem(gc.STAGE_FUNCS, 'setup', lambda st: st.fail('failed', 'missing Python modules: basicsr'))
    monkeypatch.setitem(gc.STAGE_FUNCS, 'bench', lambda st: pytest.fail('must not run'))
    ctx = {'mode': 'gpu', 'cpu': False, 'budgets': {'setup': 5, 'bench': 5}, 'stages': ['setup', 'bench'],
           'out': str(tmp_path), 'wheels': None, 'no_install': True}
    setup, bench = gc.run_stages(ctx)['stages']
    assert setup['status'] == 'failed' and bench['status'] == 'skipped'
    assert 'setup failed' in gc.summary_text(json.loads((tmp_path / 'summary.json').read_text()))


def test_junit_counts(lib, tmp_path):
    path = tmp_path / 'j.xml'
    path.write_text('<testsuites><testsuite><testcase classname="a" name="ok"/>'
                    '<testcase classname="a" name="bad"><failure message="x"/></testcase>'
                    '<testcase classname="a" name="err"><error message="y"/></testcase>'
                    '<testcase classname="a" name="s1"><skipped message="needs CUDA"/></testcase>'
                    '<testcase classname="a" name="s2"><skipped message="needs CUDA"/></testcase>'
                    '</testsuite></testsuites>')
    counts = lib('tests_stage').junit_counts(str(path))
    assert (counts['passed'], counts['failed'], counts['skipped']) == (1, 2, 2)
    assert counts['failures'] == ['a::bad', 'a::err'] and counts['skip_reasons'] == {'needs CUDA': 2}


@pytest.mark.parametrize('argv,message', [
    (['--budget', 'tests:5', 'o'], 'expected STAGE=SECONDS'),
    (['--stages', 'setup,warp', 'o'], "unknown stage.*warp"),
    (['--wheels', '/no/such/dir', 'o'], 'no such folder'),
    ([], 'OUT_DIR is required'),
])
def test_bad_arguments_are_one_line_errors(gc, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        gc.main(argv)
    assert re.search(message, capsys.readouterr().err)


# =========================================================================== the wheel set for the GPU image
def make_wheel(folder, name, version, tag='py3-none-any', requires=(), modules=None):
    """A minimal valid wheel (METADATA, WHEEL, RECORD with hashes) holding `modules` {module name: source}."""
    dist = f'{name.replace("-", "_")}-{version}.dist-info'
    files = {f'{m}.py': src for m, src in (modules or {}).items()}
    files[f'{dist}/METADATA'] = '\n'.join(['Metadata-Version: 2.1', f'Name: {name}', f'Version: {version}',
                                           *(f'Requires-Dist: {r}' for r in requires)]) + '\n'
    files[f'{dist}/WHEEL'] = f'Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n'
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()
        record.append(f'{path},sha256={digest},{len(text.encode())}')
    files[f'{dist}/RECORD'] = '\n'.join(record + [f'{dist}/RECORD,,']) + '\n'
    path = os.path.join(folder, f'{name.replace("-", "_")}-{version}-{tag}.whl')
    with zipfile.ZipFile(path, 'w') as zf:
        for name_in_zip, text in files.items():
            zf.writestr(name_in_zip, text)
    return path


def test_every_requirement_of_basicsr_and_the_addon_is_decided(lib):
    """What basicsr 1.4.2 declares and the add-on's setup.py requires is carried, on the image, or left out for
    a reason; the carried ones are not on the image; 'never imported' holds for the installed basicsr."""
    ws = lib('wheel_set')
    declared = importlib.metadata.requires('basicsr') + ws.setup_requirements(os.path.join(REPO, 'setup.py'))
    assert 'lmdb' in ws.requirement_names(declared) and 'tb-nightly' in ws.requirement_names(declared)
    assert ws.undecided(ws.requirement_names(declared)) == []
    carried = {w.name for w in ws.WHEELS}
    assert {'basicsr', 'lmdb', 'pydantic', 'pydantic-core'} <= carried
    assert not carried & (set(ws.IMAGE_HAS) | set(ws.NOT_CARRIED))
    assert all(w.why and w.version for w in ws.WHEELS) and all(ws.NOT_CARRIED.values())
    import basicsr
    sources = [os.path.join(d, f) for d, _, fs in os.walk(os.path.dirname(basicsr.__file__)) for f in fs
               if f.endswith('.py')]
    text = '\n'.join(open(f, encoding='utf-8').read() for f in sources)
    for module in ('addict', 'future', 'past', 'yapf'):
        assert not re.search(rf'^\s*(import|from)\s+{module}\b', text, re.M), module
    assert re.search(r'^\s*import lmdb\b', text, re.M)  # what lmdb is carried for


def test_requirement_names_and_undecided(lib):
    ws = lib('wheel_set')
    names = ws.requirement_names(['Pillow', 'numpy>=1.17', 'tb_nightly', 'ruff; extra == "test"',
                                  'PyYAML ; python_version >= "3"', 'shiny-new.dep[x]>=2'])
    assert names == ['pillow', 'numpy', 'tb-nightly', 'pyyaml', 'shiny-new-dep']
    assert ws.undecided(names) == ['shiny-new-dep']
    assert ws.wheel_file_name('lmdb-3.0.0-cp312-cp312-manylinux_2_17_x86_64.whl') == ('lmdb', '3.0.0')
    with pytest.raises(ValueError, match='not a wheel file name'):
        ws.wheel_file_name('lmdb-3.0.0.tar.gz')


def test_fetch_commands_target_the_gpu_image(lib):
    w, ws = lib('wheels'), lib('wheel_set')
    basicsr_wheel, lmdb_wheel = ws.WHEELS[:2]
    build = w.fetch_cmd(basicsr_wheel, '/d', py='python')
    assert build == ['python', '-m', 'pip', 'wheel', '--no-deps', '-w', '/d', 'basicsr==1.4.2']
    download = w.fetch_cmd(lmdb_wheel, '/d', py='python')
    assert download[:4] == ['python', '-m', 'pip', 'download'] and download[-1] == 'lmdb==3.0.0'
    for flag, value in (('--python-version', '3.12'), ('--implementation', 'cp'), ('-d', '/d')):
        assert download[download.index(flag) + 1] == value
    platforms = {download[i + 1] for i, a in enumerate(download) if a == '--platform'}
    assert {'manylinux_2_17_x86_64', 'manylinux_2_28_x86_64', 'manylinux_2_39_x86_64',
            'manylinux2014_x86_64'} <= platforms
    assert '--only-binary=:all:' in download and '--no-deps' in download


def test_wheel_files_manifest_and_fetched_set(lib, tmp_path):
    w = lib('wheels')
    with pytest.raises(ValueError, match='no .whl file'):
        w.wheel_files(str(tmp_path))
    made = [make_wheel(str(tmp_path), 'basicsr', '1.4.2', requires=['addict', 'numpy>=1.17', 'tb-nightly']),
            make_wheel(str(tmp_path), 'lmdb', '3.0.0', tag='cp312-cp312-manylinux_2_17_x86_64'),
            make_wheel(str(tmp_path), 'pydantic', '2.14.4', requires=[
                'annotated-types>=0.6.0', 'pydantic-core==2.50.5', 'typing-extensions>=4.16.0',
                'typing-inspection>=0.4.4', "email-validator>=2.0.0; extra == 'email'"]),
            make_wheel(str(tmp_path), 'pydantic-core', '2.50.5', tag='cp312-cp312-manylinux_2_17_x86_64',
                       requires=['typing-extensions>=4.16.0'])]
    made += [make_wheel(str(tmp_path), name, version) for name, version in (
        ('annotated-types', '0.8.0'), ('typing-inspection', '0.4.5'), ('typing-extensions', '4.16.0'))]
    files = w.wheel_files(str(tmp_path))
    assert files == sorted(made)
    assert w.check_fetched(files) == []
    info = w.manifest(files)
    assert [(r['name'], r['version']) for r in info['wheels']][:2] == [('annotated-types', '0.8.0'),
                                                                        ('basicsr', '1.4.2')]
    assert {r['name'] for r in info['wheels']} == {wheel.name for wheel in lib('wheel_set').WHEELS}
    assert info['total_bytes'] == sum(os.path.getsize(f) for f in made) and info['total_mib'] < 1
    assert info['python'] == '3.12' and 'addict' in info['not_carried'] and all(r['why'] for r in info['wheels'])
    assert 'basicsr    1.4.2' in w.manifest_text(info, str(tmp_path))

    other = tmp_path / 'other'
    other.mkdir()
    impure = make_wheel(str(other), 'basicsr', '1.4.2', tag='cp311-cp311-linux_x86_64', requires=['brand-new'])
    problems = w.check_fetched([impure, make_wheel(str(other), 'lmdb', '2.0.0')])
    assert any('not a pure-Python' in p for p in problems) and any('lmdb: fetched 2.0.0' in p for p in problems)
    assert any(p.startswith('brand-new: required') for p in problems)
    assert 'basicsr==1.4.2: not fetched' in w.check_fetched([f for f in files if 'basicsr' not in f])

    make_wheel(str(tmp_path), 'lmdb', '2.0.0', tag='cp312-cp312-manylinux_2_17_x86_64')
    with pytest.raises(ValueError, match='two wheels of lmdb'):
        w.wheel_files(str(tmp_path))


def test_a_folder_inside_the_repo_must_be_ignored(lib, tmp_path):
    w = lib('wheels')
    assert w.ensure_ignored(os.path.join(REPO, '.whl')) == '.whl'  # .gitignore covers it: nothing written
    assert w.ensure_ignored(str(tmp_path)) is None


@pytest.mark.slow
def test_the_offline_install_reads_only_the_command_line(lib, tmp_path):
    """--wheels' pip command installs the folder's wheels into a scratch target while every index pip could be
    pointed at (a variable, a configuration file) is unreachable: it never looks."""
    w = lib('wheels')
    wheel = make_wheel(str(tmp_path), 'gpucheck-probe-dist', '1.0', requires=['not-on-any-index'],
                       modules={'gpucheck_probe_mod': 'VALUE = 42\n'})
    conf = tmp_path / 'pip.conf'
    conf.write_text(f'[global]\nindex-url = http://127.0.0.1:9/simple\nconstraint = {tmp_path / "missing.txt"}\n')
    target = tmp_path / 'site'
    cmd = w.offline_install_cmd([wheel], str(target), py=PY)
    assert {'--no-index', '--no-deps', '--isolated'} <= set(cmd) and cmd[cmd.index('--target') + 1] == str(target)
    # each of these, if read, fails the install (no such constraint file) or sends pip to an unreachable index
    env = {'PIP_INDEX_URL': 'http://127.0.0.1:9/simple', 'PIP_CONSTRAINT': str(tmp_path / 'missing.txt'),
           'PIP_CONFIG_FILE': str(conf)}
    # without OFFLINE_PIP_ENV pip reads the file, without --isolated the variables
    assert run(cmd, cwd=tmp_path, env=env, timeout=300, check=False).returncode != 0
    assert run([a for a in cmd if a != '--isolated'], cwd=tmp_path, env=dict(env, **w.OFFLINE_PIP_ENV), timeout=300,
               check=False).returncode != 0
    env.update(w.OFFLINE_PIP_ENV)
    run(cmd, cwd=tmp_path, env=env, timeout=300)
    proc = run([PY, '-c', 'import gpucheck_probe_mod; print(gpucheck_probe_mod.VALUE)'], cwd=tmp_path,
               env={'PYTHONPATH': str(target)})
    assert proc.stdout.strip() == '42'
    assert w.offline_editable_cmd('/repo', py='python')[-2:] == ['-e', '/repo']
    assert '--no-build-isolation' in w.offline_editable_cmd('/repo', py='python')


@pytest.mark.slow
def test_setup_installs_the_wheels_and_the_stages_see_them(gc, lib, tmp_path, monkeypatch):
    """setup with --wheels: a module the probe misses is installed from the folder into a scratch folder, the
    probe after the install finds it, and the next stages' children have it on PYTHONPATH."""
    wheels = tmp_path / 'whl'
    wheels.mkdir()
    make_wheel(str(wheels), 'gpucheck-probe-dist', '1.0', modules={'gpucheck_probe_mod': 'VALUE = 7\n'})
    setup = lib('setup_stage')
    monkeypatch.setattr(setup, 'REQUIRED', (*setup.REQUIRED, 'gpucheck_probe_mod'))
    monkeypatch.setenv('PIP_INDEX_URL', 'http://127.0.0.1:9/simple')

    def after(st):
        st.step('import', [sys.executable, '-c', 'import gpucheck_probe_mod; print("got", gpucheck_probe_mod.VALUE)'])

    monkeypatch.setitem(gc.STAGE_FUNCS, 'bench', after)
    ctx = {'mode': 'cpu', 'cpu': True, 'budgets': {'setup': 300, 'bench': 60}, 'stages': ['setup', 'bench'],
           'out': str(tmp_path / 'out'), 'wheels': str(wheels), 'no_install': False}
    first, second = gc.run_stages(ctx)['stages']
    assert first['status'] == 'ok', first['notes']
    assert first['numbers']['missing'] == [] and 'setup/pip_wheels.log' in first['logs']
    assert first['numbers']['wheels_installed'] == ['gpucheck_probe_dist-1.0-py3-none-any.whl']
    assert os.path.isfile(os.path.join(first['numbers']['wheels_site'], 'gpucheck_probe_mod.py'))
    assert second['status'] == 'ok' and 'got 7' in (tmp_path / 'out' / 'bench' / 'import.log').read_text()

    parser = gc.build_parser()  # a later run of that stage alone still finds the install
    again = gc.make_context(parser.parse_args(['--cpu', '--wheels', str(wheels), '--stages', 'bench',
                                               str(tmp_path / 'again')]), parser)
    try:
        assert again['site'] == first['numbers']['wheels_site']
        assert gc.run_stages(again)['stages'][0]['status'] == 'ok'
        assert 'got 7' in (tmp_path / 'again' / 'bench' / 'import.log').read_text()
    finally:
        shutil.rmtree(again['site'])
