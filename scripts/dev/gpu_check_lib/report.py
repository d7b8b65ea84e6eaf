"""summary.json / summary.txt (rewritten after every stage), and OUT_DIR packed without checkpoints."""
import json
import os
import tarfile
import time


def summary_text(summary):
    lines = [f'gpu_check ({summary["mode"]} mode) in {summary["total_s"]:.0f} s, output {summary["out"]}',
             f'{"stage":<8} {"status":<8} {"seconds":>8} {"budget":>7}  key numbers']
    for r in summary['stages']:
        lines.append(f'{r["stage"]:<8} {r["status"]:<8} {r["seconds"]:>8.1f} {r["budget_s"]:>7}  {r.get("brief", "")}')
        lines.extend(f'{"":<8} note: {n}' for n in r['notes'])
    return '\n'.join(lines)


def write_summary(summary):
    summary['total_s'] = round(time.time() - summary['started_unix'], 1)
    with open(os.path.join(summary['out'], 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(summary['out'], 'summary.txt'), 'w') as f:
        f.write(summary_text(summary) + '\n')


def archive(out, path, max_bytes=4 << 20):
    """OUT_DIR as one .tar.gz, without checkpoints, training states, the demo's generated images (and no file
    over max_bytes)."""
    def keep(info):
        skip = (info.name.endswith(('.pth', '.state', '/demo/data'))  # hard links to checkpoints too
                or (info.isfile() and info.size > max_bytes))
        return None if skip else info
    with tarfile.open(path, 'w:gz') as tar:
        tar.add(out, arcname=os.path.basename(os.path.normpath(out)), filter=keep)
    return path
