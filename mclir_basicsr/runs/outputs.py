"""W7 (add-on runs): an installed BasicSR's scripts write their outputs into the working directory.

BasicSR's ``basicsr/train.py`` and ``test.py`` use ``root = dirname(dirname(__main__.__file__))`` for
``experiments/``, ``results/`` and ``tb_logger/``. For an installed basicsr that is site-packages; for an
add-on run the start-up hook points it at the working directory, when BasicSR is imported (the script computes
its root before it parses the option file). A BasicSR git clone keeps BasicSR's behaviour;
``MCLIR_BASICSR_ROOT=package`` keeps an installed script's outputs in site-packages.
"""
import os
import sys

from mclir_basicsr.compat import main_basicsr_script

ROOT_ENV = 'MCLIR_BASICSR_ROOT'


def _installed_basicsr_dir():
    import site
    import sysconfig

    import basicsr
    pkg = os.path.realpath(os.path.dirname(basicsr.__file__))
    roots = {sysconfig.get_paths()[k] for k in ('purelib', 'platlib')}
    roots.update(getattr(site, 'getsitepackages', list)())
    if hasattr(site, 'getusersitepackages'):
        roots.add(site.getusersitepackages())
    roots = {os.path.realpath(r) for r in roots}
    return pkg if os.path.dirname(pkg) in roots else None


def redirect_installed_script_outputs(addon):
    """For an add-on run (``addon``) of an installed BasicSR's script, its root becomes the working directory."""
    if addon and main_basicsr_script() and _installed_basicsr_dir() and os.environ.get(ROOT_ENV, '') != 'package':
        main = sys.modules['__main__']
        main.__file__ = os.path.join(os.getcwd(), 'basicsr', os.path.basename(main.__file__))
