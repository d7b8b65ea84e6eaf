"""Test with BasicSR's pipeline and the add-on registered (Real-ESRGAN style).

    python mclir_basicsr/test.py -opt options/test_EDSR_SPN_x2.yml
    python -m mclir_basicsr.test -opt options/test_EDSR_SPN_x2.yml

results/ is written in the current working directory.
"""
import os
import sys

if __package__ in (None, ''):  # run as a file: import the package, not this folder's modules, from here
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from basicsr.test import test_pipeline  # noqa: E402

import mclir_basicsr  # noqa: E402,F401  registers ModelContrastiveModel / SPNLoss


def main():
    test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
