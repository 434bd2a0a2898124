"""Property tests (hypothesis): I/O round trips for every mode and bit depth; every registered
model returns an output of the input's exact size, finite, for any height/width >= 1."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sice import io as sio
from sice.enhancement import Enhancer
from sice.models import list_models

LOSSLESS = {  # (extension, channels, dtype) that must round-trip bit-exactly
    (".png", c, d) for c in (1, 2, 3, 4) for d in ("uint8", "uint16")
} | {(".tif", c, d) for c in (1, 3, 4) for d in ("uint8", "uint16", "float32")} | {(".bmp", c, "uint8") for c in (1, 3)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(LOSSLESS)), h=st.integers(1, 23), w=st.integers(1, 23), seed=st.integers(0, 2**16))
def test_io_round_trip_is_exact(tmp_path, kind, h, w, seed):
    ext, c, dtype = kind
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        px = rng.random((h, w, c)).astype(np.float32)
    else:
        px = rng.integers(0, np.iinfo(dtype).max + 1, (h, w, c), dtype=np.int64).astype(dtype)
    path = sio.write_image(tmp_path / f"p{ext}", px)
    back = sio.read_image(path).pixels
    assert back.dtype == px.dtype
    np.testing.assert_array_equal(back, px)


_ENHANCERS: dict[str, Enhancer] = {}


def _enhancer(name):
    if name not in _ENHANCERS:
        _ENHANCERS[name] = Enhancer(f"{name}:untrained", tile=32)
    return _ENHANCERS[name]


@pytest.mark.parametrize("name", list_models())
@settings(max_examples=6, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), seed=st.integers(0, 1000))
def test_every_model_keeps_size_and_is_finite(name, h, w, seed):
    img = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    out = _enhancer(name).enhance_rgb(img)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
