import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mclir_basicsr  # noqa: E402,F401  registers the add-on (basicsr imported below)

from helpers import make_paired_dataset, write_vgg_weights  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line('markers', 'device: device-dependent code paths (CUDA when available; '
                                       'CUDA-only tests skip on CPU with the reason); scripts/dev/gpu_check.py '
                                       'runs them')
    config.addinivalue_line('markers', 'slow: end-to-end runs in subprocesses (training or testing through BasicSR\'s '
                                       'pipeline, the scripts, pip installs, torchrun, several fresh interpreters '
                                       'importing basicsr); `-m "not slow"` is the fast inner-loop set')


@pytest.fixture(scope='session')
def data_x2(tmp_path_factory):
    return make_paired_dataset(str(tmp_path_factory.mktemp('data') / 'x2'), 2)


@pytest.fixture(scope='session')
def data_x3(tmp_path_factory):
    return make_paired_dataset(str(tmp_path_factory.mktemp('data') / 'x3'), 3)


@pytest.fixture(scope='session')
def data_x4(tmp_path_factory):
    return make_paired_dataset(str(tmp_path_factory.mktemp('data') / 'x4'), 4, size=64)


@pytest.fixture(scope='session')
def data_x1(tmp_path_factory):
    return make_paired_dataset(str(tmp_path_factory.mktemp('data') / 'x1'), 1, noise=0.1)


@pytest.fixture(scope='session')
def vgg16_file(tmp_path_factory):
    return write_vgg_weights(str(tmp_path_factory.mktemp('vgg') / 'vgg16-397923af.pth'), 'vgg16')


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh current directory (experiments/ and results/ land here)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
