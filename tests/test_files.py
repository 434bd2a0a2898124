"""sice.files: the one atomic writer and the stale temp-file cleaner every writer relies on."""
from __future__ import annotations

import os
import stat

import pytest

from sice.errors import ImageWriteError
from sice.files import atomic_path, atomic_write, atomic_write_bytes, remove_stale_parts


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"new but half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_new_files_get_what_open_would_give_under_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"y")
    finally:
        os.umask(old)
    for name, content in (("a.bin", b"x"), ("b.bin", b"y")):
        assert (tmp_path / name).read_bytes() == content
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640


def test_a_missing_folder_is_a_one_line_error_naming_the_file(tmp_path):
    target = tmp_path / "no" / "such" / "out.png"
    with pytest.raises(ImageWriteError) as err:
        atomic_write_bytes(target, b"x")
    assert str(err.value).startswith(f"{target}: cannot write in {target.parent}")


def test_stale_parts_of_the_named_targets_only_are_removed(tmp_path):
    for name in (".a.jpg.k1ll3d.part", ".b.jpg.zz.part", ".a.jpg", "a.jpg.part", "c.part", ".notes"):
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_parts(tmp_path, ["a.jpg"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.jpg", ".b.jpg.zz.part", ".notes",
                                                          "a.jpg.part", "c.part"]
    assert remove_stale_parts(tmp_path) == 1  # any writer's temp: .b.jpg.zz.part
    assert remove_stale_parts(tmp_path / "missing") == 0
