"""The SPN settings the comparison tool adds with ``--spn on`` unless told otherwise, which are the demo's
(:mod:`mclir_basicsr.demo`): measured by ``scripts/dev/sweep_demo.py`` on the demo's data (docs/evidence.md):
pixel space, lambda 0.1, subtract, K = 2 negatives refreshed every 50 / 200 iterations, decay 0.1."""
from collections import OrderedDict

DEMO_SPN = OrderedDict([('type', 'SPNLoss'), ('loss_weight', 0.1), ('feature', 'pixel'), ('criterion', 'l1'),
                        ('mode', 'subtract')])
DEMO_NEGATIVES = OrderedDict([('update_every', [50, 200]), ('decay', [0.1, 0.1]), ('init_decay', 0.1)])
