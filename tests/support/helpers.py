"""Helpers shared by several test modules: paths, synthetic images, the small datasets they build.

Test modules import these from here, never from each other; ``conftest.py`` holds the fixtures.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sice.imageops import linear_to_srgb, srgb_to_linear
from sice.io import write_image

REPO = Path(__file__).resolve().parents[2]
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


def synthetic_scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth, textured float32 RGB radiance-like scene in [0, 1] (edges, gradients, colour)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.4 * np.sin(xx / 7.0) * np.cos(yy / 9.0)
    step = (xx > w / 2).astype(np.float32) * 0.3
    rgb = np.stack([base, 0.8 * base + step, 0.6 + 0.3 * np.cos(xx / 5.0)], axis=-1)
    rgb += rng.normal(0, 0.02, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 1).astype(np.float32)


# --- training ---------------------------------------------------------------------------------
#: Exposure gains of the frames of :func:`make_training_dataset` (frame k = label x gain k).
TRAINING_GAINS = (0.3, 0.5, 0.7, 1.0, 1.5)

#: A training run small enough for this CPU: Model 1 at width 8 on 16-px patches (config overrides).
TINY = ['model.name="sice2018-residual"', "model.kwargs.width=8", "data.patch_size=16",
        "data.batch_size=2", "run.log_every=2", "run.checkpoint_every=100", "optim.name=\"adam\"",
        "optim.lr=2e-3", "run.threads=1"]


def make_training_dataset(root: Path, n: int = 8, size: int = 32) -> Path:
    """Scenes 001..n in the SICE layout: frames = label x TRAINING_GAINS (8-bit PNG), label = a
    textured synthetic scene."""
    for i in range(1, n + 1):
        base = synthetic_scene(size, size, seed=i) * 0.6
        for k, g in enumerate(TRAINING_GAINS, 1):
            (root / f"{i:03d}").mkdir(parents=True, exist_ok=True)
            write_image(root / f"{i:03d}" / f"{k}.png", np.clip(base * g, 0, 1))
        (root / "Label").mkdir(exist_ok=True)
        write_image(root / "Label" / f"{i:03d}.png", base)
    return root


# --- dataset building -------------------------------------------------------------------------
#: Exposure values of the frames :func:`write_bracket` writes, dark first.
BRACKET_EVS = (-1.0, 0.0, 1.0)


def write_bracket(folder: Path, *, size=(48, 64), names=("1.jpg", "2.jpg", "3.jpg"), seed=0) -> list[Path]:
    """JPEG frames of one synthetic scene at BRACKET_EVS, files named in ``names`` order (dark first)."""
    folder.mkdir(parents=True)
    linear = srgb_to_linear(synthetic_scene(*size, seed=seed)) * 0.6
    paths = []
    for ev, name in zip(BRACKET_EVS, names):
        paths.append(write_image(folder / name, linear_to_srgb(linear * 2.0 ** ev), quality=95))
    return paths


# --- fusion candidates ------------------------------------------------------------------------
def psnr_8bit(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) between two [0, 1] images quantised to 8 bits, as the candidates are saved."""
    mse = float(np.mean((np.round(a * 255.0) - np.round(b * 255.0)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def distinct_candidates(images: dict[str, np.ndarray], threshold_db: float = 40.0) -> list[str]:
    """Names kept when every image within ``threshold_db`` PSNR of an already kept one is dropped
    (greedy, in the given order): a set of pairwise distinct candidates."""
    kept: list[str] = []
    for name, img in images.items():
        if all(psnr_8bit(img, images[k]) < threshold_db for k in kept):
            kept.append(name)
    return kept


# --- screening --------------------------------------------------------------------------------
#: Distinctive generator names: if any of them shows up in a response, the screening is not blind.
SCREENING_GENERATORS = ["mertens_zqx", "drago_zqx", "enfuse_zqx", "reinhard_zqx"]
XSS_SCENE = "<img src=x onerror=window.__xss=1>"
SCREENING_SCENES = ["1", "2", XSS_SCENE]


def make_screening_dataset(root: Path, scenes=SCREENING_SCENES, generators=SCREENING_GENERATORS, frames: int = 3,
                           size=(60, 80)) -> Path:
    """A tiny dataset in the build-dataset layout: frames, labels, candidates (8-bit PNG/JPEG)."""
    base = synthetic_scene(*size)
    for s, scene in enumerate(scenes):
        (root / "candidates" / scene).mkdir(parents=True)
        (root / scene).mkdir()
        for g, gen in enumerate(generators):
            write_image(root / "candidates" / scene / f"{gen}.png", base ** (0.5 + 0.4 * g) * (0.9 + 0.03 * s))
        for k in range(frames):
            write_image(root / scene / f"{k + 1}.JPG", np.clip(base * 2.0 ** (k - 1), 0, 1))
    (root / "Label").mkdir()
    return root


def screening_server(dataset: Path):
    """``sice screen DATASET`` in a subprocess; yields (process, base URL) once it answers."""
    from support.live_server import command_server

    return command_server("screen", str(dataset), health="/api/health", startup=60)


def labelled_dataset(root: Path, *, h=40, w=48, scenes=("001", "002"), n=5) -> Path:
    """Our builder's layout: <scene>/<k>.jpg dark->bright, Label/<scene>.png."""
    (root / "Label").mkdir(parents=True, exist_ok=True)
    for s, name in enumerate(scenes):
        radiance = synthetic_scene(h, w, seed=s)
        for k in range(n):
            (root / name).mkdir(exist_ok=True)
            write_image(root / name / f"{k + 1}.png", np.clip(radiance * 2.0 ** (k - n // 2), 0, 1))
        write_image(root / "Label" / f"{name}.png", radiance)
    return root
