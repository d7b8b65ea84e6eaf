"""Where things are: the repository root, the interpreter the stages run, the step benchmark."""
import os
import sys


def find_repo(start=__file__):
    """The nearest folder above `start` that holds setup.py and the mclir_basicsr package (so this package
    works wherever inside scripts/ it lies)."""
    folder = os.path.dirname(os.path.abspath(start))
    while True:
        if os.path.isfile(os.path.join(folder, 'setup.py')) and os.path.isdir(os.path.join(folder, 'mclir_basicsr')):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            raise RuntimeError(f'no repository (setup.py and mclir_basicsr/) above {start}')
        folder = parent


REPO = find_repo()
PY = sys.executable  # the stages run under the interpreter that runs the check (the GPU image's python3)
BENCH_STEP = os.path.join(REPO, 'scripts', 'dev', 'bench_step.py')  # the one place that names the step benchmark
