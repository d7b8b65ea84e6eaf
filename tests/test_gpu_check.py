"""scripts/dev/gpu_check.py: its --cpu mode end to end (so the GPU script cannot rot), and its time budgets."""
import json
import os
import sys
import tarfile

import pytest

from helpers import PY, REPO, load_script, run

SCRIPT = os.path.join(REPO, 'scripts', 'dev', 'gpu_check.py')


@pytest.fixture(scope='module')
def gc():
    return load_script('dev/gpu_check')


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


def test_junit_counts(gc, tmp_path):
    path = tmp_path / 'j.xml'
    path.write_text('<testsuites><testsuite><testcase classname="a" name="ok"/>'
                    '<testcase classname="a" name="bad"><failure message="x"/></testcase>'
                    '<testcase classname="a" name="err"><error message="y"/></testcase>'
                    '<testcase classname="a" name="s1"><skipped message="needs CUDA"/></testcase>'
                    '<testcase classname="a" name="s2"><skipped message="needs CUDA"/></testcase>'
                    '</testsuite></testsuites>')
    counts = gc.junit_counts(str(path))
    assert (counts['passed'], counts['failed'], counts['skipped']) == (1, 2, 2)
    assert counts['failures'] == ['a::bad', 'a::err'] and counts['skip_reasons'] == {'needs CUDA': 2}


@pytest.mark.parametrize('argv,message', [
    (['--budget', 'tests:5', 'o'], 'expected STAGE=SECONDS'),
    (['--stages', 'setup,warp', 'o'], "unknown stage.*warp"),
    (['--wheels', '/no/such/dir', 'o'], 'no such folder'),
    ([], 'OUT_DIR is required'),
])
def test_bad_arguments_are_one_line_errors(gc, tmp_path, capsys, monkeypatch, argv, message):
    import re
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        gc.main(argv)
    assert re.search(message, capsys.readouterr().err)
