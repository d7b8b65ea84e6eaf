"""``--fetch-wheels DIR`` (where PyPI is reachable: download or build the wheel set, write its manifest) and the
offline pip commands that ``--wheels DIR`` runs on the GPU machine."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from .wheel_set import (
    IMPLEMENTATION,
    NOT_CARRIED,
    PLATFORMS,
    PYTHON,
    WHEELS,
    requirement_names,
    setup_requirements,
    undecided,
    wheel_file_name,
    wheel_requirements,
)
from .where import PY, REPO

MANIFEST = 'manifest.json'
SETUP_PY = os.path.join(REPO, 'setup.py')  # the add-on's install_requires
# pip with PIP_CONFIG_FILE=os.devnull reads no configuration file, and --isolated ignores PIP_* variables: no
# index or find-links of the machine's own configuration is consulted, only the command line
OFFLINE_PIP_ENV = {'PIP_CONFIG_FILE': os.devnull}
OFFLINE_PIP = ('install', '--isolated', '--no-index', '--no-deps', '--disable-pip-version-check')


def site_for(wheels_dir, py=PY):
    """The scratch folder --wheels installs into: one per wheel folder and interpreter under the temporary
    directory, emptied before each install, so that a later run of some stages alone (no setup) finds it."""
    key = hashlib.sha1(f'{os.path.abspath(wheels_dir)}\0{py}'.encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f'gpu_check_site_{key}')


def offline_install_cmd(wheels, target, py=PY):
    """What --wheels runs (with OFFLINE_PIP_ENV): the wheel files into the scratch folder `target`, without an
    index and without dependencies (the set is complete by construction: wheel_set), no byte-compiling, no
    cache; the folder then goes on the stages' PYTHONPATH, next to the image's own packages."""
    return [py, '-m', 'pip', *OFFLINE_PIP, '--no-compile', '--no-cache-dir', '--upgrade', '--target', target,
            *wheels]


def offline_editable_cmd(repo=REPO, py=PY):
    """The add-on itself, editable, with the image's setuptools (with OFFLINE_PIP_ENV: nothing is downloaded)."""
    return [py, '-m', 'pip', *OFFLINE_PIP, '--no-build-isolation', '-e', repo]


def fetch_cmd(wheel, dest, py=PY):
    """pip wheel for a wheel built here (an sdist-only release), else pip download of the binary wheel for the
    GPU image's python and platform."""
    spec = f'{wheel.name}=={wheel.version}'
    if wheel.build:
        return [py, '-m', 'pip', 'wheel', '--no-deps', '-w', dest, spec]
    platforms = [arg for p in PLATFORMS for arg in ('--platform', p)]
    return [py, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--python-version', PYTHON,
            '--implementation', IMPLEMENTATION, *platforms, '-d', dest, spec]


def wheel_files(folder):
    """The .whl files in `folder`, sorted; ValueError when there is none, or two of one distribution (pip would
    refuse the whole install)."""
    files = sorted(f for f in os.listdir(folder) if f.endswith('.whl'))
    if not files:
        raise ValueError(f'{folder}: no .whl file there (make the folder with --fetch-wheels {folder})')
    seen = {}
    for name in files:
        dist, _ = wheel_file_name(name)
        if dist in seen:
            raise ValueError(f'{folder}: two wheels of {dist} ({seen[dist]}, {name}): keep one')
        seen[dist] = name
    return [os.path.join(folder, f) for f in files]


def check_fetched(files, setup_py=SETUP_PY):
    """Problems of a fetched set: a wheel of the set missing or of another version, a built wheel that is not
    pure Python, a requirement (of a wheel, or the add-on's setup.py) that wheel_set does not decide."""
    found = {wheel_file_name(os.path.basename(f))[0]: f for f in files}
    problems = []
    for wheel in WHEELS:
        path = found.get(wheel.name)
        version = path and wheel_file_name(os.path.basename(path))[1]
        if version != wheel.version:
            problems.append(f'{wheel.name}: fetched {version}, the set says {wheel.version}' if path else
                            f'{wheel.name}=={wheel.version}: not fetched')
        elif wheel.build and not path.endswith('-py3-none-any.whl'):
            problems.append(f'{os.path.basename(path)}: built here, but not a pure-Python (py3-none-any) wheel')
    requirements = [r for f in files for r in wheel_requirements(f)] + setup_requirements(setup_py)
    problems += [f'{name}: required, but wheel_set.py neither carries it nor lists it in IMAGE_HAS or NOT_CARRIED'
                 for name in undecided(requirement_names(requirements))]
    return problems


def manifest(files):
    """Names, versions, sizes and why of each wheel, and the total, as manifest.json holds them."""
    why = {w.name: w.why for w in WHEELS}
    rows = []
    for path in files:
        name, version = wheel_file_name(os.path.basename(path))
        size = os.path.getsize(path)
        rows.append({'name': name, 'version': version, 'file': os.path.basename(path), 'bytes': size,
                     'mib': round(size / 2 ** 20, 3), 'why': why.get(name, 'not in the wheel set (added by hand)')})
    total = sum(r['bytes'] for r in rows)
    return {'python': PYTHON, 'implementation': IMPLEMENTATION, 'platforms': list(PLATFORMS), 'wheels': rows,
            'total_bytes': total, 'total_mib': round(total / 2 ** 20, 2), 'not_carried': NOT_CARRIED}


def ensure_ignored(folder):
    """A folder inside the repo must be git-ignored (carried to the GPU machine, never committed): when no ignore
    rule covers it, append it to the repository's info/exclude (where git keeps it, in a worktree too). Returns
    the folder relative to the repo, or None for one outside it."""
    rel = os.path.relpath(folder, REPO)
    if rel.startswith('..'):
        return None
    if subprocess.call(['git', 'check-ignore', '-q', rel + '/'], cwd=REPO) == 1:
        git_path = subprocess.run(['git', 'rev-parse', '--git-path', 'info/exclude'], cwd=REPO, check=True,
                                  capture_output=True, text=True).stdout.strip()
        exclude = os.path.join(REPO, git_path)
        os.makedirs(os.path.dirname(exclude), exist_ok=True)
        with open(exclude, 'a') as f:
            f.write(f'/{rel}/\n')
        print(f'added /{rel}/ to {exclude} (a local ignore, so the wheels are never committed)')
    return rel


def fetch_wheels(folder, py=PY):
    """Where PyPI is reachable: the wheel set into `folder` (its earlier .whl files replaced), with manifest.json."""
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    rel = ensure_ignored(folder)
    staging = tempfile.mkdtemp(prefix='.fetch-', dir=folder)
    try:
        for wheel in WHEELS:
            rc = subprocess.call(fetch_cmd(wheel, staging, py))
            if rc != 0:
                print(f'--fetch-wheels: {wheel.name}=={wheel.version} failed (exit status {rc})')
                return rc
        problems = check_fetched(wheel_files(staging))
        for problem in problems:
            print(f'--fetch-wheels: {problem}')
        if problems:
            return 1
        for old in os.listdir(folder):
            if old.endswith('.whl'):
                os.remove(os.path.join(folder, old))
        for new in os.listdir(staging):
            shutil.move(os.path.join(staging, new), folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    info = manifest(wheel_files(folder))
    with open(os.path.join(folder, MANIFEST), 'w') as f:
        json.dump(info, f, indent=1)
    print(manifest_text(info, folder))
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    print(f'on the GPU machine: python3 {script} --wheels {rel} OUT_DIR (carry {rel})' if rel else
          'to carry them to the GPU machine, put them in a git-ignored folder inside the repo, e.g. .whl')
    return 0


def manifest_text(info, folder):
    lines = [f'wheels for python {info["python"]} ({info["implementation"]}, manylinux x86_64) in {folder}:']
    lines += [f'  {r["name"]:<10} {r["version"]:<8} {r["mib"]:>7.3f} MiB  {r["file"]}' for r in info['wheels']]
    lines.append(f'  total {info["total_mib"]:.2f} MiB; declared but not carried: {", ".join(info["not_carried"])}')
    return '\n'.join(lines)
