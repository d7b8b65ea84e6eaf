"""Stage compare: the demo's data, then L1 vs L1 + SPN at equal iterations through mclir_basicsr.compare."""
import json
import os

from .modes import MODES
from .where import PY


def comparison_options(st, demo_out, cfg):
    """The demo's two option files, with the check's network, device, learning rate and batch."""
    import yaml  # here: this module must start without PyYAML (setup reports it missing)
    paths = []
    for label in ('baseline', 'spn'):
        with open(os.path.join(demo_out, 'options', f'demo_{label}.yml')) as f:
            opt = yaml.safe_load(f)
        opt['name'] = f'check_{label}'
        opt['num_gpu'] = cfg['num_gpu']
        opt['network_g'].update(cfg['network'] or {})
        if cfg['lr']:
            opt['train']['optim_g']['lr'] = cfg['lr']
            opt['train']['scheduler']['eta_min'] = cfg['lr'] / 100
        opt['datasets']['train'].update(cfg.get('train_set', {}))
        path = os.path.join(st.out, f'check_{label}.yml')
        with open(path, 'w') as f:
            yaml.safe_dump(opt, f, sort_keys=False)
        paths.append(path)
    return paths


def stage_compare(st):
    cfg = MODES[st.ctx['mode']]['compare']
    demo_out = os.path.join(st.out, 'demo')
    if not st.step('demo_data', [PY, '-m', 'mclir_basicsr.demo', '--data-only', '--out', demo_out]
                   + (['--quick'] if cfg['quick'] else [])):
        return
    base, spn = comparison_options(st, demo_out, cfg)
    result = os.path.join(st.out, 'result')
    st.step('compare', [PY, '-m', 'mclir_basicsr.compare', base, spn, '--seeds', *map(str, cfg['seeds']),
                        '--iters', str(cfg['iters']), '--val-freq', str(cfg['val_freq']), '--jobs', str(cfg['jobs']),
                        '--out', result, '--name', 'check'])
    summary = os.path.join(result, 'summary.json')
    if not os.path.exists(summary):
        return
    with open(summary) as f:
        stats = json.load(f)['stats']
    keys = ('seeds', 'psnr_delta_mean', 'psnr_delta_std', 'ssim_delta_mean', 'spn_wins', 's_per_iter_baseline',
            's_per_iter_spn', 'time_ratio')
    st.record['numbers'] = dict({k: stats.get(k) for k in keys}, iterations=cfg['iters'],
                                network=cfg['network'] or 'demo --quick', table='compare/result/table.md')
    st.record['brief'] = (f'dPSNR {stats["psnr_delta_mean"]:+.3f} +- {stats["psnr_delta_std"]:.3f} dB over seeds '
                          f'{stats["seeds"]} ({cfg["iters"]} it), SPN better in {stats["spn_wins"]}; s/iter '
                          f'{stats["s_per_iter_baseline"]:.4f} vs {stats["s_per_iter_spn"]:.4f} '
                          f'({stats["time_ratio"]:.2f}x)')
