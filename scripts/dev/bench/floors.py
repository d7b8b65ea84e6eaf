"""Medians and quartiles over rounds, the floor of each K (the baseline step plus what SPN cannot avoid
doing, from the components) and every row's "x baseline" and "x floor": medians over rounds of same-round
ratios."""
import math
import re
import statistics


def summarize(samples):
    """median, p25, p75 (inclusive quartiles) of per-iteration seconds; the samples in round order."""
    s = sorted(samples)
    if len(s) == 1:
        return {'median_s': s[0], 'p25_s': s[0], 'p75_s': s[0], 'samples_s': list(samples)}
    p25, _, p75 = statistics.quantiles(s, n=4, method='inclusive')
    return {'median_s': statistics.median(s), 'p25_s': p25, 'p75_s': p75, 'samples_s': list(samples)}


SUBSET_RE = re.compile(r'^subset(\d+)$')  # the +subsetN modifier: negatives.samples_per_step N


BATCH_RE = re.compile(r'^(acc|bx)(\d+)$')  # +accN: N micro-batches of B per step; +bxN: one batch of N x B


def samples_of(mods, batch):
    """Samples fed per iteration (one optimiser step): N x B with +accN or +bxN, else B."""
    return batch * next((int(BATCH_RE.match(m).group(2)) for m in mods if BATCH_RE.match(m)), 1)


def subset_of(mods):
    """N of a +subsetN modifier among ``mods``, else None."""
    return next((int(SUBSET_RE.match(m).group(1)) for m in mods if SUBSET_RE.match(m)), None)


def floor_key(variant):
    """The floor a row is compared with: 'split' (one batch of negative forwards, any K) or 'K', with '@N' when
    the SPN term is on N samples of the batch ('split@2': the negatives run 2 samples in all; '4@2': 4 x 2)."""
    key = 'split' if 'split' in variant['mods'] else str(variant['k'])
    n = subset_of(variant['mods'])
    return f'{key}@{n}' if n else key


def parse_floor_key(key, batch):
    """'4' / 'split' / 'split@2' -> (negative passes over the used samples, used samples, label tag)."""
    passes, _, used = key.partition('@')
    used = min(int(used), batch) if used else batch
    return (1 if passes == 'split' else int(passes)), used, (' (split)' if passes == 'split' else '')


def _part(name, used, batch):
    """The component timed for ``name`` on ``used`` samples (the whole batch: the plain name)."""
    return name if used == batch else f'{name}@{used}'


def floor_terms(components, baseline_s, key, batch):
    """[(label, seconds)] of the floor `key` (floor_key), from {component: seconds}."""
    m, used, tag = parse_floor_key(key, batch)
    terms = [('baseline step' if baseline_s is not None else 'net fwd+bwd (no baseline row)',
              baseline_s if baseline_s is not None else components['net_fwd_bwd']),
             (f'{m} x net fwd no-grad ({used}){tag}', m * components[_part('net_fwd_nograd', used, batch)])]
    if 'vgg_fwd_out' in components:
        fwd, fwd_bwd = components[_part('vgg_fwd_out', used, batch)], components[_part('vgg_fwd_bwd_out', used, batch)]
        terms += [(f'VGG fwd out ({used})', fwd), (f'VGG bwd out ({used})', max(fwd_bwd - fwd, 0.0)),
                  (f'VGG no-grad ({m}x{used}){tag}', components[_part(f'vgg_nograd_k{m}', used, batch)])]
    return terms


def floor_faults(faults, baseline_faults, key, batch):
    """Page faults per step of the floor's parts, as in floor_terms."""
    m, used, _ = parse_floor_key(key, batch)
    return (baseline_faults + m * faults[_part('net_fwd_nograd', used, batch)]
            + faults[_part('vgg_fwd_bwd_out', used, batch)] + faults[_part(f'vgg_nograd_k{m}', used, batch)])


def _per_round(samples, refs):
    """The median over rounds of sample / reference of the same round."""
    ratios = [s / r for s, r in zip(samples, refs) if s is not None and r]
    return statistics.median(ratios) if ratios else None


def _floors(report, keys, comps, base_row, base_rounds):
    """{key: floor} from the components' medians (terms, floor_s) and rounds (rounds_s)."""
    batch, floors = report['config']['batch'], {}
    if 'error' in comps:
        return floors
    medians = {n: c['median_s'] for n, c in comps['components'].items()}
    for key in keys:
        terms = floor_terms(medians, base_row and base_row['median_s'], key, batch)
        rounds = [sum(x for _, x in floor_terms(c, b, key, batch)) if c is not None else None
                  for c, b in zip(comps['samples'], base_rounds)]
        floors[key] = {'terms': terms, 'floor_s': sum(x for _, x in terms), 'rounds_s': rounds,
                       'measured_over_floor': {}}
        if not all(math.isfinite(x) for _, x in terms):
            floors[key]['floor_s'] = float('nan')
        faults = comps.get('minor_faults_per_call')
        if faults and base_row and 'vgg_fwd_bwd_out' in faults:
            floors[key]['minor_faults'] = floor_faults(faults, base_row['minor_faults_per_iter'], key, batch)
    return floors


def add_ratios(report, device, keys, records, comps):
    """x baseline and x floor of every row: the median over rounds of the row's time in a round over the
    float32 baseline's (the floor's) in the same round. The floor's terms shown are the components' medians.
    `keys`: the floors to compute ('K' strings, 'split')."""
    rows = [r for r in report['results'] if r['device'] == device and 'error' not in r]
    base_row = next((r for r in rows if r['kind'] == 'baseline' and not r['mods']), None)
    base_rounds = records[base_row['variant']]['samples'] if base_row else [None] * report['config']['repeats']
    floors = _floors(report, keys, comps, base_row, base_rounds)
    for r in rows:
        samples = records[r['variant']]['samples']
        r['ratio_baseline'] = _per_round(samples, base_rounds)
        fl = floors.get(floor_key(r)) if r['k'] else None
        r['ratio_floor'] = _per_round(samples, fl['rounds_s']) if fl else None
        if r['ratio_floor'] is not None:
            fl['measured_over_floor'][r['variant']] = r['ratio_floor']
    report['floor'][device] = floors
