"""Compare a baseline and an SPN run (same seeds, same budget): see mclir_basicsr/compare/.

    python scripts/compare.py BASELINE.yml SPN.yml [--out DIR] [--seeds 0 1 2] [--iters N]
    python scripts/compare.py OPT.yml --spn on|off [...] [--equal-time | --budget-seconds S]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mclir_basicsr.compare import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
