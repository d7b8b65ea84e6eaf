"""Write the training states that tests/test_legacy_state.py resumes (run once, with the code of the commit
named in README.txt here; rerunning it with newer code writes states of that code instead).

    python tests/data/legacy_states/make.py OUT_DIR

Two tiny runs on the x2 test data (tests/helpers.make_paired_dataset): ``periodic`` (SPN in pixel space, two
periodic negatives, split batch, float16 amp with its GradScaler) and ``adaptive`` (the adaptive refresh, the
uncertainty-weighted loss next to SPN). Each trains 8 iterations with a checkpoint and a state every 4; the
files kept are the iteration-4 state and checkpoint (what a resume loads) and the iteration-8 checkpoint (what
the old code reached without stopping).
"""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))

from helpers import make_paired_dataset, train_options, train_run  # noqa: E402

NETWORK = {'num_feat': 8, 'num_block': 1}
RUNS = {
    'periodic': dict(spn={'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'},
                     negatives={'update_every': [1, 3], 'decay': [0.5, 0.9], 'init_decay': 0.2, 'split_batch': True},
                     extra_train={'amp': 'float16'}),
    'adaptive': dict(spn={'type': 'SPNLoss', 'loss_weight': 0.3, 'feature': 'pixel'},
                     negatives={'update_every': [1, 1], 'init_decay': 0.2, 'refresh': 'adaptive',
                                'adaptive_threshold': 0.05, 'adaptive_min_gap': 2},
                     extra_train={'uncertainty_opt': {'type': 'UncertaintyWeightedLoss', 'loss_weight': 0.5}}),
}


def options(name, data_root):
    """The option dict of run ``name`` (also used by the test, with the same data)."""
    opt = train_options(name, data_root, total_iter=8, val=False, **RUNS[name])
    opt['network_g'].update(NETWORK)
    opt['logger']['save_checkpoint_freq'] = 4
    opt['logger']['use_tb_logger'] = False
    return opt


def main(out):
    import pathlib
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        data = make_paired_dataset(str(work / 'x2'), 2)
        for name in RUNS:
            train_run(work, options(name, data))
            exp = work / 'experiments' / name
            dst = os.path.join(out, name)
            os.makedirs(dst, exist_ok=True)
            for rel in ('training_states/4.state', 'models/net_g_4.pth', 'models/net_g_8.pth'):
                shutil.copy(exp / rel, os.path.join(dst, os.path.basename(rel)))


if __name__ == '__main__':
    main(sys.argv[1])
