"""``python -m mclir_basicsr.compare``: the command line (see :mod:`mclir_basicsr.compare.cli`)."""
import sys

from mclir_basicsr.compare.cli import main

sys.exit(main())
