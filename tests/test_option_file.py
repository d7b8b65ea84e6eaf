"""The option file itself: missing, a folder, not text, empty, not YAML, a tab, not a mapping, a key given twice.
Each is one line naming the file (and line and column where YAML knows them), from the checker, from BasicSR's
own train.py / test.py and from the add-on's entry points, before anything is written."""
import os

import pytest

from mclir_basicsr.preflight import PreflightError
from mclir_basicsr.preflight.option_file import check_option_file, model_type, option_path

from helpers import PY, make_paired_dataset, run, train_options, write_yaml

GOOD = 'name: x\nmodel_type: ModelContrastiveModel\nnetwork_g:\n  type: EDSR\n  num_feat: 16\n'
CASES = [
    ('', r'^{f}: empty \(expected a YAML mapping of options'),
    ('# only a comment\n', r'^{f}: empty \('),
    ('- name: x\n- model_type: y\n', r'^{f}:1: expected a mapping of options at the top .*got a list$'),
    ('just words\n', r"^{f}:1: expected a mapping of options at the top .*got the value 'just words'$"),
    ('name: x\nnetwork_g:\n\ttype: EDSR\n', r'^{f}:3:1: a tab in the indentation \(YAML indents with spaces only\)$'),
    ('name: x\nnetwork_g: {type: EDSR\nscale: 2\n',
     r"^{f}:3:6: not valid YAML: expected ',' or '}}', but got ':' \(while parsing a flow mapping that starts on "
     r'line 2\)$'),
    ('name: x\ntrain:\n  total_iter: 10\n    lr: 1\n', r'^{f}:4:7: not valid YAML: mapping values are not allowed'),
    ('name: x\nname: y\n', r'^{f}:2: name is given twice \(lines 1 and 2\); YAML would keep only the last'),
    ('train:\n  optim_g:\n    lr: 1\n    type: Adam\n    lr: 2\n',
     r'^{f}:5: train\.optim_g\.lr is given twice \(lines 3 and 5\)'),
    ('a:\n  - {b: 1, b: 2}\n', r'^{f}:2: a\[0\]\.b is given twice \(lines 2 and 2\)'),
]


@pytest.mark.parametrize('text,message', CASES)
def test_bad_files_are_named_in_one_line(tmp_path, text, message):
    path = tmp_path / 'opt.yml'
    path.write_text(text)
    with pytest.raises(PreflightError, match=message.format(f=str(path).replace('\\', '\\\\'))) as e:
        check_option_file(str(path))
    assert '\n' not in str(e.value)


def test_good_files_and_merge_keys_pass(tmp_path):
    path = tmp_path / 'opt.yml'
    path.write_text(GOOD + 'base: &b {lr: 1}\nother: &o {eps: 1}\ntrain:\n  <<: *b\n  <<: *o\n  x: 1\n')
    assert check_option_file(str(path)).startswith('name: x')
    path.write_text('name: x\nname: y\n')
    check_option_file(str(path), duplicates=False)  # another program's file: BasicSR's last-one-wins stays


TOP = 'name: x\nnum_gpu: 0\ndatasets:\n  train: {type: PairedImageDataset}\npath: {resume_state: null}\n'
SHAPES = [
    (TOP.replace('name: x', 'name:'), r"^name: expected a name for the run .*, got null \({f}:1\)$"),
    (TOP.replace('num_gpu: 0', 'num_gpu: -1'), r'^num_gpu: expected an integer >= 0 \(0: the CPU\) or auto, got -1'),
    (TOP.replace('num_gpu: 0', "num_gpu: '1'"), r"^num_gpu: expected an integer >= 0 .*, got '1' \({f}:2\)$"),
    (TOP.replace('num_gpu: 0\n', ''), r'^num_gpu: not set \(expected the number of GPUs: 0 for the CPU, or auto; '
                                      r'BasicSR reads it\) \({f}\)$'),
    (TOP.replace('path: {resume_state: null}', 'path:'), r'^path: expected a mapping, e\.g\. \{{pretrain_network_g'),
    (TOP.replace('path: {resume_state: null}\n', ''), r'^path: not set \(expected a mapping'),
    (TOP.replace('  train: {type: PairedImageDataset}', '  - train'), r'^datasets: expected a mapping, .*got a list'),
    (TOP.replace('{type: PairedImageDataset}', '[PairedImageDataset]'),
     r'^datasets\.train: expected a mapping, e\.g\. .*, got a list \({f}:4\)$'),
    (TOP + 'val:\n  - val_freq: 1\n', r'^val: expected a mapping, e\.g\. .*, got a list \({f}:6\)$'),
    (TOP + 'logger: 100\n', r'^logger: expected a mapping, e\.g\. .*, got 100 \({f}:6\)$'),
    (TOP + 'train: true\n', r'^train: expected a mapping, e\.g\. .*, got true'),
    (TOP + 'manual_seed: 1.5\n', r'^manual_seed: expected an integer in \[0, 2\*\*32 - 1\] or null, got 1\.5'),
    (TOP + 'manual_seed: -1\n', r'^manual_seed: expected an integer in \[0, 2\*\*32 - 1\] or null, got -1'),
    (TOP.replace('name: x', 'name: 123'), r"^name: expected a name for the run .* in quotes, got 123 \({f}:1\)$"),
    (TOP.replace('  train:', '  1:'), r'^datasets\.1: expected a phase name as the key .*, got 1 \({f}:4\)$'),
    (TOP.replace('{type: PairedImageDataset}', '{type: PairedImageDataset, dataroot_gt: 5}'),
     r'^datasets\.train\.dataroot_gt: expected a path \(or null\), got 5 \({f}:4\)$'),
    (TOP.replace('{resume_state: null}', '{pretrain_network_g: [a.pth]}'),
     r'^path\.pretrain_network_g: expected a path \(or null\), got a list \({f}:5\)$'),
]


@pytest.mark.parametrize('text,message', SHAPES)
def test_what_parse_options_reads(tmp_path, text, message):
    path = tmp_path / 'opt.yml'
    path.write_text(text)
    check_option_file(str(path))  # the file itself is fine: its sections are checked only when asked
    with pytest.raises(PreflightError, match=message.format(f=str(path))):
        check_option_file(str(path), sections=True)


def test_nulls_left_to_later_checks(tmp_path):
    path = tmp_path / 'opt.yml'
    path.write_text(TOP + 'val: ~\nnetwork_d: null\nmanual_seed: null\nnum_gpu_extra: 1\n')
    check_option_file(str(path), sections=True)
    path.write_text(TOP + 'manual_seed: 4294967295\n')
    check_option_file(str(path), sections=True)
    path.write_text(TOP.replace('name: x', "name: '123'").replace('{resume_state: null}', '{resume_state: ~/a.state, '
                                                                   'pretrain_network_g: null, models: 5}'))
    check_option_file(str(path), sections=True)
    path.write_text(TOP.replace('num_gpu: 0', 'num_gpu: auto'))
    check_option_file(str(path), sections=True)


def test_missing_folder_and_binary(tmp_path):
    with pytest.raises(PreflightError, match=r'gone\.yml: no such option file \(-opt expects'):
        check_option_file(str(tmp_path / 'gone.yml'))
    with pytest.raises(PreflightError, match=r': is a folder \(-opt expects'):
        check_option_file(str(tmp_path))
    (tmp_path / 'b.yml').write_bytes(b'name: \xff\xfe\n')
    with pytest.raises(PreflightError, match=r'b\.yml: not a text file \(UTF-8 expected; byte 6'):
        check_option_file(str(tmp_path / 'b.yml'))


def test_option_path_and_model_type():
    assert option_path(['train.py', '-opt', 'a.yml', '--debug']) == 'a.yml'
    assert option_path(['train.py', '--opt=b.yml']) == 'b.yml'
    assert option_path(['train.py', '-opt']) is None and option_path(['x']) is None
    assert model_type('name: x\nmodel_type: "ModelContrastiveModel"\n  bad: [\n') == 'ModelContrastiveModel'
    assert model_type('network_g:\n  model_type: X\n') is None  # top level only


# --------------------------------------------------------------------------- end to end
def _basicsr_script(name):
    import basicsr
    return os.path.join(os.path.dirname(basicsr.__file__), name)


def _entry_points():
    return [([PY, _basicsr_script('train.py')], 'train'), ([PY, _basicsr_script('test.py')], 'test'),
            ([PY, '-m', 'mclir_basicsr.train'], 'train'), ([PY, '-m', 'mclir_basicsr.test'], 'test')]


def _one_line_error(proc, pattern):
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert pattern in lines[0], lines[0]


def test_through_basicsr_scripts_and_entry_points(tmp_path):
    data = make_paired_dataset(str(tmp_path / 'data'), 2, n=2)
    opt = train_options('dup', data, model_type='ModelContrastiveModel')
    write_yaml(tmp_path / 'dup.yml', opt)
    text = (tmp_path / 'dup.yml').read_text()
    (tmp_path / 'dup.yml').write_text(text + 'name: again\n')
    (tmp_path / 'tab.yml').write_text(text.replace('\n  ', '\n\t', 1))
    (tmp_path / 'empty.yml').write_text('')
    write_yaml(tmp_path / 'list.yml', dict(opt, val=[{'val_freq': 1}]))
    write_yaml(tmp_path / 'typo.yml', dict(opt, model_type='ModelContrastivModel'))  # BasicSR: KeyError, late
    for cmd, _ in _entry_points():
        for name, pattern in (('dup.yml', 'dup.yml:'), ('tab.yml', 'a tab in the indentation'),
                              ('empty.yml', 'empty.yml: empty'), ('gone.yml', 'gone.yml: no such option file'),
                              ('list.yml', 'val: expected a mapping, e.g. {val_freq'),
                              ('typo.yml', "model_type: 'ModelContrastivModel' is not a registered model (did you "
                                           "mean 'ModelContrastiveModel'?) (typo.yml)")):
            proc = run(cmd + ['-opt', name], cwd=tmp_path, check=False)
            _one_line_error(proc, pattern)
    assert sorted(os.listdir(tmp_path)) == ['data', 'dup.yml', 'empty.yml', 'list.yml', 'tab.yml', 'typo.yml']


def test_another_programs_duplicate_keys_load_as_before(tmp_path):
    """SRModel's file with a key written twice: BasicSR's last-one-wins, as without the add-on (the run gets past
    the option file: it stops only at the data, which is missing)."""
    opt = train_options('other', str(tmp_path / 'nodata'))
    assert opt['model_type'] == 'SRModel'
    write_yaml(tmp_path / 'other.yml', opt)
    (tmp_path / 'other.yml').write_text((tmp_path / 'other.yml').read_text() + 'num_gpu: 0\n')
    proc = run([PY, _basicsr_script('train.py'), '-opt', 'other.yml'], cwd=tmp_path, check=False)
    assert 'is given twice' not in proc.stderr
