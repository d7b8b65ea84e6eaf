"""Train with BasicSR's pipeline and the add-on registered (Real-ESRGAN style).

    python mclir_basicsr/train.py -opt options/train_SwinIR_SPN.yml
    python -m mclir_basicsr.train -opt options/train_SwinIR_SPN.yml [--auto_resume] [--debug]
    torchrun --nproc_per_node=4 -m mclir_basicsr.train -opt X.yml --launcher pytorch

experiments/ and tb_logger/ are written in the current working directory.
"""
import os
import signal
import sys

if __package__ in (None, ''):  # run as a file: import the package, not this folder's modules, from here
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from basicsr.train import train_pipeline  # noqa: E402

import mclir_basicsr  # noqa: E402,F401  registers ModelContrastiveModel / SPNLoss


def main():
    # SIGTERM (a scheduler stopping the job) before training starts unwinds like Ctrl-C: temporary files are
    # removed. Once an add-on run trains, both save a state first (mclir_basicsr.runs.interrupts).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    train_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
