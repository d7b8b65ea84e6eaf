"""How often a finished 2-rank gloo training run aborts at exit, optionally under CPU load.

    python scripts/dev/ddp_exit_aborts.py [--runs 30] [--size 48] [--load 0] [--repo PATH]
    python scripts/dev/ddp_exit_aborts.py --minimal [--runs 30] [--repo PATH]

Each run is the tests' small DDP training (EDSR, 2 negatives, 4 iterations, validation on rank 0 only, so
rank 1 finishes first) through ``torchrun --nproc_per_node=2 -m mclir_basicsr.train --launcher pytorch``.
A run fails when any rank's exit code is not 0; an abort at exit prints "terminate called without an active
exception" (a gloo worker thread taking the GIL, to free a finished collective's work, while the interpreter
finalises), a race run by a rank that ends before the others, as rank 1 does during rank 0's final validation:
``--size`` (the side of the 6 ground-truth images) makes that validation longer; ``--load N`` keeps N busy
processes running meanwhile. ``--repo`` points at another checkout (e.g. a
``git worktree`` of an older revision) to measure it with the same data.

``--minimal`` runs the mechanism alone, without BasicSR, where the abort is likelier: two ranks join through the
add-on's launcher (``mclir_basicsr.compat.init_dist``, gloo, its exit handler), train a DDP convolution for 3 steps,
and rank 0 works 0.3 s longer (its final validation) while rank 1 ends.
"""
import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(HERE / 'tests'))
from test_resume import opts  # noqa: E402

from helpers import TORCHRUN, make_paired_dataset, write_yaml  # noqa: E402


def _spin():
    while True:
        pass


MINIMAL = '''
import time
import torch, torch.distributed as dist
from mclir_basicsr import compat
compat.init_dist('pytorch')
net = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(3, 3, 3))
for _ in range(3):
    net(torch.randn(1, 3, 8, 8)).sum().backward()
if dist.get_rank() == 0:
    time.sleep(0.3)
'''


def _command(args, work, data):
    if args.minimal:
        (work / 'minimal.py').write_text(MINIMAL)
        return [TORCHRUN, '--standalone', '--nproc_per_node=2', 'minimal.py']
    opt = opts('ddp', data, 4)
    opt['datasets']['train']['batch_size_per_gpu'] = 1
    write_yaml(work / 'ddp.yml', opt)
    return [TORCHRUN, '--standalone', '--nproc_per_node=2', '-m', 'mclir_basicsr.train', '-opt', 'ddp.yml',
            '--launcher', 'pytorch']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--size', type=int, default=48, help='side of the ground-truth images')
    parser.add_argument('--load', type=int, default=0, help='busy processes running meanwhile')
    parser.add_argument('--minimal', action='store_true', help='the mechanism alone (see above)')
    parser.add_argument('--repo', default=str(HERE), help='checkout whose mclir_basicsr is run')
    args = parser.parse_args()
    load = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for proc in load:
        proc.start()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.path.abspath(args.repo))
    failed = aborted = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = None if args.minimal else make_paired_dataset(os.path.join(tmp, 'x2'), 2, size=args.size)
            for i in range(args.runs):
                work = Path(tmp, f'run{i}')
                work.mkdir()
                proc = subprocess.run(_command(args, work, data), cwd=work, env=env, capture_output=True, text=True)
                failed += proc.returncode != 0
                aborted += 'terminate called without an active exception' in proc.stderr
                print(f'run {i + 1}: exit {proc.returncode}', flush=True)
    finally:
        for proc in load:
            proc.terminate()
    what = f'{args.repo}, ' + ('minimal' if args.minimal else f'training, {args.size}-pixel images')
    print(f'{what}: {failed} of {args.runs} runs failed, {aborted} with an abort at exit '
          f'({args.load} busy processes, {os.cpu_count()} CPUs)')


if __name__ == '__main__':
    main()
