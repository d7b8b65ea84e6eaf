"""The shipped demo option pair works through BasicSR's own installed scripts, as
docs/basicsr_scripts.md ("Using BasicSR's own scripts") says, right after install."""
import glob
import os
import re

import basicsr
import pytest
import yaml

from mclir_basicsr import demo
from mclir_basicsr.options import parse_mclir_options

from helpers import PY, REPO, load_script, run, write_yaml

TRAIN = os.path.join('options', 'demo', 'train_demo_SPN.yml')
TEST = os.path.join('options', 'demo', 'test_demo_SPN.yml')
BASICSR = os.path.dirname(basicsr.__file__)


def _load(rel):
    with open(os.path.join(REPO, rel)) as f:
        return yaml.safe_load(f)


def test_pair_points_at_the_demo_data_and_at_each_other():
    train, test = _load(TRAIN), _load(TEST)
    data = os.path.join(demo.build_parser().parse_args([]).out, 'data')  # where --data-only writes by default
    roots = [d[k] for opt in (train, test) for d in opt['datasets'].values() for k in ('dataroot_gt', 'dataroot_lq')]
    assert roots and all(r.startswith(data + '/') and not os.path.isabs(r) for r in roots), roots
    assert test['path']['pretrain_network_g'] == f'experiments/{train["name"]}/models/net_g_latest.pth'
    assert test['network_g'] == train['network_g']
    spn = parse_mclir_options(train).spn
    assert spn.feature == 'pixel' and 100 <= train['train']['total_iter'] <= 1000
    page = open(os.path.join(REPO, 'docs', 'basicsr_scripts.md')).read()
    section = page[page.index("# Using BasicSR's own scripts"):]
    first = section[section.index('```bash'):].split('```')[1]
    assert 'python -m mclir_basicsr.demo --data-only' in first
    assert f'$BASICSR/train.py -opt {TRAIN}' in first and f'$BASICSR/test.py  -opt {TEST}' in first


@pytest.mark.slow
def test_demo_pair_through_installed_basicsr_scripts(tmp_path):
    """Data where --data-only puts it (small here), the train file with 4 iterations, the test file as shipped."""
    demo.build_dataset(str(tmp_path / 'demo_output' / 'data'), tile=48, val_size=(48, 64),
                       train_photos=demo.TRAIN_PHOTOS[:2], val_photos=demo.VAL_PHOTOS[:2])
    train = _load(TRAIN)
    train['train']['total_iter'] = 4
    train['train']['scheduler']['periods'] = [4]
    train['val']['val_freq'] = 4
    train['logger'].update(print_freq=2, save_checkpoint_freq=4)
    train['datasets']['train']['dataset_enlarge_ratio'] = 1
    os.makedirs(tmp_path / 'options' / 'demo')
    write_yaml(tmp_path / TRAIN, train)
    write_yaml(tmp_path / TEST, _load(TEST))
    env = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    proc = run([PY, os.path.join(BASICSR, 'train.py'), '-opt', TRAIN], cwd=tmp_path, env=env)
    assert 'End of training' in proc.stdout + proc.stderr
    assert (tmp_path / 'experiments' / train['name'] / 'models' / 'net_g_latest.pth').is_file()
    proc = run([PY, os.path.join(BASICSR, 'test.py'), '-opt', TEST], cwd=tmp_path, env=env)
    psnr = re.findall(r'# psnr: ([\d.]+)', proc.stdout + proc.stderr)
    assert psnr and float(psnr[-1]) > 15, proc.stdout[-2000:]  # 19 dB after 4 iterations on 48x64 crops
    images = glob.glob(str(tmp_path / 'results' / _load(TEST)['name'] / 'visualization' / '*' / '*.png'))
    assert len(images) == 2


def test_bench_threads_reads_seconds_per_iteration_from_basicsr_logs():
    bench = load_script('dev/bench_threads')
    head = '2026-11-29 05:00:{} INFO: '
    line = head + '[train..][epoch:  0, iter:{:>8}, lr:(9.770e-04,)] [eta: 0:01:18, time (data): 1.039 (0.021)]'
    log = '\n'.join([head.format('00,000') + 'Start training from epoch: 0, iter: 0',
                     line.format('10,000', 10), line.format('12,500', 20), line.format('20,000', 50)])
    assert bench.seconds_per_iter(log) == (0.25, 40, False)
    start = bench._stamp('2026-11-29 05:00:00,000')
    assert bench.seconds_per_iter('\n'.join(log.splitlines()[:2]), stopped_at=start + 40) == (2.0, 10, True)
    assert bench.seconds_per_iter('no log') == (None, 0, False)
