"""Tests of sice.dataset.layout: layouts (authors' release and ours), splits, exposure selection."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sice.dataset.layout import (
    OFFICIAL_TEST_IDS,
    Scene,
    brightness,
    classify_exposure,
    read_sice_layout,
    select_frames,
    split_scenes,
)
from sice.errors import DatasetError
from sice.io import read_rgb, write_image

from support.helpers import synthetic_scene

# Exposure multipliers of the synthetic frames; the label is the scene at gain 1.
GAINS = [0.25, 0.4, 0.6, 0.8, 0.95, 1.0, 1.05, 1.2, 1.4, 1.6, 1.8, 2.0]


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.clip(rgb, 0, 1))
    return path


def make_scene(folder: Path, label: Path | None, gains=GAINS, ext=".JPG", seed=0, size=(16, 20)):
    base = synthetic_scene(*size, seed=seed) * 0.5
    for k, g in enumerate(gains, start=1):
        _write(folder / f"{k}{ext}", base * g)
    if label is not None:
        _write(label, base)


@pytest.fixture
def authors_layout(tmp_path: Path) -> Path:
    """The authors' release, in miniature: Part1 (JPG labels), Part2 (PNG labels past 125)."""
    p1 = tmp_path / "Dataset_Part1"
    for n in (1, 2, 10):
        make_scene(p1 / str(n), p1 / "Label" / f"{n}.JPG", seed=n)
    make_scene(p1 / "3", None, gains=[0.5, 1.5])            # label missing
    (p1 / "4").mkdir()                                        # empty scene folder
    p2 = tmp_path / "Dataset_Part2"
    make_scene(p2 / "125", p2 / "Label" / "125.JPG", gains=[0.5, 1.0, 2.0])
    make_scene(p2 / "126", p2 / "Label" / "126.PNG", gains=[0.5, 1.0, 2.0])
    return tmp_path


def test_authors_layout_frames_sorted_numerically_and_labels_found(authors_layout):
    scenes = read_sice_layout(authors_layout)
    keys = [s.key for s in scenes]
    assert keys == ["Part1/1", "Part1/2", "Part1/3", "Part1/10", "Part2/125", "Part2/126"]
    s1 = scenes[0]
    # 12 frames: as strings "10.JPG" < "2.JPG"; numerically 1, 2, ..., 12.
    assert [p.name for p in s1.frames] == [f"{k}.JPG" for k in range(1, 13)]
    assert sorted(p.name for p in s1.frames) != [p.name for p in s1.frames]
    assert s1.label == authors_layout / "Dataset_Part1" / "Label" / "1.JPG"
    assert scenes[-1].label.name == "126.PNG" and scenes[-2].label.name == "125.JPG"
    by_key = {s.key: s for s in scenes}
    assert by_key["Part1/3"].label is None
    problems = dict(scenes.problems)
    assert "no label" in problems["Part1/3"]
    assert "no numbered frames" in problems["Part1/4"]
    assert "Part1/4" not in by_key


def test_single_part_folder_and_parent_agree(authors_layout):
    part1 = read_sice_layout(authors_layout / "Dataset_Part1")
    both = read_sice_layout(authors_layout)
    assert [s.key for s in part1] == [s.key for s in both if s.part == "Part1"]
    assert all(s.part == "Part1" for s in part1)


def test_our_builder_layout_ignores_candidates_and_manifest(tmp_path):
    make_scene(tmp_path / "001", tmp_path / "Label" / "001.png", ext=".png")
    make_scene(tmp_path / "007", tmp_path / "Label" / "7.jpg", gains=[0.5, 2.0])  # un-padded label name
    make_scene(tmp_path / "candidates" / "001", None, gains=[1.0])
    (tmp_path / "manifest.json").write_text(json.dumps({"scenes": ["001", "007"]}))
    scenes = read_sice_layout(tmp_path)
    assert [(s.name, s.part) for s in scenes] == [("001", ""), ("007", "")]
    assert scenes[1].label.name == "7.jpg"
    assert scenes.problems == []


def test_unnumbered_frames_reported_and_missing_root_raises(tmp_path):
    make_scene(tmp_path / "a", tmp_path / "Label" / "a.jpg", gains=[0.5, 1.0])
    _write(tmp_path / "a" / "preview.jpg", np.zeros((4, 4, 3), np.float32))
    scenes = read_sice_layout(tmp_path)
    assert len(scenes[0].frames) == 2
    assert "preview.jpg" in dict(scenes.problems)["a"]
    with pytest.raises(DatasetError, match="no such dataset folder"):
        read_sice_layout(tmp_path / "nope")
    empty = tmp_path / "empty"
    (empty / "x").mkdir(parents=True)
    with pytest.raises(DatasetError, match=str(empty)):
        read_sice_layout(empty)


def _fake_scenes(n, part=""):
    return [Scene(name=str(i), frames=[Path(f"{i}/1.jpg")], label=None, part=part) for i in range(1, n + 1)]


def test_split_is_disjoint_complete_seeded_and_order_independent():
    scenes = _fake_scenes(50)
    a = split_scenes(scenes, seed=3)
    assert [len(a[k]) for k in ("train", "val", "test")] == [35, 5, 10]
    keys = [s.key for k in a for s in a[k]]
    assert sorted(keys) == sorted(s.key for s in scenes) and len(set(keys)) == 50
    b = split_scenes(list(reversed(scenes)), seed=3)
    assert {k: [s.key for s in v] for k, v in a.items()} == {k: [s.key for s in v] for k, v in b.items()}
    c = split_scenes(scenes, seed=4)
    assert [s.key for s in c["test"]] != [s.key for s in a["test"]]
    with pytest.raises(ValueError, match="ratios"):
        split_scenes(scenes, ratios=(1, -1, 0))


def test_official_test_uses_the_58_part1_sequences():
    scenes = _fake_scenes(120, "Part1") + _fake_scenes(30, "Part2")
    s = split_scenes(scenes, official_test=True, seed=0)
    test_keys = {t.key for t in s["test"]}
    assert test_keys == {f"Part1/{i}" for i in OFFICIAL_TEST_IDS}
    # Hand-checked edges of the published list "4-23, 28, 31, 33-34, 37-39, 46-52, 55-69, 75-79, 100-103".
    assert {4, 23, 28, 31, 33, 34, 37, 39, 46, 52, 55, 69, 75, 79, 100, 103} <= OFFICIAL_TEST_IDS
    assert not {3, 24, 29, 32, 35, 40, 53, 70, 80, 104} & OFFICIAL_TEST_IDS
    rest = len(scenes) - 58
    assert len(s["train"]) == round(rest * 0.7 / 0.8) and len(s["val"]) == rest - len(s["train"])
    # Part2 ids 4..23 are not the paper's test sequences.
    assert not any(t.part == "Part2" for t in s["test"])


def test_classify_exposure_thresholds():
    assert classify_exposure(0.89) == "under"
    assert classify_exposure(0.9) == "well" and classify_exposure(1.1) == "well"
    assert classify_exposure(1.11) == "over"
    assert classify_exposure(0.7, under_max=0.6) == "well"
    with pytest.raises(ValueError, match="under_max"):
        classify_exposure(1.0, under_max=1.2)


def test_select_frames_by_brightness_against_label(tmp_path):
    make_scene(tmp_path / "s", tmp_path / "Label" / "s.png", ext=".png")
    scene = read_sice_layout(tmp_path)[0]
    under = select_frames(scene, "under")
    over = select_frames(scene, "over")
    both = select_frames(scene, "both")
    # Ratios follow the gains (8-bit rounding and clipping aside): < 0.9 under, > 1.1 over.
    assert [c.path.name for c in under] == ["1.png", "2.png", "3.png", "4.png"]
    assert [c.path.name for c in over] == ["8.png", "9.png", "10.png", "11.png", "12.png"]
    assert [c.path for c in both] == [c.path for c in under + over]
    label_mean = brightness(read_rgb(scene.label))
    for c in both:
        assert c.brightness_ratio == pytest.approx(brightness(read_rgb(c.path)) / label_mean, rel=1e-6)
    assert under[0].brightness_ratio == pytest.approx(0.25, abs=0.02)
    with pytest.raises(DatasetError, match="no label"):
        select_frames(Scene("x", [tmp_path / "s" / "1.png"], None), "under")
    with pytest.raises(ValueError, match="direction"):
        select_frames(scene, "sideways")


@pytest.mark.realdata
def test_real_data_in_the_authors_exact_layout(shared_data, tmp_path):
    """Real SICE frames copied into Dataset_Part1/<n>/<k>.JPG + Label/<n>.JPG and Dataset_Part2
    with PNG labels for sequences > 125, as the authors distribute them."""
    src = shared_data / "sice512"
    # 013 has 19 frames (string order differs); the label stands in
    # for a fused reference: the middle frame of the sequence.
    layout = {"Dataset_Part1": ["004", "013", "019"], "Dataset_Part2": ["042", "130"]}
    for part, names in layout.items():
        for name in names:
            if not (src / name).is_dir():
                pytest.skip(f"{src / name} missing from the real data")
            n = str(int(name))
            frames = sorted((src / name).glob("*.jpg"), key=lambda p: int(p.stem))
            for f in frames:
                (tmp_path / part / n).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, tmp_path / part / n / f"{f.stem}.JPG")
            mid = frames[len(frames) // 2]
            label_dir = tmp_path / part / "Label"
            label_dir.mkdir(exist_ok=True)
            if part == "Dataset_Part2" and int(n) > 125:
                write_image(label_dir / f"{n}.PNG", read_rgb(mid))
            else:
                shutil.copyfile(mid, label_dir / f"{n}.JPG")
    scenes = read_sice_layout(tmp_path)
    assert [s.key for s in scenes] == ["Part1/4", "Part1/13", "Part1/19", "Part2/42", "Part2/130"]
    assert scenes.problems == []
    s13 = scenes[1]
    assert len(s13.frames) == 19 and [int(p.stem) for p in s13.frames] == list(range(1, 20))
    # Real sequences go dark -> bright: brightness grows with the frame number.
    means = [brightness(read_rgb(p)) for p in s13.frames]
    assert np.corrcoef(np.arange(19), means)[0, 1] > 0.9
    for s in scenes:
        under, over = select_frames(s, "under"), select_frames(s, "over")
        mid_index = len(s.frames) // 2
        assert all(int(c.path.stem) <= mid_index for c in under) and under
        assert all(int(c.path.stem) > mid_index + 1 for c in over) and over
        assert all(c.brightness_ratio < 0.9 for c in under) and all(c.brightness_ratio > 1.1 for c in over)
    assert scenes[-1].label.suffix == ".PNG"
    split = split_scenes(scenes, official_test=True)
    # 4, 13 and 19 are in the published list (4-23); Part2 sequences never are.
    assert [s.key for s in split["test"]] == ["Part1/4", "Part1/13", "Part1/19"]
    assert sorted(s.key for s in split["train"] + split["val"]) == ["Part2/130", "Part2/42"]
