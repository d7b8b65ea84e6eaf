"""Start-up cost of the installed hook: `python -c pass` with MCLIR_BASICSR_AUTOLOAD on and off.

    python scripts/dev/bench_startup.py [--runs 40]

Runs are interleaved (on, off, on, off, ...) so drifting machine load hits both alike.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def one(env):
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', 'pass'], env=env, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=40)
    args = parser.parse_args()
    on = dict(os.environ, MCLIR_BASICSR_AUTOLOAD='1')
    off = dict(os.environ, MCLIR_BASICSR_AUTOLOAD='0')
    one(on), one(off)  # warm the file cache
    times = {'on': [], 'off': []}
    for _ in range(args.runs):
        times['on'].append(one(on))
        times['off'].append(one(off))
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    iqr = {k: (statistics.quantiles(v, n=4)[2] - statistics.quantiles(v, n=4)[0]) * 1000 for k, v in times.items()}
    print(f'python -c pass, {args.runs} runs each, {sys.executable}')
    print('| hook | median ms | IQR ms |\n| --- | --- | --- |')
    for k in ('off', 'on'):
        print(f'| {k} | {med[k]:.1f} | {iqr[k]:.1f} |')
    print(f'difference: {med["on"] - med["off"]:+.1f} ms')
    if os.environ.get('PYTHONDONTWRITEBYTECODE'):
        print('note: PYTHONDONTWRITEBYTECODE is set, so every run compiles the hook from source (a regular '
              'pip install ships compiled .pyc files); unset it to measure what users get')


if __name__ == '__main__':
    main()
