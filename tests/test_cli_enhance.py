"""`sice enhance` end to end as a user runs it: real subprocesses, real files."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sice import io as sio

MODEL = "gaingrid:untrained"  # identity network: outputs must equal inputs, so layout bugs show


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sice", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _photo(path, h=40, w=60, **save):
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.stack([xx * 4 % 256, yy * 6 % 256, (xx + yy) * 2 % 256], -1).astype(np.uint8)
    Image.fromarray(px).save(path, **save)
    return px


def test_batch_goes_on_past_bad_files_and_reports(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _photo(src / "a.png")
    _photo(src / "sub" / "b.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    r = run("enhance", src, "-r", "-o", out, "--model", MODEL)
    assert r.returncode == 1, r.stderr
    assert "broken.jpg" in r.stderr and "Traceback" not in r.stderr
    assert "2 files done, 1 failed" in r.stderr
    assert (out / "a.png").is_file() and (out / "sub" / "b.png").is_file()
    assert not (out / "broken.jpg").exists()
    assert not [p for p in out.rglob(".*")]  # no temp files left behind
    np.testing.assert_array_equal(sio.read_image(out / "a.png").pixels, sio.read_image(src / "a.png").pixels)


def test_rerun_skips_finished_outputs(tmp_path):
    _photo(tmp_path / "a.png")
    out = tmp_path / "out"
    assert run("enhance", tmp_path / "a.png", "-o", out, "--model", MODEL).returncode == 0
    r = run("enhance", tmp_path / "a.png", "-o", out, "--model", MODEL)
    assert r.returncode == 0 and "skipped 1 existing" in r.stderr


def test_single_file_output_and_format_and_size(tmp_path):
    _photo(tmp_path / "odd.jpg", h=37, w=53, quality=95)
    r = run("enhance", tmp_path / "odd.jpg", "-o", tmp_path / "res.png", "--model", MODEL)
    assert r.returncode == 0, r.stderr
    assert sio.read_image(tmp_path / "res.png").pixels.shape == (37, 53, 3)


def test_orientation_and_exif_survive(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    _photo(tmp_path / "rot.jpg", h=20, w=30, exif=exif.tobytes(), quality=95)
    r = run("enhance", tmp_path / "rot.jpg", "-o", tmp_path / "out", "--model", MODEL)
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "out" / "rot.jpg") as o:
        assert o.size == (20, 30)  # rotated upright: width and height swapped
        assert o.getexif().get(0x0112, 1) == 1 and o.getexif().get(0x010F) == "TestCam"


def test_refuses_to_overwrite_input(tmp_path):
    _photo(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    r = run("enhance", tmp_path / "a.png", "-o", tmp_path / "a.png", "--model", MODEL)
    assert r.returncode == 1 and "refusing to overwrite an input" in r.stderr
    assert (tmp_path / "a.png").read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["nothing-here.jpg"], "no such file or folder"),
    (["*.nomatch.png"], "pattern matches no image files"),
])
def test_missing_inputs_one_line_error(tmp_path, args, message):
    r = run("enhance", *args, "-o", tmp_path / "o", "--model", MODEL, cwd=tmp_path)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr


def test_unknown_model_is_one_line(tmp_path):
    _photo(tmp_path / "a.png")
    r = run("enhance", tmp_path / "a.png", "-o", tmp_path / "o", "--model", "no-such-model")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "unknown model 'no-such-model'" in r.stderr
