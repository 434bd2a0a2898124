"""Planning a batch (issue 16 items 1, 3, 6): every output name decided before anything is written,
collisions disambiguated and said, inputs never overwritten, bad entries are per-entry failures."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from sice.enhancement.plan import collision_note, find_sources, plan_batch, stat_problem
from sice.errors import SiceError
from sice.io import write_image


def _img(path: Path, value: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.full((6, 8, 3), value, np.uint8))
    return path


def _outputs(plan) -> dict[str, str]:
    return {str(j.source): str(j.output) for j in plan.jobs}


def test_same_name_from_two_folders_gets_a_numbered_name(tmp_path):
    a, b = _img(tmp_path / "c" / "d1" / "x.jpg"), _img(tmp_path / "c" / "d2" / "x.jpg")
    out = tmp_path / "o"
    plan = plan_batch([str(a.parent), str(b.parent)], out)
    assert _outputs(plan) == {str(a): str(out / "x.jpg"), str(b): str(out / "x-2.jpg")}
    renamed = [j for j in plan.jobs if j.renamed_from is not None]
    assert len(renamed) == 1 and renamed[0].renamed_from == out / "x.jpg"
    assert collision_note(renamed[0]) == f"{b} -> {out / 'x-2.jpg'} ({out / 'x.jpg'} is the output of {a})"
    assert plan.failures == []


def test_a_jpg_and_a_png_with_one_output_format_do_not_collide(tmp_path):
    a, b = _img(tmp_path / "in" / "a.jpg"), _img(tmp_path / "in" / "a.png")
    plan = plan_batch([str(tmp_path / "in")], tmp_path / "o", fmt="png")
    assert sorted(_outputs(plan).values()) == [str(tmp_path / "o" / "a-2.png"), str(tmp_path / "o" / "a.png")]


def test_names_equal_on_a_case_insensitive_file_system_are_disambiguated(tmp_path):
    a, b = _img(tmp_path / "d1" / "IMG_0001.JPG"), _img(tmp_path / "d2" / "img_0001.jpg")
    plan = plan_batch([str(a), str(b)], tmp_path / "o")
    assert _outputs(plan) == {str(a): str(tmp_path / "o" / "IMG_0001.JPG"),
                              str(b): str(tmp_path / "o" / "img_0001-2.jpg")}


def test_a_numbered_name_already_taken_by_another_input_is_skipped_over(tmp_path):
    x1, x2, x2b = _img(tmp_path / "d1" / "x.jpg"), _img(tmp_path / "d2" / "x.jpg"), _img(tmp_path / "d3" / "x-2.jpg")
    plan = plan_batch([str(x1), str(x2b), str(x2)], tmp_path / "o")
    assert _outputs(plan) == {str(x1): str(tmp_path / "o" / "x.jpg"), str(x2b): str(tmp_path / "o" / "x-2.jpg"),
                              str(x2): str(tmp_path / "o" / "x-3.jpg")}


def test_compare_images_take_part_in_the_collision_plan(tmp_path):
    a, b = _img(tmp_path / "in" / "a.jpg"), _img(tmp_path / "in" / "a-compare.jpg")
    plan = plan_batch([str(tmp_path / "in")], tmp_path / "o", compare=True)
    targets = [t for j in plan.jobs for t in j.targets()]
    assert len(targets) == 4 and len({str(t).lower() for t in targets}) == 4, targets


def test_the_plan_does_not_depend_on_what_the_output_folder_holds(tmp_path):
    """A re-run must map each input to the same output, so finished ones can be skipped."""
    _img(tmp_path / "d1" / "x.jpg"), _img(tmp_path / "d2" / "x.jpg")
    args = ([str(tmp_path / "d1"), str(tmp_path / "d2")], tmp_path / "o")
    first = _outputs(plan_batch(*args))
    for out in first.values():
        _img(Path(out))
    assert _outputs(plan_batch(*args)) == first


def test_suffix_and_relative_structure(tmp_path):
    _img(tmp_path / "in" / "sub" / "b.png")
    _img(tmp_path / "in" / "a.jpg")
    plan = plan_batch([str(tmp_path / "in")], tmp_path / "o", recursive=True, suffix="_x")
    assert sorted(_outputs(plan).values()) == [str(tmp_path / "o" / "a_x.jpg"), str(tmp_path / "o" / "sub" / "b_x.png")]


def test_output_file_with_several_inputs_is_an_error(tmp_path):
    a, b = _img(tmp_path / "a.jpg"), _img(tmp_path / "b.jpg")
    with pytest.raises(SiceError, match=r"x\.jpg: -o names one file, but the inputs give 2 images"):
        plan_batch([str(a), str(b)], tmp_path / "x.jpg")
    with pytest.raises(SiceError, match="-o names one file, but the inputs give the folder"):
        plan_batch([str(tmp_path)], tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()
    single = plan_batch([str(a)], tmp_path / "x.jpg")
    assert single.single_file and _outputs(single) == {str(a): str(tmp_path / "x.jpg")}


def test_output_folder_equal_to_the_input_folder_needs_a_suffix(tmp_path):
    _img(tmp_path / "in" / "a.jpg")
    with pytest.raises(SiceError, match="the output folder is the input folder .*add --suffix"):
        plan_batch([str(tmp_path / "in")], tmp_path / "in")
    with pytest.raises(SiceError, match="the output folder is the input folder"):
        plan_batch([str(tmp_path / "in")], tmp_path / "in" / ".." / "in", fmt="png")
    plan = plan_batch([str(tmp_path / "in")], tmp_path / "in", suffix="_e", compare=True)
    assert _outputs(plan) == {str(tmp_path / "in" / "a.jpg"): str(tmp_path / "in" / "a_e.jpg")}
    # a re-run does not take the earlier outputs (or their compare images, or numbered ones) of
    # inputs in the folder for inputs ...
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "a_e.jpg"), _img(tmp_path / "in" / "a_e-compare.jpg"), _img(tmp_path / "in" / "a_e-2.jpg")
    # ... but a photo that only looks like one (no b.* beside it) is an input, never dropped
    _img(tmp_path / "in" / "b_e-2.jpg")
    assert _outputs(plan_batch([str(tmp_path / "in")], tmp_path / "in", suffix="_e", fmt="jpg")) == {
        str(tmp_path / "in" / "a.jpg"): str(tmp_path / "in" / "a_e.jpg"),
        str(tmp_path / "in" / "a.png"): str(tmp_path / "in" / "a_e-2.jpg"),
        str(tmp_path / "in" / "b_e-2.jpg"): str(tmp_path / "in" / "b_e-2_e.jpg")}


def test_an_output_that_is_an_input_is_refused_with_the_reason(tmp_path):
    a = _img(tmp_path / "a.png")
    b = _img(tmp_path / "o" / "a.png")  # an input named where a.png's output would go
    plan = plan_batch([str(a), str(b)], tmp_path / "o")
    assert _outputs(plan) == {str(b): str(tmp_path / "o" / "a-2.png")}
    assert plan.failures == [(str(a), f"{b}: output path is another input of this batch ({b}); "
                                      "refusing to overwrite an input")]
    plan = plan_batch([str(b)], tmp_path / "o")
    assert plan.jobs == [] and plan.failures == [
        (str(b), f"{b}: output path is the input file; refusing to overwrite an input")]


def test_output_folder_inside_the_input_folder_is_not_read_back(tmp_path):
    _img(tmp_path / "in" / "a.jpg")
    _img(tmp_path / "in" / "enhanced" / "a.jpg")  # an earlier run's output
    plan = plan_batch([str(tmp_path / "in")], tmp_path / "in" / "enhanced", recursive=True)
    assert _outputs(plan) == {str(tmp_path / "in" / "a.jpg"): str(tmp_path / "in" / "enhanced" / "a.jpg")}
    plan = plan_batch([str(tmp_path / "in" / "**" / "*.jpg")], tmp_path / "in" / "enhanced")
    assert _outputs(plan) == {str(tmp_path / "in" / "a.jpg"): str(tmp_path / "in" / "enhanced" / "a.jpg")}


def test_recursive_glob_keeps_the_structure_below_its_fixed_part(tmp_path):
    _img(tmp_path / "shots" / "a.png")
    _img(tmp_path / "shots" / "day1" / "a.png")
    _img(tmp_path / "shots" / "day1" / "deep" / "c.png")
    sources, failures = find_sources([str(tmp_path / "shots" / "**" / "*.png")])
    assert failures == []
    assert sorted(str(s.rel) for s in sources) == ["a.png", "day1/a.png", "day1/deep/c.png"]


def test_symlink_loop_is_a_per_entry_failure_and_the_rest_is_planned(tmp_path):
    good = _img(tmp_path / "in" / "a.jpg")
    os.symlink("l.jpg", tmp_path / "in" / "l.jpg")  # ln -s l.jpg in/l.jpg
    out = tmp_path / "out"
    for _ in range(2):  # the re-run path: the output folder exists the second time
        plan = plan_batch([str(tmp_path / "in")], out)
        assert [str(j.source) for j in plan.jobs] == [str(good), str(tmp_path / "in" / "l.jpg")]
        assert stat_problem(tmp_path / "in" / "l.jpg") == "symbolic link loop"
        assert stat_problem(good) is None
        out.mkdir(exist_ok=True)
        _img(out / "a.jpg")


def test_a_link_into_a_folder_without_search_permission_is_a_per_entry_failure(tmp_path, monkeypatch):
    """As root every folder can be searched, so EACCES is simulated for that one link."""
    good = _img(tmp_path / "in" / "a.jpg")
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret" / "x.jpg", tmp_path / "in" / "denied.jpg")
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if str(path).endswith("denied.jpg"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    plan = plan_batch([str(tmp_path / "in")], tmp_path / "out")
    assert [j.source.name for j in plan.jobs] == ["a.jpg", "denied.jpg"]
    assert stat_problem(tmp_path / "in" / "denied.jpg") == "permission denied (a folder on its path cannot be searched)"
    assert stat_problem(good) is None


def test_unlistable_subfolder_is_a_failure_and_its_siblings_are_found(tmp_path, monkeypatch):
    _img(tmp_path / "in" / "a.jpg")
    _img(tmp_path / "in" / "locked" / "b.jpg")
    _img(tmp_path / "in" / "open" / "c.jpg")
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    sources, failures = find_sources([str(tmp_path / "in")], recursive=True)
    assert sorted(str(s.rel) for s in sources) == ["a.jpg", "open/c.jpg"]
    assert failures == [(str(tmp_path / "in" / "locked"), "cannot list folder: Permission denied")]


def test_a_folder_without_images_is_a_failure(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "nested" / "sub").mkdir(parents=True)
    _img(tmp_path / "nested" / "sub" / "a.png")
    (tmp_path / "empty" / "notes.txt").write_text("no image here")
    sources, failures = find_sources([str(tmp_path / "empty"), str(tmp_path / "nested")])
    assert sources == []
    assert failures == [(str(tmp_path / "empty"), "no image files in this folder"),
                        (str(tmp_path / "nested"), "no image files in this folder (add -r to search its sub-folders)")]


def test_stdin_plans(tmp_path):
    assert str(plan_batch(["-"], None).jobs[0].output) == "-"
    assert plan_batch(["-"], tmp_path / "x.png").jobs[0].output == tmp_path / "x.png"
    with pytest.raises(SiceError, match="cannot be mixed"):
        plan_batch(["-", "a.jpg"], None)
    with pytest.raises(SiceError, match="with standard input, -o must be one image file"):
        plan_batch(["-"], tmp_path)


# ------------------------------------------------------------------- fuzzing the planner
# Property-based: random file names built to collide (case, Unicode normal form, an extension
# that one output format maps onto another, names that look like another file's numbered or
# compare name), spread over a few input folders. Whatever they are, every image gets exactly
# one outcome, no two planned files share a name on a case-insensitive file system, and no
# planned file is an input.
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_STEMS = st.sampled_from(["x", "X", "IMG_0001", "img_0001", "caf\u00e9", "cafe\u0301", "x-2", "x-compare",
                          "a_s", "a"])
_EXTS = st.sampled_from([".jpg", ".JPG", ".png", ".tif", ".jpeg"])
_NAMES = st.lists(st.tuples(st.integers(0, 2), _STEMS, _EXTS), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=_NAMES, fmt=st.sampled_from(["same", "png", "jpg"]), compare=st.booleans(),
       suffix=st.sampled_from(["", "_s"]), beside=st.booleans())
def test_planned_names_never_collide_and_never_hit_an_input(tmp_path_factory, names, fmt, compare, suffix, beside):
    import unicodedata

    root = tmp_path_factory.mktemp("fuzz")
    made = []
    for folder, stem, ext in names:
        path = root / f"d{folder}" / f"{stem}{ext}"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # planning lists names only; nothing is decoded
        made.append(path)
    folders = sorted({str(p.parent) for p in made})
    beside = beside and bool(suffix)
    out = Path(folders[0]) if beside else root / "out"
    plan = plan_batch(folders, out, fmt=fmt, compare=compare, suffix=suffix)
    key = lambda p: unicodedata.normalize("NFC", os.path.normpath(os.path.abspath(p))).casefold()
    # written beside the inputs, a file named <stem><suffix>[-N][-compare] next to <stem>.* is an
    # earlier run's output of that input (its job plans it again), every other file an input
    if beside:
        earlier = {p for p in made if p.parent == Path(folders[0]) and any(
            q.parent == p.parent and q != p and p.stem in {f"{q.stem}{suffix}{n}{c}" for n in ("", "-2", "-3")
                                                          for c in ("", "-compare")} for q in made)}
    else:
        earlier = set()
    inputs = [p for p in made if p not in earlier]
    # every input has exactly one outcome: a job, or a failure that names it
    outcomes = [str(j.source) for j in plan.jobs] + [f for f, _ in plan.failures]
    assert sorted(outcomes) == sorted(str(p) for p in inputs)
    planned = [key(p) for j in plan.jobs for p in j.targets()]
    assert len(planned) == len(set(planned))
    assert not set(planned) & {key(p) for p in inputs}
