"""The SPN settings the comparison tool adds with ``--spn on`` unless told otherwise, which are the demo's
(:mod:`mclir_basicsr.demo`). Pixel space (no weight file needed): chosen by ``scripts/dev/sweep_demo.py`` on the
demo's data (docs/evidence.md): lambda 0.1, subtract, K = 2 negatives refreshed every 50 / 200 iterations, decay
0.1. VGG16 space: the paper's negatives and layers with the loss weight and estimator that
``scripts/dev/vgg_evidence.py`` measured (docs/vgg_evidence.md)."""
from collections import OrderedDict

DEMO_SPN = OrderedDict([('type', 'SPNLoss'), ('loss_weight', 0.1), ('feature', 'pixel'), ('criterion', 'l1'),
                        ('mode', 'subtract')])
DEMO_NEGATIVES = OrderedDict([('update_every', [50, 200]), ('decay', [0.1, 0.1]), ('init_decay', 0.1)])

# VGG16 (the paper's feature space): the official negatives (K = 4, every 100 / 200 / 500 / 1000 iterations, decay
# 0.1) and layers; the term on 4 of the 8 samples of each batch, one per negative (split: unbiased, and what makes
# the demo fit in minutes); lambda for the HED weights' Caffe activation scale (docs/vgg_weights.md).
DEMO_VGG_SPN = OrderedDict([('type', 'SPNLoss'), ('loss_weight', 0.001), ('feature', 'vgg16'),
                            ('layer_weights', OrderedDict([('relu1_2', 0.2), ('relu2_2', 0.3), ('relu3_3', 0.5)])),
                            ('criterion', 'l1'), ('mode', 'subtract')])
DEMO_VGG_NEGATIVES = OrderedDict([('update_every', [100, 200, 500, 1000]), ('decay', [0.1] * 4), ('init_decay', 0.1),
                                  ('split_batch', True), ('samples_per_step', 4)])
