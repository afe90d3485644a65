import os
import sys

import numpy as np
import pytest

# Test files live in sub-folders that mirror the package (tests/ops/, tests/cascade/, ...; tests/
# itself holds the package-wide ones). pytest's default import mode puts only each test file's
# own folder on sys.path, so tests/ is added here: the shared helpers stay in tests/ and are
# imported as `import _reference` from any folder (children started by _isolated.run_isolated
# inherit sys.path through PYTHONPATH). There are no __init__.py files, so test file names must
# stay unique across all folders (pytest stops with "import file mismatch" otherwise).
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def subprocess_env():
    """Environment for a child Python that must import the same pydetect as this session.

    Children should also run with cwd outside the source tree: `python -m` puts the working
    directory first on sys.path, where the unbuilt sources would shadow the installed package.
    """
    import pydetect

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(pydetect.__file__)))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([package_parent] + sys.path))


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a test module: on a shared 2-core machine OpenMP threads
    oversubscribe badly and one is faster. Use with pytest.mark.usefixtures."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
