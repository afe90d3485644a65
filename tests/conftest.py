import os
import sys

import numpy as np
import pytest

# tests/ is on sys.path (pytest's default import mode), so tests import the slow,
# obviously-correct references as `import _reference`.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
