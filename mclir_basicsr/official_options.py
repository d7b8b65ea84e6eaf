"""The official fork's option keys (Aitical/MCLIR), read as this add-on's when `negatives` / `spn_opt` are absent,
so the fork's published option files train with little editing: ``neg_iter`` / ``neg_decay`` / ``neg_start`` are
the negatives' periods, decays and initial blend, ``neg_t`` the adaptive refresh's threshold, and a subtracted
``perceptual_opt`` the SPN term."""
from mclir_basicsr.validate import fail

# The official fork's keys (Aitical/MCLIR), read when `negatives` / `spn_opt` are absent.
OFFICIAL = {
    'neg_iter': 'negatives.update_every',
    'neg_decay': 'negatives.decay',
    'neg_start': 'negatives.init_decay',
    'neg_t': 'negatives.adaptive_threshold (with refresh: adaptive)',
    'perceptual_opt': 'spn_opt (subtracted, mode: subtract)',
}
OFFICIAL_NEGATIVE_KEYS = tuple(k for k in OFFICIAL if k.startswith('neg_'))  # any of them turns the official style on


def from_official(train):
    """(negatives, spn_opt) in this add-on's keys, from a train section in the fork's style."""
    negatives = {}
    for old, new in (('neg_iter', 'update_every'), ('neg_decay', 'decay'), ('neg_start', 'init_decay')):
        if old in train:
            negatives[new] = train[old]
    if 'neg_t' in train:  # only the fork's adaptive FFA-Net model reads it
        negatives.update(refresh='adaptive', adaptive_threshold=train['neg_t'])
    percep = train.get('perceptual_opt')
    if not isinstance(percep, dict):
        fail('train.perceptual_opt', 'a PerceptualLoss mapping (the official fork subtracts it)', percep)
    percep = dict(percep)
    if percep.pop('type', 'PerceptualLoss') != 'PerceptualLoss':
        fail('train.perceptual_opt.type', 'PerceptualLoss', train['perceptual_opt'].get('type'))
    if percep.pop('style_weight', 0) not in (0, 0.0, None):
        fail('train.perceptual_opt.style_weight', '0 (a subtracted style term is not supported)',
              train['perceptual_opt']['style_weight'])
    spn = {'type': 'SPNLoss'}
    renames = {'vgg_type': 'feature', 'perceptual_weight': 'loss_weight'}
    for key, value in percep.items():
        if key == 'criterion' and value == 'fro':
            fail('train.perceptual_opt.criterion', 'l1 or l2', value)
        spn[renames.get(key, key)] = value
    spn.setdefault('feature', 'vgg19')  # BasicSR's PerceptualLoss default
    spn.setdefault('loss_weight', 1.0)
    return negatives, spn
