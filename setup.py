"""Install mclir-basicsr.

Besides the package, the install drops one file, ``mclir_basicsr_autoload.pth``, into
site-packages. Python runs its single line at start-up; the line installs a lazy import hook
(standard library only, no torch) that registers the add-on the moment BasicSR is imported, so
BasicSR's own ``basicsr/train.py`` and ``basicsr/test.py`` know ``ModelContrastiveModel``.
Set ``MCLIR_BASICSR_AUTOLOAD=0`` to switch it off. ``pip uninstall`` removes the file.

Every install path writes it (tested in ``tests/test_packaging.py``): wheels and sdists (``build_py``),
``pip install -e .`` (PEP 660, ``editable_wheel``), and ``setup.py develop`` / pip's legacy editable
install (``develop``). pyproject.toml makes pip use PEP 517/660 even where ``wheel`` is installed.
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = 'mclir_basicsr_autoload.pth'
# The start-up line. Its switch (variable and values) is mclir_basicsr._autoload's ENV_SWITCH / OFF_VALUES;
# tests/test_packaging.py checks they agree.
PTH_LINE = ("import os; os.environ.get('MCLIR_BASICSR_AUTOLOAD', '1').strip().lower() in "
            "('0', 'false', 'no', 'off') or __import__('mclir_basicsr')\n")


def write_pth(folder):
    path = os.path.join(folder, PTH_NAME)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(PTH_LINE)
    return path


class BuildPyWithPth(build_py):
    """Wheels (``pip install .``, and wheels built from the sdist): the .pth at the top of the wheel."""

    def run(self):
        super().run()
        write_pth(self.build_lib)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH_NAME)]


class DevelopWithPth(develop):
    """``setup.py develop`` and pip's legacy editable path. setuptools < 80 installs into
    ``install_dir`` itself, so the .pth goes there too; setuptools >= 80 runs ``pip install -e``
    (PEP 660, :class:`EditableWheelWithPth`) and leaves ``install_dir`` unset unless given."""

    def run(self):
        super().run()
        if self.install_dir:
            write_pth(self.install_dir)


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
                wheel.writestr(PTH_NAME, PTH_LINE)

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
    python_requires='>=3.11',  # tested: 3.11 (and 3.12); 3.13: basicsr 1.4.2's sdist fails (docs/install.md)
    packages=find_packages(include=['mclir_basicsr', 'mclir_basicsr.*']),
    install_requires=[
        'basicsr>=1.4.2',  # tested: 1.4.2 (PyPI, master); newer ones are met by the guard in compat.py
        'torch>=2.1',      # torch._foreach_copy_, torch.load(mmap=True)
        'torchvision',
        'opencv-python',
        'lmdb',
        'pyyaml',
        'tensorboard',
        'pydantic>=2.7,<3',  # the option schema (mclir_basicsr.options)
    ],
    extras_require={
        # h5py reads the HED weights mclir-hed-vgg converts into pretrained VGG16 features (docs/vgg_weights.md)
        'hed': ['h5py'],
        # mclir-demo and mclir-compare: the plots (matplotlib) and the demo's photos (scikit-image); without them
        # they stop with one line naming this extra (mclir_basicsr.compare.plots.require_demo_extra)
        'demo': ['matplotlib', 'scikit-image'],
        'test': ['pytest', 'hypothesis', 'ruff', 'h5py', 'matplotlib', 'scikit-image', 'jsonschema'],
    },
    entry_points={'console_scripts': [
        'mclir-train=mclir_basicsr.train:main',
        'mclir-test=mclir_basicsr.test:main',
        'mclir-compare=mclir_basicsr.compare:main',
        'mclir-demo=mclir_basicsr.demo:main',
        'mclir-hed-vgg=mclir_basicsr.hed_vgg:main',
    ]},
    cmdclass={'build_py': BuildPyWithPth, 'develop': DevelopWithPth, 'editable_wheel': EditableWheelWithPth},
    zip_safe=False,
)
