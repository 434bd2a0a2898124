"""Shared fixtures: real data location, small synthetic images (helpers: support/helpers.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support.helpers import SHARED_DATA, synthetic_scene


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $SICE_SHARED_DATA); skips the test with a reason when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SICE_SHARED_DATA); this test needs it")
    return SHARED_DATA


@pytest.fixture
def scene() -> np.ndarray:
    return synthetic_scene()
