"""Install mclir-basicsr.

Besides the package, the install drops one file, ``mclir_basicsr_autoload.pth``, into
site-packages. Python runs its single line at start-up; the line installs a lazy import hook
(standard library only, no torch) that registers the add-on the moment BasicSR is imported, so
BasicSR's own ``basicsr/train.py`` and ``basicsr/test.py`` know ``ModelContrastiveModel``.
Set ``MCLIR_BASICSR_AUTOLOAD=0`` to switch it off. ``pip uninstall`` removes the file.
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = 'mclir_basicsr_autoload.pth'


def pth_line():
    """Read from the package without importing it (setup.py runs before it is installed)."""
    ns = {}
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mclir_basicsr', '_autoload.py')
    with open(src, encoding='utf-8') as f:
        code = f.read()
    for line in code.splitlines():
        if line.startswith(('ENV_SWITCH =', 'OFF_VALUES =')):
            exec(line, ns)
    return (f"import os; os.environ.get('{ns['ENV_SWITCH']}', '1').strip().lower() in {ns['OFF_VALUES']!r} "
            "or __import__('mclir_basicsr')\n")


class BuildPyWithPth(build_py):
    """Ship the .pth file at the top of the wheel (regular ``pip install .``)."""

    def run(self):
        super().run()
        with open(os.path.join(self.build_lib, PTH_NAME), 'w') as f:
            f.write(pth_line())

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH_NAME)]


class DevelopWithPth(develop):
    """Legacy ``setup.py develop``; modern ``pip install -e .`` goes through build_py too."""

    def run(self):
        super().run()
        with open(os.path.join(self.install_dir, PTH_NAME), 'w') as f:
            f.write(pth_line())


class EditableWheelWithPth(editable_wheel):
    """``pip install -e .`` (PEP 660): add the .pth file to the editable wheel."""

    def _select_strategy(self, *args, **kwargs):
        strategy = super()._select_strategy(*args, **kwargs)

        class WithPth:
            def __enter__(self):
                strategy.__enter__()
                return self

            def __exit__(self, *exc):
                return strategy.__exit__(*exc)

            def __call__(self, wheel, files, mapping):
                strategy(wheel, files, mapping)
                wheel.writestr(PTH_NAME, pth_line())

        return WithPth()


def read(name):
    with open(os.path.join(os.path.dirname(__file__), name), encoding='utf-8') as f:
        return f.read()


setup(
    name='mclir-basicsr',
    version='0.1.0',
    description='Model Contrastive Learning (history negatives, SPN loss) as a BasicSR add-on',
    long_description=read('README.md'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['mclir_basicsr', 'mclir_basicsr.*']),
    install_requires=[
        'basicsr>=1.4.2',
        'torch>=2.0',
        'torchvision',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'tensorboard',
        'matplotlib',
        'scikit-image',
    ],
    extras_require={'test': ['pytest', 'hypothesis', 'ruff']},
    entry_points={'console_scripts': [
        'mclir-train=mclir_basicsr.train:main',
        'mclir-test=mclir_basicsr.test:main',
        'mclir-compare=mclir_basicsr.compare:main',
        'mclir-demo=mclir_basicsr.demo:main',
    ]},
    cmdclass={'build_py': BuildPyWithPth, 'develop': DevelopWithPth, 'editable_wheel': EditableWheelWithPth},
    zip_safe=False,
)
