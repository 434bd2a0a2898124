"""`sice enhance` end to end as a user runs it: real subprocesses, real files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sice import io as sio

MODEL = "gaingrid:untrained"  # identity network: outputs must equal inputs, so layout bugs show


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sice", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def run_here(*args, input=None):
    """What ``run`` does, in this process: no interpreter and torch start-up per call. An
    exception that escaped the command (a traceback for a user) fails the test."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from sice.cli.main import cli

    r = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr, stdout_bytes=r.stdout_bytes)


def _photo(path, h=40, w=60, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
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


def test_the_default_model_enhances_without_importing_torch(tmp_path):
    # importing torch took 1.4-2.3 s, more than the rest of a 20 MP photo's whole process: the
    # shipped model's onnxruntime path must not pull it in through any import
    _photo(tmp_path / "a.jpg")
    code = ("import sys\nfrom sice.cli.main import main\ntry:\n"
            "    main(['enhance', sys.argv[1], '-o', sys.argv[2], '-q'])\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print('torch imported:', 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.jpg"), str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "a.jpg").is_file()
    assert r.stdout.splitlines()[-1] == "torch imported: False"


def test_a_model_that_cannot_load_is_the_one_error_even_if_the_first_photo_is_broken(tmp_path):
    # the model loads while the first photo is read: the model's error must still come alone,
    # not after (or instead of) a per-file failure of that photo
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _photo(tmp_path / "in" / "b.png")
    (tmp_path / "bad.onnx").write_bytes(b"not an onnx graph")
    (tmp_path / "bad.onnx.json").write_text('{"kind": "tone", "config": {"name": "tonegrid"}, "work_size": 768}')
    r = run("enhance", tmp_path / "in", "-o", tmp_path / "o", "--model", tmp_path / "bad.onnx")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "not a loadable ONNX model" in r.stderr, r.stderr
    assert not (tmp_path / "o" / "b.png").exists()


# --------------------------------------------------------------------------------------------
# Issue 16: no photo lost to a name collision, bad entries do not abort the batch, names escaped
# --------------------------------------------------------------------------------------------
def _two_photos(tmp_path):
    """c/d1/x.png and c/d2/x.png with different pixels (a camera library's IMG_0001 in two folders)."""
    for k, sub in enumerate(("d1", "d2")):
        (tmp_path / "c" / sub).mkdir(parents=True)
        sio.write_image(tmp_path / "c" / sub / "x.png", np.full((8, 12, 3), 40 + 100 * k, np.uint8))
    return tmp_path / "c" / "d1", tmp_path / "c" / "d2"


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_same_name_in_two_folders_both_enhanced_and_said(tmp_path, extra):
    d1, d2 = _two_photos(tmp_path)
    out = tmp_path / "c" / "o"
    r = run_here("enhance", d1, d2, "-o", out, "--model", MODEL, *extra)
    assert r.returncode == 0, r.stderr
    assert f"sice: renamed: {d2 / 'x.png'} -> {out / 'x-2.png'} ({out / 'x.png'} is the output of {d1 / 'x.png'})" \
        in r.stderr.splitlines()
    assert "2 files done, 0 failed" in r.stderr and "skipped" not in r.stderr
    for src, dst in ((d1 / "x.png", out / "x.png"), (d2 / "x.png", out / "x-2.png")):  # identity model
        np.testing.assert_array_equal(sio.read_image(dst).pixels, sio.read_image(src).pixels)
    assert r.stdout.splitlines() == [str(out / "x.png"), str(out / "x-2.png")]
    again = run_here("enhance", d1, d2, "-o", out, "--model", MODEL)  # the re-run maps them the same way
    assert again.returncode == 0 and "skipped 2 existing" in again.stderr


def test_same_stem_with_one_output_format_both_enhanced(tmp_path):
    _photo(tmp_path / "a.jpg", quality=95)
    _photo(tmp_path / "a.png", h=20)
    r = run_here("enhance", tmp_path / "a.jpg", tmp_path / "a.png", "-o", tmp_path / "o", "--format", "png", "--model", MODEL)
    assert r.returncode == 0, r.stderr
    assert sio.read_image(tmp_path / "o" / "a.png").pixels.shape == (40, 60, 3)
    assert sio.read_image(tmp_path / "o" / "a-2.png").pixels.shape == (20, 60, 3)


def test_output_file_name_with_several_inputs_is_an_error(tmp_path):
    _photo(tmp_path / "a.png")
    _photo(tmp_path / "b.png")
    r = run_here("enhance", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "x.jpg", "--model", MODEL)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"sice: error: {tmp_path / 'x.jpg'}: -o names one file, but the inputs give 2 "
                                "images; give an output folder instead (it is created if missing)")
    assert not (tmp_path / "x.jpg").exists()


def test_output_folder_equal_to_input_folder_says_so_and_suffix_writes_beside(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _photo(src / "a.png")
    r = run_here("enhance", src, "-o", src, "--model", MODEL)
    assert r.returncode == 1 and r.stderr.strip() == (
        f"sice: error: {src}: the output folder is the input folder {src}: outputs would replace or mix with the "
        "inputs; choose another -o, or add --suffix to write beside the inputs")
    r = run_here("enhance", src, "-o", src, "--suffix", "_enhanced", "--model", MODEL)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in src.iterdir()) == ["a.png", "a_enhanced.png"]
    again = run_here("enhance", src, "-o", src, "--suffix", "_enhanced", "--model", MODEL)
    assert again.returncode == 0 and "skipped 1 existing" in again.stderr
    assert sorted(p.name for p in src.iterdir()) == ["a.png", "a_enhanced.png"]  # no a_enhanced_enhanced


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_symlink_loop_fails_alone_also_when_rerun(tmp_path, extra):
    import os

    src = tmp_path / "in"
    src.mkdir()
    _photo(src / "a.png")
    os.symlink("l.jpg", src / "l.jpg")  # ln -s l.jpg in/l.jpg
    out = tmp_path / "out"
    for _ in range(2):  # the second run finds the output folder: the documented re-run path
        r = run_here("enhance", src, "-o", out, "--model", MODEL, *extra)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"sice: failed: {src / 'l.jpg'}: symbolic link loop" in r.stderr.splitlines()
        assert (out / "a.png").is_file() and not (out / "l.jpg").exists()


def test_link_into_a_folder_without_search_permission_fails_alone_as_a_normal_user(tmp_path):
    """Run as ``nobody`` (root may search any folder); skipped where that cannot be done."""
    import os
    import shutil
    import tempfile

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the command as the user nobody")
    base = Path(tempfile.mkdtemp(prefix="sice-perm-"))
    try:
        base.chmod(0o777)
        (base / "secret").mkdir()
        (base / "in").mkdir()
        _photo(base / "secret" / "x.png")
        _photo(base / "in" / "a.png")
        os.symlink(base / "secret" / "x.png", base / "in" / "link.png")
        (base / "secret").chmod(0)
        (base / "in").chmod(0o777)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "sice",
               "enhance", "in", "-o", "out", "--model", MODEL]
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                                f"import os; os.stat({str(base / 'in' / 'link.png')!r})"], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("the user nobody can search every folder here")
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=base, timeout=300,
                           env={**os.environ, "HOME": str(base)})
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "sice: failed: in/link.png: permission denied (a folder on its path cannot be searched)" in r.stderr
        assert (base / "out" / "a.png").is_file()
    finally:
        (base / "secret").chmod(0o700)
        shutil.rmtree(base)


def test_file_names_with_control_characters_cannot_split_or_forge_lines(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    forged = "evil\nsice: failed: forged.png: fake reason\r\x1b[2K.png"
    (src / forged).write_bytes(b"not an image")
    _photo(src / "good\nname.png")
    r = run_here("enhance", src, "-o", tmp_path / "out", "--model", MODEL)
    assert r.returncode == 1
    failed = [line for line in r.stderr.splitlines() if line.startswith("sice: failed:")]
    assert failed == [f"sice: failed: {src}/evil\\nsice: failed: forged.png: fake reason\\r\\x1b[2K.png: "
                      "not an image file, or a format sice cannot read"]
    assert "\r" not in r.stderr and "\x1b" not in r.stderr
    assert r.stdout.splitlines() == [str(tmp_path / "out" / "good\\nname.png")]  # one line, escaped
    assert (tmp_path / "out" / "good\nname.png").is_file()


def test_a_folder_without_images_is_reported_and_counted(tmp_path):
    (tmp_path / "empty").mkdir()
    _photo(tmp_path / "a.png")
    r = run_here("enhance", tmp_path / "empty", tmp_path / "a.png", "-o", tmp_path / "o", "--model", MODEL)
    assert r.returncode == 1
    assert f"sice: failed: {tmp_path / 'empty'}: no image files in this folder" in r.stderr.splitlines()
    assert "1 files done, 1 failed" in r.stderr and (tmp_path / "o" / "a.png").is_file()


# --------------------------------------------------------------------------------------------
# Issue 17 item 3: the options people expect
# --------------------------------------------------------------------------------------------
def _invoke(*args, input=None):
    from click.testing import CliRunner

    from sice.cli.main import cli

    return CliRunner().invoke(cli, ["enhance", *map(str, args)], input=input)


def test_stdout_lists_every_output_and_json_describes_each_input(tmp_path):
    import json

    _photo(tmp_path / "in" / "a.jpg", quality=70)
    _photo(tmp_path / "in" / "b.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"nope")
    out = tmp_path / "o"
    _photo(out / "b.png")  # b's output exists: skipped
    r = _invoke(tmp_path / "in", "-o", out, "--model", MODEL)
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [str(out / "b.png"), str(out / "a.jpg")]  # skipped ones first, then as written
    r = _invoke(tmp_path / "in", "-o", out, "--model", MODEL, "--json", "--compare", "--overwrite")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert set(doc) == {"model", "backend", "device", "strength", "written", "skipped", "failed", "files"}
    assert (doc["model"], doc["backend"], doc["device"], doc["strength"]) == ("gaingrid", "torch", "cpu", 1.0)
    assert (doc["written"], doc["skipped"], doc["failed"]) == (2, 0, 1)
    files = {Path(f["input"]).name: f for f in doc["files"]}
    assert set(files["a.jpg"]) == {"input", "output", "status", "compare", "renamed_from", "quality", "seconds",
                                   "error"}
    assert files["a.jpg"]["status"] == "written" and files["a.jpg"]["quality"] == 70
    assert files["a.jpg"]["compare"] == str(out / "a-compare.jpg") and Path(files["a.jpg"]["compare"]).is_file()
    assert files["b.png"]["quality"] is None and isinstance(files["b.png"]["seconds"], float)
    assert files["bad.png"]["status"] == "failed" and files["bad.png"]["error"].startswith("not an image file")


def _quant_tables(path):
    with Image.open(path) as im:
        return {k: list(v) for k, v in im.quantization.items()}


def _pillow_tables(quality, tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / f"ref{quality}.jpg", quality=quality)
    return _quant_tables(tmp_path / f"ref{quality}.jpg")


@pytest.mark.parametrize("written_at", [55, 82, 97])
def test_jpeg_quality_follows_the_input_unless_given(tmp_path, written_at):
    _photo(tmp_path / "in.jpg", quality=written_at)
    r = _invoke(tmp_path / "in.jpg", "-o", tmp_path / "same.jpg", "--model", MODEL)
    assert r.exit_code == 0, r.stderr
    # the output's tables are those Pillow (libjpeg) writes at the input's quality
    assert _quant_tables(tmp_path / "same.jpg") == _pillow_tables(written_at, tmp_path)
    r = _invoke(tmp_path / "in.jpg", "-o", tmp_path / "q90.jpg", "--quality", "90", "--model", MODEL)
    assert r.exit_code == 0 and _quant_tables(tmp_path / "q90.jpg") == _pillow_tables(90, tmp_path)


def test_png_to_jpeg_gets_quality_95(tmp_path):
    _photo(tmp_path / "in.png")
    assert _invoke(tmp_path / "in.png", "-o", tmp_path / "o.jpg", "--model", MODEL).exit_code == 0
    assert _quant_tables(tmp_path / "o.jpg") == _pillow_tables(95, tmp_path)


def test_q_means_quiet_and_quality_is_a_long_option(tmp_path):
    _photo(tmp_path / "a.png")
    _photo(tmp_path / "b.png")
    r = _invoke(tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o", "-q", "--model", MODEL)
    assert r.exit_code == 0 and r.stderr == "" and len(r.stdout.splitlines()) == 2
    r = _invoke(tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o2", "-v", "--model", MODEL)
    lines = r.stderr.splitlines()
    assert f"sice: {tmp_path / 'a.png'} -> {tmp_path / 'o2' / 'a.png'} (" in lines[1]
    assert lines[0] == "sice: model gaingrid (torch backend, cpu)" and "2 files done, 0 failed" in lines[-1]
    help_text = _invoke("--help").stdout
    assert "-q, --quiet" in help_text and "--quality INTEGER RANGE" in help_text and "-q, --quality" not in help_text
    assert _invoke("-q", "-v", tmp_path / "a.png").exit_code == 2


def test_progress_counts_only_the_files_that_are_enhanced(tmp_path, monkeypatch):
    import sice.cli.enhance as cli_enhance

    for name in ("a.png", "b.png", "c.png"):
        _photo(tmp_path / "in" / name)
    _photo(tmp_path / "o" / "b.png")
    seen, totals = [], []

    def progress(outcomes, total, *, enabled):
        totals.append(total)
        seen.extend(outcomes)
        return seen

    monkeypatch.setattr(cli_enhance, "_progress", progress)
    assert _invoke(tmp_path / "in", "-o", tmp_path / "o", "--model", MODEL).exit_code == 0
    assert totals == [2] and [Path(o.source).name for o in seen] == ["a.png", "c.png"]


def test_stdin_to_stdout(tmp_path):
    _photo(tmp_path / "a.png")
    r = subprocess.run([sys.executable, "-m", "sice", "enhance", "-", "-o", "-", "--model", MODEL],
                       input=(tmp_path / "a.png").read_bytes(), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout[:8] == b"\x89PNG\r\n\x1a\n" and r.stderr == b""
    (tmp_path / "back.png").write_bytes(r.stdout)
    np.testing.assert_array_equal(sio.read_image(tmp_path / "back.png").pixels, sio.read_image(tmp_path / "a.png").pixels)
    r = run_here("enhance", "-", "-o", "-", "--format", "jpg", "--model", MODEL, input=(tmp_path / "a.png").read_bytes())
    assert r.returncode == 0 and r.stdout_bytes[:3] == b"\xff\xd8\xff"
    r = run_here("enhance", "-", "-o", tmp_path / "f.png", "--model", MODEL, input=b"garbage")
    assert r.returncode == 1 and "sice: failed: <stdin>: not an image file" in r.stderr
    assert not (tmp_path / "f.png").exists()


def test_recursive_glob_without_r(tmp_path):
    _photo(tmp_path / "shots" / "a.png")
    _photo(tmp_path / "shots" / "day" / "deep" / "b.png")
    r = _invoke(str(tmp_path / "shots" / "**" / "*.png"), "-o", tmp_path / "o", "--model", MODEL)
    assert r.exit_code == 0, r.stderr
    assert sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.png")) == \
        ["a.png", "day/deep/b.png"]


def test_strength_zero_returns_the_photo_and_compare_shows_both(tmp_path):
    """With the shipped model: strength 0 scales its gain and offset fields to nothing."""
    px = _photo(tmp_path / "dark.png", h=60, w=90)
    r = _invoke(tmp_path / "dark.png", "-o", tmp_path / "s0.png", "--strength", "0", "--compare")
    assert r.exit_code == 0, r.stderr
    np.testing.assert_array_equal(sio.read_image(tmp_path / "s0.png").pixels, px)
    both = sio.read_image(tmp_path / "s0-compare.png").pixels
    assert both.shape[1] == 90 and both.shape[0] > 2 * 60  # wide: one above the other, with a gap
    assert _invoke(tmp_path / "dark.png", "-o", tmp_path / "x.png", "--strength", "1.5").exit_code == 2


def test_device_cuda_without_cuda_is_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _photo(tmp_path / "a.png")
    r = run_here("enhance", tmp_path / "a.png", "-o", tmp_path / "o", "--device", "cuda")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("sice: error: device 'cuda': CUDA is not available (")
    assert not (tmp_path / "o" / "a.png").exists()


def test_the_cli_tile_default_is_the_cores():
    from sice.cli.enhance import command
    from sice.enhancement.api import DEFAULT_TILE
    from sice.enhancement.batch import ModelSpec

    tile = next(p for p in command.params if p.name == "tile")
    assert tile.default == DEFAULT_TILE == ModelSpec(None).tile == 512
