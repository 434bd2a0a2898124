"""sice.dataset.build and `sice build-dataset`: layout, exposures order, selection, bad scenes,
failing generators, resume after interruption (in-process and a killed worker), votes."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sice.dataset.build import BuildOptions, build_dataset, find_scenes
from sice.dataset.manifest import read_scene_entries
from sice.dataset.selection import reselect_by_votes
from sice.io import read_rgb, write_image

from support.helpers import BRACKET_EVS, synthetic_scene, write_bracket

SIZE_INTERRUPT = (40, 56)  # a scene of this size makes the test generators misbehave...
MISBEHAVE = "SICE_TEST_MISBEHAVE"  # ...while this variable is set (spawned workers inherit it)


# Test generators and score: module-level, so that spawned workers can unpickle them.
def mean_fusion(frames, times):
    return np.mean(frames, axis=0)


def middle_frame(frames, times):
    return frames[len(frames) // 2] * 0.5 + 0.25


def broken(frames, times):
    raise RuntimeError("deliberately broken generator")


def interrupting(frames, times):
    if frames[0].shape[:2] == SIZE_INTERRUPT and os.environ.get(MISBEHAVE):
        raise KeyboardInterrupt
    return mean_fusion(frames, times)


def dying(frames, times):
    if frames[0].shape[:2] == SIZE_INTERRUPT and os.environ.get(MISBEHAVE):
        os._exit(3)  # a worker killed mid-scene (e.g. by the OOM killer)
    return mean_fusion(frames, times)


def closeness_to_grey(fused, frames):
    """A known score: higher when the mean brightness is nearer 0.5 (mean_fusion wins over
    middle_frame only when its mean is nearer 0.5)."""
    return 1.0 - abs(float(np.mean(fused)) - 0.5)


def mean_statistics(image):
    return {"mean": float(np.mean(image))}


def options(*generators, **kw) -> BuildOptions:
    gens = generators or (mean_fusion, middle_frame)
    # labels are the candidates' bytes here (finish="none"): these tests are about selection;
    # finishing is tested in tests/test_finishing.py
    return BuildOptions(generators=tuple((g.__name__, g) for g in gens), score=closeness_to_grey,
                        statistics=mean_statistics, **{"finish": "none", **kw})


def test_layout_manifest_and_mef_ssim_selection(tmp_path):
    src = tmp_path / "seq"
    write_bracket(src / "10")
    # Names given bright, dark, middle: the builder must reorder them dark -> bright.
    shuffled = write_bracket(src / "2", names=("b.jpg", "c.png", "a.jpg"), seed=1)
    out = tmp_path / "ds"

    result = build_dataset(src, out, options())

    assert sorted(result.built) == ["10", "2"] and not result.failed
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["scenes"]) == ["2", "10"]  # natural order
    scene = manifest["scenes"]["2"]
    # Dark -> bright: b.jpg (-1 EV), c.png (0), a.jpg (+1); bytes copied unchanged, png stays png.
    assert [f["source"] for f in scene["frames"]] == ["b.jpg", "c.png", "a.jpg"]
    assert [f["file"] for f in scene["frames"]] == ["2/1.jpg", "2/2.png", "2/3.jpg"]
    assert (out / "2" / "1.jpg").read_bytes() == shuffled[0].read_bytes()
    assert (out / "2" / "3.jpg").read_bytes() == shuffled[2].read_bytes()
    evs = [f["exposure_ev"] for f in scene["frames"]]
    np.testing.assert_allclose(evs, np.array(BRACKET_EVS) - BRACKET_EVS[0], atol=0.1)
    assert scene["exposure"]["source"] == "estimated"
    assert all(len(f["shift"]) == 2 for f in scene["frames"])
    assert "ghost_score" in scene["alignment"] and isinstance(scene["flags"], list)
    # Selection: the candidate with the best (known) score, copied byte for byte into Label/.
    scores = {n: g["mef_ssim"] for n, g in scene["generators"].items()}
    best = max(scores, key=scores.get)
    assert scene["label"]["generator"] == best and scene["label"]["selected_by"] == "mef-ssim"
    assert (out / "Label" / "2.png").read_bytes() == (out / "candidates" / "2" / f"{best}.png").read_bytes()
    fused = read_rgb(out / "candidates" / "2" / "mean_fusion.png")
    assert fused.shape == (48, 64, 3)
    assert all(g["seconds"] >= 0 and "mean" in g["statistics"] for g in scene["generators"].values())
    # Per-scene entries equal the merged manifest.
    assert read_scene_entries(out)["2"] == scene


def test_ext_png_converts_and_sice_layout_input(tmp_path):
    src = tmp_path / "sice"
    write_bracket(src / "1")
    (src / "Label").mkdir()
    write_image(src / "Label" / "1.png", synthetic_scene())  # the authors' label is not a scene
    out = tmp_path / "ds"
    result = build_dataset(src, out, options(mean_fusion, ext="png"))
    assert result.built == ["1"] and not result.failed
    files = sorted(p.name for p in (out / "1").iterdir())
    assert files == ["1.png", "2.png", "3.png"]
    np.testing.assert_allclose(read_rgb(out / "1" / "1.png"), read_rgb(src / "1" / "1.jpg"), atol=1 / 255)


def test_bad_scenes_are_reported_and_the_rest_is_built(tmp_path):
    src = tmp_path / "seq"
    write_bracket(src / "good")
    (src / "empty").mkdir()
    single = src / "single"
    single.mkdir()
    write_image(single / "1.jpg", synthetic_scene())
    sizes = src / "sizes"
    write_bracket(sizes)
    write_image(sizes / "4.jpg", synthetic_scene(32, 32))
    unreadable = src / "unreadable"
    write_bracket(unreadable)
    (unreadable / "4.jpg").write_bytes(b"this is not a jpeg")
    out = tmp_path / "ds"

    result = build_dataset(src, out, options())

    assert result.built == ["good"]
    reasons = {Path(item).name: reason for item, reason in result.failed}
    assert set(reasons) == {"empty", "single", "sizes", "unreadable"}
    assert "no image files" in reasons["empty"]
    assert "only one frame" in reasons["single"]
    assert "differ in size" in reasons["sizes"] and "32x32" in reasons["sizes"]
    assert "unreadable frame" in reasons["unreadable"] and "4.jpg" in reasons["unreadable"]
    assert sorted(p.name for p in (out / "Label").iterdir()) == ["good.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["scenes"]) == ["good"] and len(manifest["failed"]) == 4


def test_failing_generator_costs_one_candidate(tmp_path):
    src = tmp_path / "seq"
    write_bracket(src / "1")
    result = build_dataset(src, tmp_path / "ds", options(broken, mean_fusion))
    assert result.built == ["1"]
    assert result.generator_failures == [("1", "broken", "RuntimeError: deliberately broken generator")]
    entry = read_scene_entries(tmp_path / "ds")["1"]
    assert entry["label"]["generator"] == "mean_fusion"
    assert not (tmp_path / "ds" / "candidates" / "1" / "broken.png").exists()


def test_all_generators_failing_fails_the_scene(tmp_path):
    src = tmp_path / "seq"
    write_bracket(src / "1")
    result = build_dataset(src, tmp_path / "ds", options(broken))
    assert result.built == [] and "no generator produced a usable candidate" in result.failed[0][1]
    assert not (tmp_path / "ds" / "Label" / "1.png").exists()


def _half_built(src: Path) -> None:
    write_bracket(src / "1")
    write_bracket(src / "2", size=SIZE_INTERRUPT)
    write_bracket(src / "3")


def _assert_consistent(out: Path, finished: set[str], *, killed: bool = False) -> None:
    """Only finished scenes have a label or entry; manifest.json parses; no temp files remain
    (a killed process may leave hidden temp files, never a visible partial file)."""
    assert set(read_scene_entries(out)) == finished
    assert {p.stem for p in (out / "Label").glob("*.png")} == finished
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["scenes"]) == finished
    if not killed:
        assert not list(out.rglob("*.part"))


def test_resume_after_interruption_in_process(tmp_path, monkeypatch):
    src, out = tmp_path / "seq", tmp_path / "ds"
    _half_built(src)
    monkeypatch.setenv(MISBEHAVE, "1")
    with pytest.raises(KeyboardInterrupt):
        build_dataset(src, out, options(interrupting))
    _assert_consistent(out, {"1"})
    label_time = (out / "Label" / "1.png").stat().st_mtime_ns

    monkeypatch.delenv(MISBEHAVE)
    result = build_dataset(src, out, options(interrupting))

    assert result.resumed == ["1"] and result.built == ["2", "3"]
    assert (out / "Label" / "1.png").stat().st_mtime_ns == label_time  # not rebuilt
    _assert_consistent(out, {"1", "2", "3"})


def test_resume_after_a_worker_is_killed(tmp_path, monkeypatch):
    src, out = tmp_path / "seq", tmp_path / "ds"
    _half_built(src)
    monkeypatch.setenv(MISBEHAVE, "1")
    result = build_dataset(src, out, options(dying), workers=2)
    failed = dict(result.failed)
    assert "2" in failed and "worker process died" in failed["2"]
    finished = set(result.built)
    assert "2" not in finished
    _assert_consistent(out, finished, killed=True)

    monkeypatch.delenv(MISBEHAVE)
    again = build_dataset(src, out, options(dying))  # in-process: spawning is slow here

    assert not again.failed and set(again.resumed) == finished
    _assert_consistent(out, {"1", "2", "3"})


def test_resume_with_more_generators_adds_only_their_candidates(tmp_path):
    src, out = tmp_path / "seq", tmp_path / "ds"
    write_bracket(src / "1")
    write_bracket(src / "2", names=("1.png", "2.png", "3.png"), seed=2)
    build_dataset(src, out, options(middle_frame, broken))
    first = read_scene_entries(out)
    kept = {p: p.stat().st_mtime_ns for p in [out / "1" / "1.jpg", out / "candidates" / "1" / "middle_frame.png"]}

    result = build_dataset(src, out, options(middle_frame, mean_fusion, broken))

    assert sorted(result.extended) == ["1", "2"] and result.built == [] and not result.failed
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # frames, old candidates untouched
    for name, entry in read_scene_entries(out).items():
        assert entry["generators"]["middle_frame"] == first[name]["generators"]["middle_frame"]
        # The new candidate is made from the same aligned stack as a fresh build would use.
        fresh = build_dataset(src / name, tmp_path / f"fresh{name}", options(mean_fusion))
        assert fresh.built == [name]
        assert entry["generators"]["mean_fusion"]["mef_ssim"] == pytest.approx(
            read_scene_entries(tmp_path / f"fresh{name}")[name]["generators"]["mean_fusion"]["mef_ssim"], abs=1e-6)
        scores = {n: g["mef_ssim"] for n, g in entry["generators"].items() if "error" not in g}
        assert entry["label"]["generator"] == max(scores, key=scores.get)
        assert (out / "Label" / f"{name}.png").read_bytes() == \
            (out / "candidates" / name / f"{entry['label']['generator']}.png").read_bytes()
    # A generator that fails again is retried each run and reported, nothing else is redone.
    assert build_dataset(src, out, options(middle_frame, mean_fusion, broken)).generator_failures


def test_limit_builds_the_first_scenes(tmp_path):
    src = tmp_path / "seq"
    for name in ("1", "2", "10"):
        write_bracket(src / name)
    result = build_dataset(src, tmp_path / "ds", options(mean_fusion), limit=2)
    assert result.built == ["1", "2"]


def test_votes_reselect_labels_ties_broken_by_score(tmp_path):
    src, out = tmp_path / "seq", tmp_path / "ds"
    for name in ("a", "b", "c", "d"):
        write_bracket(src / name, seed=len(name))
    build_dataset(src, out, options())
    entries = read_scene_entries(out)
    by_score = entries["a"]["label"]["generator"]
    other = ({"mean_fusion", "middle_frame"} - {by_score}).pop()

    changed = reselect_by_votes(out, entries, {"a": [other], "b": ["middle_frame", "mean_fusion"], "c": []})

    assert changed == ["a"]
    entries = read_scene_entries(out)
    assert entries["a"]["label"]["generator"] == other and entries["a"]["label"]["selected_by"] == "votes"
    assert (out / "Label" / "a.png").read_bytes() == (out / "candidates" / "a" / f"{other}.png").read_bytes()
    assert "tie" in entries["b"]["label"]["reason"] and entries["b"]["label"]["generator"] == by_score
    assert entries["c"]["label"]["selected_by"] == "mef-ssim" and "no candidate acceptable" in entries["c"]["label"]["reason"]
    assert "no votes" in entries["d"]["label"]["reason"]


def test_select_votes_reads_the_screening_database(tmp_path):
    store = pytest.importorskip("sice.screening.store")
    src, out = tmp_path / "seq", tmp_path / "ds"
    write_bracket(src / "1")
    build_dataset(src, out, options())
    loser = ({"mean_fusion", "middle_frame"} - {read_scene_entries(out)["1"]["label"]["generator"]}).pop()
    store.VoteStore(out / "screening.sqlite").record("ann", "1", loser)

    result = build_dataset(src, out, options(), select="votes")

    assert result.resumed == ["1"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenes"]["1"]["label"]["generator"] == loser


def test_find_scenes_single_folder_and_errors(tmp_path):
    write_bracket(tmp_path / "only")
    scenes, problems = find_scenes(tmp_path / "only")
    assert [s.name for s in scenes] == ["only"] and len(scenes[0].frames) == 3 and not problems
    from sice.errors import DatasetError

    with pytest.raises(DatasetError, match="no such folder"):
        find_scenes(tmp_path / "missing")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match="no scene folders"):
        find_scenes(tmp_path / "nothing")


def test_bad_arguments(tmp_path):
    write_bracket(tmp_path / "seq" / "1")
    with pytest.raises(ValueError, match="select"):
        build_dataset(tmp_path / "seq", tmp_path / "ds", options(), select="best")
    with pytest.raises(ValueError, match="workers"):
        build_dataset(tmp_path / "seq", tmp_path / "ds", options(), workers=0)
    with pytest.raises(ValueError, match="generators"):
        build_dataset(tmp_path / "seq", tmp_path / "ds", BuildOptions(generators=()))


def test_cli_builds_with_real_generators_and_reports_bad_scenes(tmp_path):
    from click.testing import CliRunner

    from sice.cli.main import cli

    src = tmp_path / "seq"
    write_bracket(src / "1")
    (src / "empty").mkdir()
    out = tmp_path / "ds"
    args = ["build-dataset", str(src), "-o", str(out), "--generators", "mertens,gff", "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1  # the empty scene failed
    assert "sice: failed:" in result.output and "empty: no image files" in result.output
    assert "1 scenes done, 1 failed" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    label = manifest["scenes"]["1"]["label"]
    scores = {n: g["mef_ssim"] for n, g in manifest["scenes"]["1"]["generators"].items()}
    assert set(scores) == {"mertens", "gff"} and label["generator"] == max(scores, key=scores.get)
    assert 0 < label["mef_ssim"] <= 1

    again = CliRunner().invoke(cli, args)
    assert "0 scenes built, 0 given new candidates, 1 already done" in again.output

    unknown = CliRunner().invoke(cli, ["build-dataset", str(src), "-o", str(out), "--generators", "nope"])
    assert unknown.exit_code == 2 and "unknown generator" in unknown.output


def test_bench_table_from_entries():
    from sice.cli.build_dataset import format_bench

    entry = {"megapixels": 0.5, "frames": [{}, {}, {}],
             "generators": {"a": {"seconds": 1.0, "score_seconds": 0.5}, "b": {"seconds": 0.2, "error": "x"}}}
    table = format_bench([entry, entry], wall=4.0, total_scenes=10, workers=2)
    lines = table.splitlines()
    assert lines[0].startswith("2 scenes, 6 frames, 1.00 output megapixels")
    row_a = next(line for line in lines if line.startswith("a "))
    assert row_a.split()[1:] == ["1.000", "2.00", "1.00", "2/2"]  # 2 s over 1 MP; 1 s scoring / MP
    assert next(line for line in lines if line.startswith("b ")).split()[-1] == "0/2"
    assert "projected wall time for all 10 scenes: 0.3 min (2.00 s/scene wall)" in table


@pytest.mark.realdata
def test_real_sice_sequences(shared_data, tmp_path):
    """Two real SICE sequences with two real generators and real MEF-SSIM: frames copied byte for
    byte in dark-to-bright order, exposures increasing, small shifts, best-scoring label."""
    from sice.dataset.build import resolve_generators

    src = tmp_path / "seq"
    src.mkdir()
    for name in ("001", "003"):
        (src / name).symlink_to(shared_data / "sice512" / name)
    generators, _ = resolve_generators(["mertens", "gff"])
    result = build_dataset(src, tmp_path / "ds", BuildOptions(generators=generators))
    assert result.built == ["001", "003"] and not result.failed
    for name, entry in read_scene_entries(tmp_path / "ds").items():
        originals = sorted((shared_data / "sice512" / name).glob("*.jpg"), key=lambda p: int(p.stem))
        assert [f["source"] for f in entry["frames"]] == [p.name for p in originals]
        assert (tmp_path / "ds" / name / "3.jpg").read_bytes() == originals[2].read_bytes()
        evs = [f["exposure_ev"] for f in entry["frames"]]
        assert evs[0] == 0 and evs[-1] > 3 and np.all(np.diff(evs) > -0.1)
        assert entry["alignment"]["max_shift"] < 3 and entry["flags"] == []
        scores = {n: g["mef_ssim"] for n, g in entry["generators"].items()}
        assert entry["label"]["generator"] == max(scores, key=scores.get) and min(scores.values()) > 0.85
