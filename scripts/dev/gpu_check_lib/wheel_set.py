"""Which wheels the GPU image lacks, and why: the one list, and the check that every requirement is decided.

The GPU image (python3 3.12 with torch and torchvision, no package index) has most of what BasicSR and the
add-on import; ``--fetch-wheels`` brings the rest as wheels for that interpreter. Every requirement that
basicsr's wheel or the add-on's setup.py declares is one of: carried (:data:`WHEELS`), already on the image
(:data:`IMAGE_HAS`), or deliberately left out (:data:`NOT_CARRIED`); :func:`undecided` names any other, so
a new dependency cannot slip through unnoticed.
"""
import ast
import collections
import re
import zipfile

Wheel = collections.namedtuple('Wheel', 'name version build why')

PYTHON = '3.12'  # the GPU image's python3 (3.12.3)
IMPLEMENTATION = 'cp'
# pip matches a manylinux_2_N tag exactly: every glibc level up to the image's (Ubuntu 24.04: glibc 2.39)
PLATFORMS = tuple(f'manylinux_2_{n}_x86_64' for n in range(39, 16, -1)) + ('manylinux2014_x86_64',
                                                                          'manylinux1_x86_64')

WHEELS = (
    Wheel('basicsr', '1.4.2', True,
          'the toolbox the add-on extends, not on the image; PyPI has 1.4.2 as an sdist only, so it is built into '
          'a pure-Python wheel; installed without its declared dependencies (see NOT_CARRIED)'),
    Wheel('lmdb', '3.0.0', False,
          'not on the image; basicsr imports it for LMDB datasets (io_backend: lmdb, basicsr/utils/file_client.py) '
          'and in basicsr/utils/lmdb_util.py, the add-on\'s setup.py requires it; a C extension: the cp312 '
          'manylinux wheel'),
    Wheel('pydantic', '2.14.4', False,
          'not on the image; the add-on\'s option schema (mclir_basicsr/options.py), required by its setup.py; '
          'pure Python'),
    Wheel('pydantic-core', '2.50.5', False,
          'pydantic\'s validator, pinned by it (==2.50.5); a Rust extension: the cp312 manylinux wheel'),
    Wheel('annotated-types', '0.8.0', False, 'required by pydantic; pure Python'),
    Wheel('typing-inspection', '0.4.5', False, 'required by pydantic (>=0.4.4); pure Python'),
    Wheel('typing-extensions', '4.16.0', False,
          'pydantic and pydantic-core require >=4.16.0, newer than torch needs, so the image\'s may be older; '
          'carried on the path ahead of it (a compatible superset)'),
)

# Declared by basicsr 1.4.2 (or the add-on) but not carried: the image has the module under another
# distribution's name, or basicsr never imports it (grep of basicsr 1.4.2's package: no import of these).
NOT_CARRIED = {
    'addict': 'declared by basicsr 1.4.2, never imported by it',
    'future': 'declared by basicsr 1.4.2, never imported by it (neither future nor past)',
    'yapf': 'declared by basicsr 1.4.2, never imported by it',
    'tb-nightly': 'the image\'s tensorboard provides the same tensorboard module',
    'opencv-python': 'the image\'s opencv-python-headless provides the same cv2 module',
}

# On the GPU image's package list, and imported by basicsr, the add-on or the check (the tests stage: pytest,
# pytest-xdist, hypothesis; the editable install: setuptools, wheel).
IMAGE_HAS = ('torch', 'torchvision', 'numpy', 'pillow', 'pyyaml', 'requests', 'scikit-image', 'scipy', 'tqdm',
             'tensorboard', 'matplotlib', 'opencv-python-headless', 'pytest', 'pytest-xdist', 'hypothesis',
             'setuptools', 'wheel')


def normalize(name):
    """A distribution name as PEP 503 compares them (Pillow, PyYAML, tb_nightly -> pillow, pyyaml, tb-nightly)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_names(requirements):
    """The normalized distribution names of PEP 508 requirement strings, leaving out those of extras."""
    names = []
    for req in requirements:
        name, _, marker = req.partition(';')
        if re.search(r'\bextra\s*==', marker):
            continue
        match = re.match(r'\s*([A-Za-z0-9][A-Za-z0-9._-]*)', name)
        if match:
            names.append(normalize(match.group(1)))
    return names


def wheel_requirements(path):
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(path) as zf:
        meta = next(n for n in zf.namelist() if n.endswith('.dist-info/METADATA') and n.count('/') == 1)
        text = zf.read(meta).decode('utf-8')
    return [line.split(':', 1)[1].strip() for line in text.splitlines() if line.startswith('Requires-Dist:')]


def setup_requirements(setup_py):
    """install_requires of a setup.py's setup() call, read without running it."""
    with open(setup_py, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'install_requires':
            return list(ast.literal_eval(node.value))
    return []


def undecided(names):
    """The names (normalized) that are neither carried, on the image, nor deliberately left out."""
    decided = {w.name for w in WHEELS} | set(IMAGE_HAS) | set(NOT_CARRIED)
    return sorted({normalize(n) for n in names} - decided)


def wheel_file_name(filename):
    """(normalized distribution name, version) of a wheel file name (name-version[-build]-py-abi-platform.whl)."""
    parts = filename[:-len('.whl')].split('-')
    if not filename.endswith('.whl') or len(parts) not in (5, 6):
        raise ValueError(f'{filename}: not a wheel file name (name-version-python-abi-platform.whl)')
    return normalize(parts[0]), parts[1]
