"""Protocols on both layouts, the cached runner, bad input, reports and the CLI."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from support.helpers import labelled_dataset, synthetic_scene
from sice.dataset.layout import read_sice_layout
from sice.evaluation import baselines, evaluate, items_for, write_report
from sice.evaluation.metrics import psnr
from sice.evaluation.protocols import middle_index, oriented
from sice.io import read_rgb, write_image


# ------------------------------------------------------------------------------- protocols

def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # the reader lists folders only; protocols never decode


@pytest.fixture
def authors_layout(tmp_path) -> Path:
    """Authors' release shape: Part1 seqs 1 (not a test id), 4 (7 frames) and 5 (9 frames);
    Part2 seqs 1 (7 frames, JPG label) and 126 (5 frames, PNG label as in the release)."""
    root = tmp_path / "SICE"
    for part, seq, n, ext in [("Dataset_Part1", 1, 7, "JPG"), ("Dataset_Part1", 4, 7, "JPG"),
                              ("Dataset_Part1", 5, 9, "JPG"), ("Dataset_Part2", 1, 7, "JPG"),
                              ("Dataset_Part2", 126, 5, "PNG")]:
        for k in range(1, n + 1):
            _touch(root / part / str(seq) / f"{k}.JPG")
        _touch(root / part / "Label" / f"{seq}.{ext}")
    return root


def _picked(items):
    return [(i.scene, i.index, i.level) for i in items]


def test_middle_index_rule():
    assert [middle_index(n) for n in (1, 2, 3, 7, 8, 9)] == [1, 1, 2, 4, 4, 5]
    assert oriented((1200, 900), 512, 600) == (900, 1200)
    assert oriented((1200, 900), 600, 512) == (1200, 900)


def test_sice58_takes_minus_and_plus_one_ev_of_the_published_test_ids(authors_layout):
    items = items_for("sice-58", read_sice_layout(authors_layout))
    # -1 EV = #3 of 7, #4 of 9; +1 EV = #5 of 7, #6 of 9 (DESIGN.md); seq 1 is not a test id.
    assert _picked(items) == [("Part1/4", 3, -1), ("Part1/4", 5, 1), ("Part1/5", 4, -1), ("Part1/5", 6, 1)]
    assert all(i.size is None and i.reference.name in ("4.JPG", "5.JPG") for i in items)


def test_zero_dce_part2_takes_the_darker_half_at_1200x900(authors_layout):
    items = items_for("zero-dce-part2", read_sice_layout(authors_layout))
    assert _picked(items) == [("Part2/1", 1, -3), ("Part2/1", 2, -2), ("Part2/1", 3, -1),
                              ("Part2/126", 1, -2), ("Part2/126", 2, -1)]
    assert {i.size for i in items} == {(1200, 900)}
    assert items[-1].reference.name == "126.PNG"


def test_levels_and_all(authors_layout):
    scenes = read_sice_layout(authors_layout)
    lv = items_for("levels", scenes)
    assert [i.level for i in lv if i.scene == "Part1/5"] == [-2, -1, 1, 2]
    assert [i.index for i in lv if i.scene == "Part2/126"] == [1, 2, 4, 5]
    assert len(items_for("all", scenes)) == 7 + 7 + 9 + 7 + 5
    with pytest.raises(ValueError, match="unknown protocol"):
        items_for("nope", scenes)


# --------------------------------------------------------------------------- the runner

_built_dataset = labelled_dataset  # (moved to support.helpers: tests/test_parallel.py uses it too)


def test_evaluate_scores_caches_and_reports(tmp_path):
    data = _built_dataset(tmp_path / "data")
    report = tmp_path / "report"
    res = evaluate(data, ["identity", "gamma"], protocol="levels", out_dir=report, progress=False)
    assert len(res.items) == 2 * 4 and res.computed == 16 and not res.problems
    # identity's PSNR is the PSNR of the file itself against its label (8-bit PNG round trip).
    r = next(r for r in res.records if r.method == "identity" and r.level == -1 and r.scene == "001")
    expected = psnr(read_rgb(data / "001" / "2.png"), read_rgb(data / "Label" / "001.png"))
    assert r.metrics["psnr"] == pytest.approx(expected, abs=1e-9)
    assert set(r.metrics) == {"psnr", "ssim", "fsim", "fsimc", "mae", "loe", "white-point", "black-point",
                              "clipped-luma", "black-luma", "colourfulness", "shadow-noise"}
    assert r.metrics["loe"] == 0  # identity keeps every order

    # One more method: only its 8 runs are computed, the rest comes from the cache unchanged.
    res2 = evaluate(data, ["identity", "gamma", "he"], protocol="levels", out_dir=report, progress=False)
    assert res2.computed == 8
    same = {(x.item_id, x.method): x.metrics for x in res.records}
    for x in res2.records:
        if x.method != "he":  # (NaN is "not applicable": equal to itself here)
            assert json.dumps(x.metrics) == json.dumps(same[(x.item_id, x.method)])

    paths = write_report(res2)
    md = paths["markdown"].read_text()
    assert "## PSNR" in md and "| gamma |" in md and "data range 1.0" in md and "level -2" in md
    rows = list(csv.DictReader(paths["csv"].open()))
    ident_all = next(x for x in rows if x["method"] == "identity" and x["level"] == "all" and x["metric"] == "psnr")
    mean = np.mean([x.metrics["psnr"] for x in res2.records if x.method == "identity"])
    assert float(ident_all["mean"]) == pytest.approx(mean) and ident_all["n"] == "8"
    js = json.loads(paths["json"].read_text())
    assert js["protocol"] == "levels" and len(js["records"]) == 24
    assert len(list(csv.DictReader(paths["per_image"].open()))) == 24
    assert sorted(p.name for p in paths["grids"].iterdir()) == ["001.png", "002.png"]
    grid = read_rgb(paths["grids"] / "001.png")
    assert grid.shape[0] > 4 * 160 and grid.shape[1] > 5 * 100  # 4 rows; input, 3 methods, reference
    assert paths["plot"].stat().st_size > 1000


def test_bad_input_is_reported_per_image_never_skipped(tmp_path, monkeypatch):
    data = _built_dataset(tmp_path / "data", scenes=("001", "002", "003"))
    (data / "Label" / "002.png").unlink()  # missing label
    write_image(data / "Label" / "003.png", synthetic_scene(30, 30))  # size mismatch
    (data / "001" / "1.png").write_bytes(b"not a png")  # unreadable input

    def flaky(img):
        if img.mean() > 0.5:
            raise RuntimeError("boom")
        return img

    monkeypatch.setitem(baselines.BASELINES, "flaky", flaky)
    res = evaluate(data, ["identity", "flaky"], protocol="levels", out_dir=tmp_path / "r", progress=False)
    assert len(res.records) == 3 * 4 * 2  # nothing dropped
    by = {(r.scene, r.index, r.method): r for r in res.records}
    assert by[("002", 1, "identity")].metrics["psnr"] == "no reference (missing label)"
    assert isinstance(by[("002", 1, "identity")].metrics["loe"], float)
    assert by[("003", 1, "identity")].metrics["ssim"].startswith("size mismatch: input 48x40, reference 30x30")
    unreadable = [r for r in res.records if r.scene == "001" and r.index == 1]
    assert len(unreadable) == 2 and all(r.status == "failed" and "cannot read input" in r.error for r in unreadable)
    failed = [r for r in res.records if r.status == "failed" and r not in unreadable]
    assert failed and all(r.method == "flaky" and "boom" in r.error for r in failed)
    reasons = " ".join(why for _, why in res.problems)
    assert "missing label" in reasons and "size mismatch" in reasons and "boom" in reasons
    md = write_report(res, grids=False)["markdown"].read_text()
    assert "boom" in md and "size mismatch" in md and "FAILED" not in md


def test_psnr_of_identical_output_is_reported_as_inf(tmp_path):
    data = _built_dataset(tmp_path / "data", scenes=("001",), n=3)
    write_image(data / "001" / "1.png", read_rgb(data / "Label" / "001.png"))  # PSNR = inf
    res = evaluate(data, ["identity"], protocol="all", out_dir=tmp_path / "r", progress=False)
    paths = write_report(res, grids=False)
    js = json.loads(paths["json"].read_text())
    assert js["summary"]["identity"]["-1"]["psnr"]["mean"] == "inf"
    assert math.isfinite(js["summary"]["identity"]["+1"]["psnr"]["mean"])
    assert "| identity | inf |" in paths["markdown"].read_text()


def test_cli_writes_the_report_and_exits_1_on_problems(tmp_path):
    from sice.cli.eval import command

    data = _built_dataset(tmp_path / "data")
    out = tmp_path / "rep"
    result = CliRunner().invoke(command, [str(data), "--methods", "identity,clahe", "-o", str(out),
                                          "--protocol", "sice-58", "--no-progress"])
    # no scene of this dataset is one of the 58 test ids: an empty, but valid, report
    assert result.exit_code == 0, result.output
    (data / "Label" / "001.png").unlink()
    result = CliRunner().invoke(command, [str(data), "-m", "identity", "-o", str(out), "--limit", "1",
                                          "--metrics", "psnr,loe", "--no-progress", "--no-grids"])
    assert result.exit_code == 1
    assert "missing label" in result.output
    assert (out / "results.md").is_file() and "## LOE" in (out / "results.md").read_text()
    result = CliRunner().invoke(command, [str(data), "-m", "identity", "-o", str(out), "--metrics", "psnr,nope"])
    assert result.exit_code == 2 and "unknown metric" in result.output


@pytest.mark.slow
def test_workers_give_the_same_scores_as_one_process(tmp_path):
    data = _built_dataset(tmp_path / "data")
    one = evaluate(data, ["he", "lime"], out_dir=tmp_path / "a", progress=False)
    two = evaluate(data, ["he", "lime"], out_dir=tmp_path / "b", workers=2, progress=False)
    assert [r.metrics for r in one.records] == [r.metrics for r in two.records]


@pytest.mark.realdata
def test_real_sequences_without_labels(shared_data, tmp_path):
    res = evaluate(shared_data / "sice512", ["identity", "clahe"], protocol="levels", out_dir=tmp_path,
                   limit=2, metrics=["psnr", "loe"], progress=False)
    assert len(res.items) >= 4
    assert all(r.status == "ok" and r.metrics["psnr"].startswith("no reference") for r in res.records)
    assert all(r.metrics["loe"] >= 0 for r in res.records)


def test_a_model_that_cannot_load_is_one_error_before_any_work(tmp_path):
    from sice.errors import ModelError

    data = _built_dataset(tmp_path / "data", scenes=("001",), n=3)
    with pytest.raises(ModelError, match="no-such-model"):
        evaluate(data, ["identity", "no-such-model"], out_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_a_registered_model_runs_through_the_enhancer(tmp_path):
    data = _built_dataset(tmp_path / "data", scenes=("001",), n=3, h=24, w=32)
    res = evaluate(data, ["sice2018-residual:untrained"], protocol="levels", out_dir=tmp_path / "r",
                   metrics=["psnr"], progress=False)
    assert [r.status for r in res.records] == ["ok", "ok"]
    assert all(isinstance(r.metrics["psnr"], float) for r in res.records)
    assert (tmp_path / "r" / res.records[0].output).is_file()


def test_bench_projects_to_209_sequences(tmp_path):
    from sice.evaluation.bench import bench_eval

    data = _built_dataset(tmp_path / "data", scenes=("001", "002"), n=3, h=24, w=32)
    out = bench_eval(data, methods=["identity", "he"], workers=1, progress=False)
    assert out["images"] == 4 and out["runs"] == 8 and out["failed"] == 0 and out["labelled"]
    assert out["projected_s"] == pytest.approx(out["seconds"] * 209 / 2)
    assert "projected to 209 sequences" in out["line"] and set(out["per_method_s"]) == {"identity", "he"}


def test_zero_dce_protocol_resizes_input_and_label_to_1200x900(tmp_path):
    import cv2

    data = _built_dataset(tmp_path / "data", scenes=("001",), n=4, h=30, w=40)
    res = evaluate(data, ["identity"], protocol="zero-dce-part2", out_dir=tmp_path / "r", metrics=["psnr"],
                   progress=False)
    assert [(r.index, r.level) for r in res.records] == [(1, -1), (2, 0)]  # frames 1..floor(4/2)

    def resized(p):
        return cv2.resize(read_rgb(p), (1200, 900), interpolation=cv2.INTER_AREA)

    out = read_rgb(tmp_path / "r" / res.records[0].output)
    assert out.shape == (900, 1200, 3)
    expected = psnr(np.round(resized(data / "001" / "1.png") * 255) / 255, resized(data / "Label" / "001.png"))
    assert res.records[0].metrics["psnr"] == pytest.approx(expected, abs=1e-4)


def test_mef_ssim_scores_outputs_against_the_whole_stack(tmp_path):
    pytest.importorskip("sice.dataset.scoring", reason="sice.dataset.scoring (MEF-SSIM) is not in this build yet")
    data = _built_dataset(tmp_path / "data", scenes=("001",), n=3, h=64, w=80)
    res = evaluate(data, ["identity", "gamma"], protocol="levels", out_dir=tmp_path / "r",
                   metrics=["mef-ssim"], progress=False)
    values = [r.metrics["mef-ssim"] for r in res.records]
    assert all(isinstance(v, float) and 0 < v <= 1 for v in values), values


def test_cache_signature_of_a_model_name_follows_its_shipped_weights(tmp_path, monkeypatch):
    # "default" and registry names mean the weights shipped in the package: re-shipping them
    # must invalidate cached outputs (it once served the previous weights' results).
    import os

    import sice.weights
    from sice.evaluation.runner import _signature

    monkeypatch.setattr(sice.weights, "FOLDER", tmp_path)
    shipped = tmp_path / f"{sice.weights.DEFAULT_MODEL}.pt"
    nothing_shipped = _signature("default")
    shipped.write_bytes(b"v1")
    first = _signature("default")
    assert first != nothing_shipped and first == _signature("default")
    shipped.write_bytes(b"v2 weights")
    os.utime(shipped, ns=(1, 1))
    assert _signature("default") != first


# --------------------------------------------------------------------------- no reference

def test_photos_protocol_scores_a_plain_folder_by_group_without_references(tmp_path):
    from sice.evaluation.protocols import photo_items

    photos = tmp_path / "photos"
    for sub in ("under", "over"):
        (photos / sub).mkdir(parents=True)
    dark = (synthetic_scene(40, 48) * 0.15).astype(np.float32)
    dark[:6] = 0.0  # a black band: black-luma applies
    bright = np.clip(synthetic_scene(40, 48, seed=2) * 1.6, 0, 0.9)
    bright[-8:] = 1.0  # a clipped band: clipped-luma applies
    write_image(photos / "under" / "a.png", dark)
    write_image(photos / "under" / "b_c.png", dark[::-1].copy())
    write_image(photos / "over" / "a.png", bright)
    write_image(photos / "loose.png", bright)  # straight in the folder: group "photos"
    items = photo_items(photos)
    assert [(i.scene, i.level) for i in items] == [("loose.png", "photos"), ("over/a.png", "over"),
                                                   ("under/a.png", "under"), ("under/b_c.png", "under")]
    assert len({i.id for i in items}) == 4 and all(i.reference is None for i in items)

    res = evaluate(photos, ["identity", "gamma"], protocol="photos", out_dir=tmp_path / "r", progress=False)
    # full-reference metrics are dropped: nothing to compare with, and no "missing label" noise
    assert not res.problems and "psnr" not in res.metrics and "white-point" in res.metrics
    by = {(r.scene, r.method): r for r in res.records}
    assert by[("under/a.png", "identity")].exposure == "under"
    assert by[("over/a.png", "identity")].exposure == "over"
    assert by[("loose.png", "identity")].exposure == "over"  # by its mean luma (> 0.5)
    ident = by[("under/a.png", "identity")].metrics
    assert ident["black-luma"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(ident["clipped-luma"])  # no clipped pixel in the input: not applicable
    assert by[("under/a.png", "gamma")].metrics["black-luma"] == pytest.approx(0.0, abs=0.6)
    assert by[("over/a.png", "identity")].metrics["clipped-luma"] == pytest.approx(255.0, abs=1e-3)

    paths = write_report(res)
    md = paths["markdown"].read_text()
    assert "## Photographic tone" in md
    assert "| method | over | photos | under | all | n | n/a | failed |" in md
    js = json.loads(paths["json"].read_text())
    assert js["summary"]["identity"]["under"]["clipped-luma"]["na"] == 2
    assert js["summary"]["identity"]["under"]["clipped-luma"]["failed"] == 0
    assert sorted(p.name for p in paths["grids"].iterdir()) == ["over_01.png", "photos_01.png", "under_01.png"]
    assert "plot" not in paths  # PSNR needs references


def test_cli_picks_the_protocol_from_the_folder(tmp_path):
    from sice.cli.eval import command

    photos = tmp_path / "photos"
    photos.mkdir()
    write_image(photos / "x.png", synthetic_scene(32, 32) * 0.2)
    out = tmp_path / "rep"
    result = CliRunner().invoke(command, [str(photos), "-m", "identity", "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "protocol photos" in result.output and "`photos`" in (out / "results.md").read_text()
    data = _built_dataset(tmp_path / "data", scenes=("001",))
    result = CliRunner().invoke(command, [str(data), "-m", "identity", "-o", str(tmp_path / "r2"),
                                          "--metrics", "psnr", "--no-progress", "--no-grids"])
    assert result.exit_code == 0 and "protocol levels" in result.output
    result = CliRunner().invoke(command, [str(photos), "-m", "identity", "-o", str(out), "-p", "photos",
                                          "--metrics", "psnr"])
    assert result.exit_code != 0 and "no references" in result.output


def test_tone_summary_marks_missed_targets():
    from sice.evaluation.report import tone_summary
    from sice.evaluation.runner import Record

    recs = [Record("s", 1, 1, 1, "f", "m", "ok", exposure="over",
                   metrics={"clipped-luma": 200.0, "white-point": 250.0}),
            Record("s", 2, 1, 1, "f", "m", "ok", exposure="over",
                   metrics={"clipped-luma": float("nan"), "white-point": 240.0}),
            Record("s", 3, 1, -1, "f", "m", "ok", exposure="under", metrics={"clipped-luma": 255.0})]
    t = tone_summary(recs, ["clipped-luma", "white-point"])["m"]
    assert t[("clipped-luma", "over")] == {"mean": 200.0, "n": 1, "na": 1}
    assert t[("white-point", "over")]["mean"] == pytest.approx(245.0)
    assert ("black-luma", "under") not in t
