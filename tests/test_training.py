"""Tests of sice.training and ``sice train`` on tiny synthetic datasets (8-px-wide models, 32x32 images)."""
from __future__ import annotations

import csv
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sice.dataset.layout import read_sice_layout
from sice.errors import DatasetError, ModelError, SiceError
from sice.io import write_image
from sice.models import create_model, load_checkpoint, save_checkpoint
from sice.training import load_config, train
from sice.training.config import TrainConfig, dumps_toml
from sice.training.data import Pair, PairDataset, _to_cache, load_pairs
from sice.training.schedule import lr_factor

from support.helpers import TINY, TRAINING_GAINS, make_training_dataset, synthetic_scene

@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_training_dataset(tmp_path_factory.mktemp("sice_tiny"))


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: no oversubscription, deterministic reductions
    yield
    torch.set_num_threads(n)


# --- config -------------------------------------------------------------------------------------
def test_config_file_overrides_and_round_trip(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[optim]\nname = "adamw"\nlr = 3e-4\n[loss]\nl2 = 1.0\nssim = 0.1\n[data]\npatch_size = 64\n')
    cfg = load_config(f, ["optim.lr=1e-3", "data.direction=over", "model.kwargs.width=16", "loss.l1=0.5",
                          "run.steps=7"])
    assert (cfg.optim.name, cfg.optim.lr, cfg.data.patch_size, cfg.data.direction) == ("adamw", 1e-3, 64, "over")
    assert cfg.loss == {"l2": 1.0, "ssim": 0.1, "l1": 0.5} and cfg.model.kwargs == {"width": 16}
    assert cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 1e-4  # the paper's SGD settings by default
    back = TrainConfig.from_dict(tomllib.loads(dumps_toml(cfg.to_dict())))
    assert back == cfg
    with pytest.raises(ValueError, match="unknown key optim.lrate"):
        load_config(None, ["optim.lrate=1"])
    with pytest.raises(ValueError, match="data.patch_size must be int"):
        load_config(None, ['data.patch_size="big"'])
    with pytest.raises(ValueError, match="data.mode"):
        load_config(None, ["data.mode=tiles"])
    with pytest.raises(ValueError, match=str(f)):
        f.write_text("[optim]\nlr = -1\n")
        load_config(f)


def test_shipped_configs_load():
    configs = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.toml"))
    assert configs
    for c in configs:
        load_config(c)


def test_lr_schedule_values():
    kw = dict(total=100, warmup_steps=0, min_lr_ratio=0.0, step_every=30, gamma=0.1)
    assert lr_factor(0, name="cosine", **kw) == 1.0
    assert lr_factor(50, name="cosine", **kw) == pytest.approx(0.5)
    assert lr_factor(100, name="cosine", **kw) == pytest.approx(0.0)
    assert lr_factor(59, name="step", **kw) == pytest.approx(0.1) and lr_factor(60, name="step", **kw) == pytest.approx(0.01)
    assert lr_factor(4, name="constant", **{**kw, "warmup_steps": 10}) == pytest.approx(0.5)


# --- data ---------------------------------------------------------------------------------------
def _pair(h=20, w=20, aux=True):
    rng = np.random.default_rng(0)
    rgb = rng.random((h, w, 3)).astype(np.float32) * 0.5
    a = np.stack([rgb.mean(-1), rgb[..., 0] - rgb.mean(-1)], -1).astype(np.float32) if aux else None
    return Pair("s", Path("s/1.png"), "under", 0.5, _to_cache(rgb), _to_cache(2 * rgb), a)


def test_patches_are_reproducible_and_augment_rgb_label_aux_alike():
    ds = PairDataset([_pair()], patch_size=8, patches_per_image=4, seed=5)
    b1, b2 = ds.batch([0, 1, 2, 3], epoch=3), ds.batch([0, 1, 2, 3], epoch=3)
    assert all(np.array_equal(b1[k], b2[k]) for k in ("rgb", "label", "aux"))
    assert not np.array_equal(b1["rgb"], ds.batch([0, 1, 2, 3], epoch=4)["rgb"])
    assert b1["rgb"].shape == (4, 3, 8, 8) and b1["aux"].shape == (4, 2, 8, 8)
    # Same crop, rotation and flip for input, label and aux: label = 2 * rgb, aux = (mean, r - mean).
    np.testing.assert_allclose(b1["label"], 2 * b1["rgb"], atol=1e-4)
    np.testing.assert_allclose(b1["aux"][:, 0], b1["rgb"].mean(1), atol=1e-4)
    np.testing.assert_allclose(b1["aux"][:, 1], b1["rgb"][:, 0] - b1["rgb"].mean(1), atol=1e-4)
    # Without augmentation a patch is a plain crop of the source at the drawn place.
    plain = PairDataset([_pair()], patch_size=8, augment=False, seed=5).batch([0], epoch=0)["rgb"][0]
    src = _pair().rgb.astype(np.float32) / 65535
    hits = [(y, x) for y in range(13) for x in range(13)
            if np.allclose(src[y:y + 8, x:x + 8].transpose(2, 0, 1), plain, atol=1e-6)]
    assert len(hits) == 1


def test_colour_augment_permutes_frame_and_label_alike():
    ds = PairDataset([_pair(aux=False)], patch_size=8, patches_per_image=12, augment=False,
                     colour_augment=True, seed=1)
    b = ds.batch(list(range(12)), epoch=0)
    np.testing.assert_allclose(b["label"], 2 * b["rgb"], atol=1e-4)  # label = 2 * frame, still
    plain = PairDataset([_pair(aux=False)], patch_size=8, patches_per_image=12, augment=False,
                        seed=1).batch(list(range(12)), epoch=0)["rgb"]
    perms = set()
    for got, ref in zip(b["rgb"], plain):  # each sample is its plain crop, channels permuted
        perm = tuple(next(j for j in range(3) if np.array_equal(got[c], ref[j])) for c in range(3))
        assert sorted(perm) == [0, 1, 2]
        perms.add(perm)
    assert len(perms) > 1


def test_exposure_jitter_re_exposes_the_frame_in_linear_light_only():
    from sice.imageops import srgb_to_linear
    kw = dict(patch_size=8, patches_per_image=8, augment=False, seed=2)
    plain = PairDataset([_pair(aux=False)], **kw).batch(list(range(8)), epoch=0)
    jit = PairDataset([_pair(aux=False)], exposure_jitter=0.5, **kw).batch(list(range(8)), epoch=0)
    np.testing.assert_array_equal(jit["label"], plain["label"])
    ratios = []
    for got, ref in zip(jit["rgb"], plain["rgb"]):
        lin_got, lin_ref = srgb_to_linear(got), srgb_to_linear(ref)
        ok = lin_ref > 0.01  # frames are < 0.5: never clipped by +0.5 stop
        r = lin_got[ok] / lin_ref[ok]
        np.testing.assert_allclose(r, r.mean(), rtol=1e-3)  # one factor per sample
        ratios.append(float(np.log2(r.mean())))
    assert all(abs(u) <= 0.5 + 1e-3 for u in ratios) and max(ratios) - min(ratios) > 0.1
    with pytest.raises(ValueError, match="aux"):
        PairDataset([_pair(aux=True)], exposure_jitter=0.5)


def test_full_mode_crops_a_batch_to_common_size_and_multiple():
    p1, p2 = _pair(20, 24), _pair(18, 30)
    ds = PairDataset([p1, p2], mode="full", size_multiple=4, seed=0)
    # Common size 18x24 rounded down to multiples of 4; non-square, so only 180-degree turns
    # (a 90-degree one would change the shape inside the batch).
    for epoch in range(4):
        assert ds.batch([0, 1], epoch=epoch)["rgb"].shape == (2, 3, 16, 24)


def test_resize_for_training_area_down_bicubic_up_clipped():
    from sice.training.data import resize_for_training

    rng = np.random.default_rng(3)
    img = rng.random((8, 12, 3)).astype(np.float32)
    assert resize_for_training(img) is img
    half = resize_for_training(img, scale=0.5)  # area averaging: the mean of each 2x2 block
    np.testing.assert_allclose(half, img.reshape(4, 2, 6, 2, 3).mean(axis=(1, 3)), atol=1e-6)
    np.testing.assert_allclose(resize_for_training(img, long_side=6), half, atol=0)
    assert resize_for_training(img, scale=1.0, max_side=6).shape == (4, 6, 3)  # capped on the long side
    step = np.zeros((8, 8, 3), np.float32)
    step[:, 4:] = 1.0  # a hard edge: bicubic overshoots it on both sides, the result is clipped
    up = resize_for_training(step, scale=2.5)
    assert up.shape == (20, 20, 3) and up.min() == 0.0 and up.max() == 1.0
    assert 0 < up[0, 9, 0] < 1  # interpolated across the edge, not nearest


def test_bad_scenes_are_reported_and_left_out(tmp_path):
    root = make_training_dataset(tmp_path / "d", n=4)
    (root / "Label" / "002.png").unlink()                                # missing label
    (root / "003" / "1.png").write_bytes(b"not a png at all")            # corrupt frame
    write_image(root / "004" / "2.png", np.zeros((20, 32, 3), np.float32))  # mismatched size
    problems = []
    scenes = read_sice_layout(root)
    pairs = load_pairs(scenes, direction="under", under_max=0.9, over_min=1.1, problems=problems)
    by_scene = {}
    for key, why in problems:
        by_scene.setdefault(key, []).append(why)
    assert set(by_scene) == {"002", "003", "004"}
    assert any("no label" in w for w in by_scene["002"])
    assert any("3/1.png" in w or "003/1.png" in w for w in by_scene["003"])
    assert any("differs from the label" in w for w in by_scene["004"])
    # Frames 1-3 (gains 0.3, 0.5, 0.7) are under-exposed; the bad ones are dropped, scenes kept.
    frames = sorted((p.scene, p.frame.name) for p in pairs)
    assert frames == [("001", "1.png"), ("001", "2.png"), ("001", "3.png"), ("003", "2.png"), ("003", "3.png"),
                      ("004", "1.png"), ("004", "3.png")]
    assert all(p.ratio == pytest.approx(g, abs=0.03) for p in pairs
               for g in [TRAINING_GAINS[int(p.frame.stem) - 1]])


def test_nothing_usable_is_a_clear_error(tmp_path):
    root = make_training_dataset(tmp_path / "d", n=2)
    for p in (root / "Label").iterdir():
        p.unlink()
    cfg = load_config(None, TINY + ["run.steps=2"])
    with pytest.raises(DatasetError, match="no usable training pair"):
        train(root, tmp_path / "run", cfg, progress=False)


# --- metrics ------------------------------------------------------------------------------------
def test_validation_scores_are_those_of_sice_eval():
    """Validation reports PSNR and SSIM as ``sice eval`` does (scikit-image's SSIM settings),
    not OpenCV's SSIM, which differed by up to 0.02."""
    from skimage.metrics import structural_similarity

    from sice.training.validation import input_scores, validate

    torch.manual_seed(0)
    model = create_model("sice2018-residual", width=8)
    pairs = [_pair(24, 20, aux=False), _pair(16, 28, aux=False)]
    scores = validate(model, pairs, torch.device("cpu"))
    psnrs, ssims = [], []
    for p in pairs:
        rgb, label = p.rgb.astype(np.float32) / 65535, p.label.astype(np.float32) / 65535
        with torch.no_grad():
            out = model(torch.from_numpy(rgb).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        psnrs.append(10 * math.log10(1 / np.mean((out.astype(np.float64) - label) ** 2)))
        ssims.append(structural_similarity(out.astype(np.float64), label.astype(np.float64), channel_axis=2,
                                           data_range=1.0, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False))
    assert scores["images"] == 2
    assert scores["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-6)
    assert scores["ssim"] == pytest.approx(np.mean(ssims), abs=1e-6)
    ident = input_scores(pairs[:1])  # the input itself against its label (2 x input)
    rgb, label = pairs[0].rgb.astype(np.float64) / 65535, pairs[0].label.astype(np.float64) / 65535
    assert ident["ssim"] == pytest.approx(structural_similarity(
        rgb, label, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=1e-6)


# --- runs ---------------------------------------------------------------------------------------
def test_run_learns_writes_logs_and_loads_as_model(dataset, tmp_path):
    run = tmp_path / "run"
    cfg = load_config(None, TINY + ["run.steps=40", "run.log_every=4", "run.val_every=20"])
    r = train(dataset, run, cfg, progress=False)
    assert r.step == 40
    for name in ("config.toml", "last.pt", "best.pt", "train_log.csv", "val_log.csv", "curves.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "train_log.csv")))
    losses = [float(x["loss"]) for x in rows]
    assert [int(x["step"]) for x in rows] == list(range(4, 41, 4))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    vals = list(csv.DictReader(open(run / "val_log.csv")))
    assert [int(v["step"]) for v in vals] == [0, 20, 40]  # step 0: the fresh model
    assert float(vals[-1]["psnr"]) > float(vals[0]["psnr"])
    model = load_checkpoint(run / "last.pt")  # what `sice enhance --model RUN/last.pt` does
    assert model.sice_config.name == "sice2018-residual"
    for k, v in model.state_dict().items():
        assert torch.equal(v, r.model.state_dict()[k].cpu())
    assert load_config(run / "config.toml") == cfg
    with pytest.raises(SiceError, match="holds a run already"):
        train(dataset, run, cfg, progress=False)


def test_resume_equals_uninterrupted_run(dataset, tmp_path):
    # Model 2 (with luminance/detail aux) at width 8: exercises the aux cache too.
    ov = [o for o in TINY if not o.startswith("model.name")] + ['model.name="sice2018"', "run.steps=10",
                                                                "optim.name=\"sgd\"", "optim.lr=1e-3"]
    full = train(dataset, tmp_path / "a", load_config(None, ov), progress=False)
    part = train(dataset, tmp_path / "b", load_config(None, ov), progress=False, stop_after=6)
    assert part.step == 6
    resumed = train(dataset, tmp_path / "b", load_config(tmp_path / "b" / "config.toml"), progress=False,
                    resume=True)
    assert resumed.step == 10
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=1e-6)
    log_a = open(tmp_path / "a" / "train_log.csv").read().splitlines()
    log_b = open(tmp_path / "b" / "train_log.csv").read().splitlines()
    loss_col = lambda lines: [line.split(",")[3] for line in lines]  # noqa: E731
    assert loss_col(log_a) == loss_col(log_b)


def test_resume_refuses_missing_or_corrupt_checkpoint(dataset, tmp_path):
    cfg = load_config(None, TINY + ["run.steps=2"])
    with pytest.raises(ModelError, match="no checkpoint to resume from"):
        train(dataset, tmp_path / "none", cfg, progress=False, resume=True)
    run = tmp_path / "run"
    train(dataset, run, cfg, progress=False)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=str(run / "last.pt")):
        train(dataset, run, cfg, progress=False, resume=True)
    # A plain model checkpoint (no optimiser state) cannot be resumed: it is for --init.
    save_checkpoint(run / "last.pt", create_model("sice2018-residual", width=8))
    with pytest.raises(ModelError, match="not a training checkpoint"):
        train(dataset, run, cfg, progress=False, resume=True)


def test_init_fine_tunes_from_a_checkpoint(dataset, tmp_path):
    torch.manual_seed(123)
    start = create_model("sice2018-residual", width=8)
    save_checkpoint(tmp_path / "start.pt", start)
    cfg = load_config(None, TINY + ["run.steps=2", "optim.lr=1e-9"])
    r = train(dataset, tmp_path / "ft", cfg, progress=False, init=tmp_path / "start.pt")
    for k, v in start.state_dict().items():  # a negligible LR: still the initial weights
        torch.testing.assert_close(r.model.state_dict()[k], v, atol=1e-5, rtol=0)
    save_checkpoint(tmp_path / "other.pt", create_model("sice2018", width=8))
    with pytest.raises(ModelError, match="holds model 'sice2018'"):
        train(dataset, tmp_path / "ft2", cfg, progress=False, init=tmp_path / "other.pt")


def test_cli_train_and_errors(dataset, tmp_path):
    from sice.cli.train import command

    sets = [a for o in TINY for a in ("--set", o)]
    res = CliRunner().invoke(command, [str(dataset), "-o", str(tmp_path / "r"), "--steps", "3", "--no-progress",
                                       *sets])
    assert res.exit_code == 0, res.output
    assert "done: step 3" in res.output and (tmp_path / "r" / "last.pt").is_file()
    res = CliRunner().invoke(command, [str(dataset), "-o", str(tmp_path / "r"), "--resume", "--steps", "5",
                                       "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "done: step 5" in res.output
    res = CliRunner().invoke(command, [str(dataset), "-o", str(tmp_path / "x"), "--set", "optim.nope=1"])
    assert res.exit_code == 2 and "unknown key optim.nope" in res.output
    (tmp_path / "r" / "last.pt").write_bytes(b"garbage")
    res = CliRunner().invoke(command, [str(dataset), "-o", str(tmp_path / "r"), "--resume", "--no-progress"])
    assert res.exit_code == 1 and "sice: error:" in res.output and "last.pt" in res.output


def test_aux_cache_is_reused_and_matches_decomposition(tmp_path, monkeypatch):
    import sice.decomposition
    from sice.training.data import aux_for

    rgb = synthetic_scene(16, 16)
    first = aux_for(rgb, "exact", tmp_path)
    ref = np.moveaxis(sice.decomposition.aux_tensor(rgb, method="exact"), 0, -1)
    np.testing.assert_array_equal(first, ref)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def boom(*a, **k):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(sice.decomposition, "aux_tensor", boom)
    np.testing.assert_array_equal(aux_for(rgb, "exact", tmp_path), first)
    with pytest.raises(AssertionError, match="recomputed"):
        aux_for(rgb, "fast", tmp_path)  # another method is another cache entry


def test_bench_training_reports_both_formats():
    from sice.training.bench import bench_training

    rows = bench_training(["sice2018-residual", "sice2018-perpixel"], patch=10, batch=1, steps=1)
    assert [(r.model, r.channels_last) for r in rows] == [
        ("sice2018-residual", False), ("sice2018-residual", True),
        ("sice2018-perpixel", False), ("sice2018-perpixel", True)]
    assert [r.patch for r in rows] == [10, 10, 8, 8]  # Model 3 needs multiples of 4
    assert all(r.patches_per_s > 0 and r.seconds_per_step > 0 for r in rows)


def test_time_limit_stops_with_checkpoint_and_score_then_resumes(dataset, tmp_path):
    cfg = load_config(None, TINY + ["run.steps=5", "run.time_limit_s=1e-6", "run.val_at_start=false"])
    r = train(dataset, tmp_path / "run", cfg, progress=False)
    assert r.step == 1 and [v["step"] for v in r.val] == [1]  # a time-boxed run still ends with a score
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 1
    cfg = load_config(tmp_path / "run" / "config.toml", ["run.time_limit_s=0"])
    assert train(dataset, tmp_path / "run", cfg, progress=False, resume=True).step == 5
