"""Shared fixtures: real data location, small synthetic images."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SICE_SHARED_DATA", REPO.parent / "shared" / "data"))


#: Set by .ci/run, which installs the Debian tools: a test that needs a missing one then fails
#: instead of skipping, so that a broken install cannot leave CI green with those tests unrun.
REQUIRE_EXTERNAL = os.environ.get("SICE_REQUIRE_EXTERNAL", "") not in ("", "0")


def require_tools(*tools: str, what: str) -> None:
    """Skip the calling test when one of the executables ``tools`` is missing, or fail it when
    $SICE_REQUIRE_EXTERNAL is set (CI installs them all)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    message = f"{what} needs {', '.join(missing)}, not installed"
    if REQUIRE_EXTERNAL:
        pytest.fail(message + " (SICE_REQUIRE_EXTERNAL is set: .ci/run installs it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $SICE_SHARED_DATA); skips the test with a reason when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SICE_SHARED_DATA); this test needs it")
    return SHARED_DATA


def synthetic_scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, textured float32 RGB radiance-like scene in [0, 1] (edges, gradients, colour)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.4 * np.sin(xx / 7.0) * np.cos(yy / 9.0)
    step = (xx > w / 2).astype(np.float32) * 0.3
    rgb = np.stack([base, 0.8 * base + step, 0.6 + 0.3 * np.cos(xx / 5.0)], axis=-1)
    rgb += rng.normal(0, 0.02, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 1).astype(np.float32)


@pytest.fixture
def scene() -> np.ndarray:
    return synthetic_scene()
