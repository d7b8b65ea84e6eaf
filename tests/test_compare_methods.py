"""The comparison tool with any method arm (SPN, CR, the uncertainty loss): naming, on/off, checks, the
report; scripts/compare_methods.py end to end (several arms against one baseline, a lambda=0 arm exact)."""
import json

import pytest

from mclir_basicsr import compare as cmp
from mclir_basicsr.compare.cli import DEFAULT_CR, build_parser, option_pair
from mclir_basicsr.compare.pipeline import check_pair

from helpers import load_script, train_options, write_yaml

CR = {'type': 'CRLoss', 'loss_weight': 0.1, 'feature': 'pixel'}
SPN = {'type': 'SPNLoss', 'loss_weight': 0.1, 'feature': 'pixel'}
UNCERTAINTY = {'type': 'UncertaintyWeightedLoss'}


def base_opt(**kw):
    return train_options('b', 'data', total_iter=5, **kw)


def test_method_names_and_descriptions():
    base = base_opt()
    cr = cmp.add_cr(base, CR)
    spn_unc = cmp.add_sections(cmp.add_spn(base, SPN), {'uncertainty_opt': UNCERTAINTY}, '--test')
    assert [cmp.method_name(o) for o in (base, cr, cmp.add_spn(base, SPN), spn_unc)] == \
        ['none', 'CR', 'SPN', 'SPN+uncertainty']
    assert not cmp.has_method(base) and cmp.has_method(cr) and not cmp.has_spn(cr)
    assert cmp.spn_description(cr) == 'feature pixel, weight 0.1, criterion l1'
    desc = cmp.spn_description(spn_unc)
    assert desc.startswith('SPN: feature pixel, lambda 0.1') and '; uncertainty: l1, weight 1, floor 0.1' in desc
    assert cmp.spn_description(base) == 'none'
    assert cmp.method_name(cmp.add_sections(base, {'cr_opt': None}, '--test')) == 'none'  # null = absent, as BasicSR


def test_strip_method_drops_every_addition():
    base = base_opt()
    every = cmp.add_sections(cmp.add_spn(base, SPN, {'update_every': [3]}),
                             {'cr_opt': CR, 'uncertainty_opt': UNCERTAINTY}, '--test')
    assert cmp.strip_method(every) == dict(base, model_type='ModelContrastiveModel')
    only_unc = cmp.add_sections(base, {'uncertainty_opt': UNCERTAINTY}, '--test')
    del only_unc['train']['pixel_opt']
    with pytest.raises(cmp.CompareError, match='no loss'):
        cmp.strip_method(only_unc)


def test_check_pair_accepts_any_method_and_names_it():
    base = base_opt()
    cr = cmp.add_cr(base, CR)
    assert check_pair(cmp.strip_method(cr), cr) == []
    with pytest.raises(cmp.CompareError, match='baseline option file uses CR'):
        check_pair(cr, cr)
    with pytest.raises(cmp.CompareError, match='adds nothing over the baseline'):
        check_pair(base, base)
    amp = cmp.add_cr(base_opt(extra_train={'amp': 'bfloat16'}), CR)
    assert 'mix CR with precision' in check_pair(base, amp)[0]


def pair(tmp_path, opt, *flags):
    write_yaml(tmp_path / 'o.yml', json.loads(json.dumps(opt)))  # plain dicts for yaml.safe_dump
    return option_pair(build_parser().parse_args([str(tmp_path / 'o.yml'), *flags]))


def test_single_file_cr_modes(tmp_path):
    base = base_opt()
    b, m = pair(tmp_path, base, '--cr', 'on')
    assert not cmp.has_method(b) and m['train']['cr_opt'] == DEFAULT_CR and cmp.method_name(m) == 'CR'
    b, m = pair(tmp_path, base, '--cr', 'on', '--spn', 'on', '--cr-opt', '{type: CRLoss, loss_weight: 0.5}')
    assert cmp.method_name(m) == 'SPN+CR' and m['train']['cr_opt'] == {'type': 'CRLoss', 'loss_weight': 0.5}
    b, m = pair(tmp_path, cmp.add_cr(base, CR), '--cr', 'off')
    assert cmp.method_name(b) == 'none' and cmp.method_name(m) == 'CR'
    b, m = pair(tmp_path, cmp.add_cr(base, CR))  # default: the file uses a method, so it is the method's
    assert cmp.method_name(b) == 'none' and cmp.method_name(m) == 'CR'
    with pytest.raises(cmp.CompareError, match='already uses CR'):
        pair(tmp_path, cmp.add_cr(base, CR), '--spn', 'on')
    with pytest.raises(cmp.CompareError, match='cannot be combined'):
        pair(tmp_path, base, '--cr', 'on', '--spn', 'off')
    with pytest.raises(cmp.CompareError, match='--cr off: .* does not use SPN or another method'):
        pair(tmp_path, base, '--cr', 'off')


def fake_run(label, seed, psnr, s_per_iter):
    r = cmp.Run(label, seed, f'{label}{seed}', '', '', 10, 5)
    r.result = {'images': [{'psnr': psnr, 'ssim': 0.9}], 'psnr': psnr, 'ssim': 0.9, 's_per_iter': s_per_iter}
    return r


def test_report_names_the_method():
    runs = [fake_run('baseline', s, 30.0 + s, 0.02) for s in (0, 1)] + [fake_run('spn', s, 30.05 + s, 0.03)
                                                                        for s in (0, 1)]
    table, per_seed, stats = cmp.summarize(runs, [('val', 'a', None, None)])
    info = {'title': 'CR vs baseline', 'method': 'CR', 'baseline_name': 'b', 'spn_name': 'c', 'spn': 'x',
            'iters': 10, 'metric_note': '1 image'}
    md = cmp.markdown(table, per_seed, stats, info)
    assert '; CR: `c` (x)' in md and '| image | PSNR baseline | PSNR CR |' in md and '| CR | 0.0300 |' in md
    assert 'CR better in 2/2 seeds' in md and 'CR costs 1.50x' in md and 'SPN' not in md
    # summaries of the SPN-only days (no 'method' key) read as SPN
    assert 'SPN better in 2/2 seeds' in cmp.markdown(table, per_seed, stats, dict(info, method=None))


def test_check_arms_errors():
    from mclir_basicsr.compare.methods import check_arms
    base = base_opt()
    with pytest.raises(cmp.CompareError, match='no method arm'):
        check_arms(base, {})
    with pytest.raises(cmp.CompareError, match='arm name'):
        check_arms(base, {'a b': cmp.add_cr(base, CR)})
    with pytest.raises(cmp.CompareError, match='arm plain: the second option file adds nothing'):
        check_arms(base, {'plain': base})
    with pytest.raises(cmp.CompareError, match='the baseline uses CR'):
        check_arms(cmp.add_cr(base, CR), {'x': cmp.add_cr(base, CR)})


@pytest.mark.slow
def test_compare_methods_script_end_to_end(tmp_path):
    """Every arm against ONE baseline run per seed; a CR arm with weight 0 reproduces the baseline exactly
    (same initialisation, same batches: the CR term alone is what differs between arms)."""
    script = load_script('compare_methods')
    out = tmp_path / 'm'
    result = script.main(['--out', str(out), '--quick', '--iters', '2', '--seeds', '0',
                          '--arm', 'CR_w0={cr_opt: {type: CRLoss, loss_weight: 0, feature: pixel}}'])
    rows = {r['arm']: r for r in result['rows']}
    assert list(rows) == ['baseline', 'CR', 'SPN', 'CR_w0']
    assert [r['label'] for r in result['runs']].count('baseline') == 1  # the baseline trained once
    assert rows['CR_w0']['delta'] == [0.0] and rows['CR_w0']['method'] == 'CR'
    assert rows['SPN']['method'] == 'SPN' and rows['CR']['settings'] == 'feature pixel, weight 0.1, criterion l1'
    for name in ('CR', 'SPN'):
        assert rows[name]['time_ratio'] > 0 and len(rows[name]['delta']) == 1
    md = (out / 'methods.md').read_text()
    for name in rows:
        assert f'| {name} |' in md
    assert '--arm' in md and 'load average' in md
    saved = json.loads((out / 'methods.json').read_text())
    assert {(r['label'], r['seed']) for r in saved['runs']} == {(n, 0) for n in rows}
    cr_opt = cmp.load_options(out / 'options' / 'methods_CR_seed0.yml')['train']['cr_opt']
    assert cr_opt == {'type': 'CRLoss', 'loss_weight': 0.1, 'feature': 'pixel'}
