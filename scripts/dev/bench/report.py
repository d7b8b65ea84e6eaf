"""The bench's report: the markdown table (config, one table per device, the components, the floors) and
where it goes (stdout, or stderr when the JSON goes to stdout)."""
import json


def _fmt_s(x):
    return f'{x:.4f}' if x < 1 else f'{x:.3f}'


def _markdown_header(report):
    cfg, env = report['config'], report['environment']
    return [f"Config: {cfg['arch']}: {cfg['network_g']} x{cfg['scale']}, batch {cfg['batch']}, LR patch "
            f"{cfg['patch']} (gt {cfg['patch'] * cfg['scale']}), {cfg['feature']} {cfg['layers']}, update_every "
            f"{cfg['update_every']}, warmup {cfg['warmup']}, {cfg['repeats']} x {cfg['iters']} iterations, "
            f"threads {cfg['threads'] or 'default'}; VGG weights: {cfg['vgg_weights_note']}",
            f"torch {env.get('torch')}, basicsr {env.get('basicsr')}, CPU {env.get('cpu')}"
            + (f", GPU {env['cuda_device']}" if env.get('cuda_device') else '')]


def _markdown_rows(report, device):
    mem = 'peak CUDA alloc MB' if device == 'cuda' else 'peak RSS MB (start)'
    lines = ['', f'### {device}', '',
             f'| variant | K | s/iter median | p25-p75 | {mem} | x baseline | x floor | page faults/iter '
             '| samples/iter | ms/sample | first step s |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in (r for r in report['results'] if r['device'] == device):
        if 'error' in r:
            lines.append(f"| {r['variant']} | {r['k']} | failed: {r['error'][:80]} | | | | | | | | |")
            continue
        m = f"{r['peak_mem_mb']:.0f}" + (f" ({r['rss_start_mb']:.0f})" if device != 'cuda' else '')
        xb = f"{r['ratio_baseline']:.2f}" if r.get('ratio_baseline') else ''
        xf = f"{r['ratio_floor']:.2f}" if r.get('ratio_floor') else ''
        lines.append(f"| {r['variant']} | {r['k']} | {_fmt_s(r['median_s'])} | "
                     f"{_fmt_s(r['p25_s'])}-{_fmt_s(r['p75_s'])} | {m} | {xb} | {xf} | "
                     f"{r['minor_faults_per_iter']:.0f} | {r.get('samples_per_iter', '')} | "
                     f"{1000 * r['median_s'] / r.get('samples_per_iter', 1):.1f} | "
                     f"{_fmt_s(r['first_step_s']) if 'first_step_s' in r else ''}{_compile_note(r)} |")
    return lines


def _compile_note(row):
    c = row.get('compile')
    if not c:
        return ''
    failed = c.get('net_g_failed') or c.get('negatives_failed')
    return f' (compile fell back: {failed[:60]})' if failed else ''


def _markdown_components(comps):
    lines = ['', '| component | s median | p25-p75 | page faults/call |', '| --- | ---: | ---: | ---: |']
    faults = comps.get('minor_faults_per_call', {})
    for name, c in comps.get('components', {}).items():
        lines.append(f"| {name} | {_fmt_s(c['median_s'])} | {_fmt_s(c['p25_s'])}-{_fmt_s(c['p75_s'])} | "
                     f"{faults.get(name, float('nan')):.0f} |")
    return lines + ['']


def _floor_name(key):
    passes, _, used = key.partition('@')
    name = 'split (any K)' if passes == 'split' else f'K={passes}'
    return f'{name}, on {used} samples' if used else name


def markdown_floors(floors):
    lines = []
    for key, fl in floors.items():
        terms = ' + '.join(f'{_fmt_s(s)} ({label})' for label, s in fl['terms'])
        measured = ', '.join(f"{v}: {r:.2f}x" for v, r in fl['measured_over_floor'].items())
        lines.append(f"Floor {_floor_name(key)}: {terms} = {_fmt_s(fl['floor_s'])} s"
                     + (f'; measured/floor: {measured}' if measured else '')
                     + (f"; page faults of the floor's parts: {fl['minor_faults']:.0f}" if 'minor_faults' in fl
                        else ''))
    return lines


def markdown(report):
    lines = _markdown_header(report)
    for device in report['devices']:
        lines += _markdown_rows(report, device)
        comps = report['components'].get(device, {})
        if 'error' in comps:
            lines += ['', f"Components failed: {comps['error']}"]
            continue
        lines += _markdown_components(comps) + markdown_floors(report['floor'].get(device, {}))
    return '\n'.join(lines) + '\n'


def write_report(report, json_path, log):
    text = markdown(report)
    if not json_path:
        print(text)
        return
    data = json.dumps(report, indent=1, default=str)
    if json_path == '-':
        print(text, file=log)
        print(data)
    else:
        with open(json_path, 'w') as f:
            f.write(data + '\n')
        print(text)
