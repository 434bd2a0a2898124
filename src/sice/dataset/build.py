"""Build a SICE-layout dataset from multi-exposure sequences (the paper's step 2 and 3).

For each scene: read the frames, find their exposures (EXIF, else estimated), order them dark to
bright, align them and measure ghosts, run every reference generator, score each candidate by
MEF-SSIM, choose the label, and write::

    DATASET/<scene>/<k>.<ext>              frames k = 1..n, dark to bright (source bytes copied
                                           when the format does not change)
    DATASET/Label/<scene>.png              the chosen reference (photo-finished by default:
                                           :mod:`sice.dataset.finishing`)
    DATASET/candidates/<scene>/<gen>.png   every generator's candidate
    DATASET/manifest.json                  per scene: frames, exposures, shifts, flags, each
                                           generator's MEF-SSIM, statistics and time, the label
                                           and why
    DATASET/.manifest/<scene>.json         the same entry, one file per finished scene

Crash safety: every file is written atomically (temp file + rename). A scene counts as finished
only once its ``.manifest/<scene>.json`` exists, and that file is written last, so an interrupted
run leaves at worst complete files of an unfinished scene, which the next run rewrites. The
merged ``manifest.json`` is rebuilt from the per-scene files, atomically.

References
----------
.. [1] J. Cai, S. Gu, L. Zhang, "Learning a Deep Single Image Contrast Enhancer from
   Multi-Exposure Images", IEEE TIP 27(4):2049-2062, 2018.
.. [2] K. Ma, K. Zeng, Z. Wang, "Perceptual quality assessment for multi-exposure image fusion",
   IEEE TIP 24(11):3345-3356, 2015 (MEF-SSIM, the selection score).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..childproc import scratch_tempdir
from ..errors import DatasetError, SiceError
from ..files import remove_stale_parts
from ..parallel import check_parallel, run_each
from .manifest import (CANDIDATE_DIR, LABEL_DIR, SCENE_ENTRIES, jsonable, read_scene_entries, write_manifest,
                       write_scene_entry)
from .selection import refinish_labels, reselect_by_votes, select_by_score, write_label

#: Folders of an input root that are not scenes (the SICE layout's labels, our candidates).
NOT_SCENES = {"label", "candidates"}
SELECTIONS = ("mef-ssim", "votes")
FRAME_EXTENSIONS = ("jpg", "png")
#: Exposure differences below this (EV) do not reorder frames (estimation noise, repeated shots).
ORDER_TOLERANCE_EV = 0.1

#: A generator as the builder calls it: (frames dark->bright, relative exposure times) -> image.
GeneratorFn = Callable[[list, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class SceneSource:
    """One input sequence: its name (the folder name) and its image files."""

    name: str
    folder: Path
    frames: tuple


@dataclasses.dataclass
class BuildOptions:
    """How scenes are built; picklable, so that worker processes receive it.

    Attributes
    ----------
    generators : tuple of (str, callable)
        ``(name, fn)`` with ``fn(frames, exposure_times) -> (H, W, 3) float32 [0, 1]``; module-level
        functions or :func:`functools.partial` of them (spawned workers unpickle them).
    align : bool
        Align frames (MTB) and measure ghosts before fusing.
    ecc : bool
        Refine alignment to sub-pixel accuracy (ECC).
    ext : {"jpg", "png"} or None
        Format of the copied frames; None keeps each frame's JPEG/PNG format (other formats
        become PNG).
    score : callable or None
        ``score(fused, frames) -> float``, higher is better; None means MEF-SSIM
        (:func:`sice.dataset.scoring.mef_ssim`, with the stack's part computed once per scene).
    statistics : callable or None
        ``statistics(image) -> dict``; None means :func:`sice.dataset.scoring.image_statistics`.
    finish : {"photo", "none"}
        How the chosen candidate becomes the label: ``"photo"`` sets its black and white
        points and whitens what even the darkest frame clipped (:func:`sice.dataset.finishing.photo_finish`);
        ``"none"`` copies the candidate as it is (the behaviour before finishing existed).
        Candidates are always stored unfinished, so a dataset can be re-finished without
        fusing again.
    """

    generators: tuple
    align: bool = True
    ecc: bool = True
    ext: str | None = None
    score: Callable | None = None
    statistics: Callable | None = None
    finish: str = "photo"


@dataclasses.dataclass
class BuildResult:
    """What :func:`build_dataset` did.

    Attributes
    ----------
    built : list of str
        Scenes built by this run.
    extended : list of str
        Finished scenes that got the candidates of generators they lacked (or that had failed).
    resumed : list of str
        Scenes already finished by an earlier run (skipped).
    failed : list of (str, str)
        Scenes that failed, with the reason (they are retried by the next run).
    generator_failures : list of (str, str, str)
        ``(scene, generator, reason)`` for generators that failed inside otherwise built scenes.
    flagged : dict
        ``scene -> flags`` for finished scenes with ghosts or too much motion.
    refinished : list of str
        Finished scenes whose label was re-written with another finish (``BuildOptions.finish``).
    seconds : float
        Wall time of the run.
    """

    built: list = dataclasses.field(default_factory=list)
    extended: list = dataclasses.field(default_factory=list)
    resumed: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)
    generator_failures: list = dataclasses.field(default_factory=list)
    flagged: dict = dataclasses.field(default_factory=dict)
    refinished: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------
def find_scenes(root: os.PathLike | str) -> tuple[list[SceneSource], list[tuple[str, str]]]:
    """Scenes of an input folder: one sub-folder per sequence (the SICE layout's ``Label/`` and
    our ``candidates/`` are not scenes). A folder holding images and no sub-folder is one scene.

    Returns
    -------
    scenes : list of SceneSource
        Sorted naturally by name (``2`` before ``10``); frames sorted naturally too.
    problems : list of (str, str)
        ``(folder, reason)`` for folders left out: no images, a single frame.

    Raises
    ------
    DatasetError
        ``root`` is not a folder or holds neither scene folders nor images.
    """
    from ..io import list_images, natural_key

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder of sequences")
    folders = [d for d in root.iterdir()
               if d.is_dir() and not d.name.startswith(".") and d.name.lower() not in NOT_SCENES]
    if not folders:
        if list_images(root):
            folders = [root]
        else:
            raise DatasetError(f"{root}: no scene folders (expected one folder of frames per scene)")
    scenes, problems = [], []
    for folder in sorted(folders, key=lambda d: natural_key(d.name)):
        frames = list_images(folder)
        if not frames:
            problems.append((str(folder), "no image files"))
        elif len(frames) < 2:
            problems.append((str(folder), f"only one frame ({frames[0].name}); a sequence needs at least 2"))
        else:
            scenes.append(SceneSource(folder.name, folder, tuple(frames)))
    return scenes, problems


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------
def resolve_generators(names: Sequence[str] | None = None) -> tuple[tuple, dict]:
    """The builder's ``(name, fn)`` pairs for the named generators of :mod:`sice.fusion`.

    Parameters
    ----------
    names : sequence of str or None
        Generator names; None means every generator.

    Returns
    -------
    generators : tuple of (str, callable)
        The usable ones, in the order of ``sice.fusion.GENERATORS``.
    skipped : dict
        ``name -> reason`` for generators whose tool or library is missing.

    Raises
    ------
    ValueError
        An unknown generator name.
    """
    from .. import fusion

    if names is not None:
        unknown = sorted(set(names) - set(fusion.GENERATORS))
        if unknown:
            raise ValueError(f"unknown generator(s) {', '.join(unknown)}; known: {', '.join(fusion.GENERATORS)}")
    usable, skipped = fusion.available_generators(None if names is None else list(names))
    return tuple((name, functools.partial(fusion.run_generator, name)) for name in usable), dict(skipped)


# ---------------------------------------------------------------------------------------------
# One scene
# ---------------------------------------------------------------------------------------------
def build_scene(source: SceneSource, dataset: os.PathLike | str, options: BuildOptions) -> dict:
    """Build one scene into ``dataset`` and return its manifest entry (also written to
    ``dataset/.manifest/<scene>.json``, last).

    Raises
    ------
    DatasetError
        The scene cannot be used (unreadable frame, frames of different sizes, fewer than two
        frames) or no generator produced a candidate. Its message starts with the scene folder.
    """
    from ..stack import alignment
    from ..stack import exposure
    from ..imageops import to_float32, to_rgb
    from ..io import read_image

    dataset = Path(dataset)
    if len(source.frames) < 2:
        raise DatasetError(f"{source.folder}: only {len(source.frames)} frame(s); a sequence needs at least 2")
    files = []
    for path in source.frames:
        try:
            files.append(read_image(path))
        except SiceError as exc:
            raise DatasetError(f"{source.folder}: unreadable frame: {exc}") from None
    sizes = {f.pixels.shape[:2] for f in files}
    if len(sizes) > 1:
        listed = ", ".join(f"{p.name} {f.width}x{f.height}" for p, f in zip(source.frames, files))
        raise DatasetError(f"{source.folder}: frames differ in size ({listed})")
    frames = [to_float32(to_rgb(f.pixels)) for f in files]
    h, w = frames[0].shape[:2]

    # Exposures: EXIF when every frame has it, otherwise estimated from the pixels.
    exif = [exposure.exposure_from_exif(f.exif) for f in files]
    ev = exposure.exif_exposure_values(exif)
    exposure_info: dict = {"source": "exif"}
    if ev is None:
        estimate = exposure.estimate_exposures(frames)
        ev = estimate.ev
        exposure_info = {"source": "estimated", "response": "srgb", "residual_ev": round(estimate.residual, 4),
                         "weak_frames": estimate.weak}
    # Files already ordered dark to bright (within 0.1 EV: SICE repeats some exposures) keep
    # their order; otherwise they are sorted by exposure.
    ev = np.asarray(ev, dtype=np.float64)
    in_order = bool(np.all(np.diff(ev) >= -ORDER_TOLERANCE_EV))
    order = list(range(len(ev))) if in_order else [int(i) for i in np.argsort(ev, kind="stable")]
    ev = np.asarray(ev, dtype=np.float64)[order] - ev[order[0]]
    frames = [frames[i] for i in order]
    files = [files[i] for i in order]
    paths = [source.frames[i] for i in order]
    exif = [exif[i] for i in order]
    base_time = exif[0].exposure_time if exposure_info["source"] == "exif" else 1.0
    times = base_time * np.exp2(ev)

    flags: list = []
    align_info: dict = {"aligned": False}
    shifts = np.zeros((len(frames), 2))
    if options.align:
        result = alignment.align_frames(frames, ecc=options.ecc)
        frames, shifts = result.frames, result.shifts
        quality = alignment.assess(result)
        flags = quality.pop("flags")
        align_info = {"aligned": True, "method": "mtb+ecc" if options.ecc else "mtb",
                      "reference": result.reference + 1, "ecc_converged": result.refined, **quality}

    score_fn, stats_fn = _scorers(options, frames)
    candidates_dir = dataset / CANDIDATE_DIR / source.name
    candidates_dir.mkdir(parents=True, exist_ok=True)
    generators: dict = {}
    from ..fusion import shared_radiance

    with shared_radiance():  # the HDR generators of this stack share its radiance maps
        for name, fn in options.generators:
            generators[name] = _run_one_generator(name, fn, frames, times, candidates_dir, dataset,
                                                  score_fn, stats_fn)
    scored = {n: g for n, g in generators.items() if "error" not in g and math.isfinite(g["mef_ssim"])}
    if not scored:
        reasons = "; ".join(f"{n}: {g.get('error', 'no finite score')}" for n, g in generators.items())
        raise DatasetError(f"{source.folder}: no generator produced a usable candidate ({reasons or 'none selected'})")

    frame_entries = _copy_frames(paths, files, dataset / source.name, options.ext)
    for entry, e, t, s, x in zip(frame_entries, ev, times, shifts, exif):
        entry.update(exposure_ev=round(float(e), 4), exposure_time=float(t),
                     shift=[round(float(s[0]), 3), round(float(s[1]), 3)],
                     exif=dataclasses.asdict(x) if x is not None else None)

    entry = {
        "scene": source.name,
        "source": str(source.folder),
        "size": [h, w],
        "megapixels": round(h * w / 1e6, 4),
        "frames": frame_entries,
        "exposure": exposure_info,
        "alignment": align_info,
        "flags": flags,
        "generators": generators,
    }
    entry["label"] = select_by_score(generators)
    write_label(dataset, entry, options.finish)
    write_scene_entry(dataset, entry)
    return entry


def missing_generators(entry: dict, options: BuildOptions) -> list[str]:
    """Generators of ``options`` that a finished scene has no candidate of (absent or failed)."""
    have = entry.get("generators", {})
    return [name for name, _ in options.generators if name not in have or "error" in have[name]]


def extend_scene(entry: dict, dataset: os.PathLike | str, options: BuildOptions) -> dict:
    """Add the candidates of :func:`missing_generators` to a finished scene.

    The frames are read back from the dataset (already ordered, with their recorded exposure
    times) and shifted by their recorded shifts, so the new candidates are made from exactly
    the stack of the first build; nothing is re-estimated. A label chosen by MEF-SSIM is chosen
    again among all candidates; a label chosen by votes is kept.

    Returns
    -------
    dict
        The updated entry (also written to ``.manifest/<scene>.json``).
    """
    from ..stack.alignment import shift_image
    from ..io import read_rgb

    dataset = Path(dataset)
    missing = set(missing_generators(entry, options))
    frames = [read_rgb(dataset / f["file"]) for f in entry["frames"]]
    if entry.get("alignment", {}).get("aligned"):
        frames = [shift_image(f, *fe["shift"]) for f, fe in zip(frames, entry["frames"])]
    times = np.array([f["exposure_time"] for f in entry["frames"]], dtype=np.float64)
    score_fn, stats_fn = _scorers(options, frames)
    candidates_dir = dataset / CANDIDATE_DIR / entry["scene"]
    candidates_dir.mkdir(parents=True, exist_ok=True)
    from ..fusion import shared_radiance

    with shared_radiance():
        for name, fn in options.generators:
            if name in missing:
                entry["generators"][name] = _run_one_generator(name, fn, frames, times, candidates_dir, dataset,
                                                               score_fn, stats_fn)
    if entry["label"]["selected_by"] == "mef-ssim":
        label = select_by_score(entry["generators"])
        changed = label["generator"] != entry["label"]["generator"]
        entry["label"] = {**label, "finish": entry["label"].get("finish", "none")}
        if changed:
            write_label(dataset, entry, entry["label"]["finish"])
    write_scene_entry(dataset, entry)
    return entry


def _scorers(options: BuildOptions, frames: list) -> tuple[Callable, Callable]:
    """``(score(fused), statistics(fused))`` for the candidates of one stack.

    The default score keeps one :class:`~sice.dataset.scoring.MefSsimReference` of ``frames``
    for all candidates: the stack's part of MEF-SSIM is most of its cost. It is made at the
    first score, inside a candidate's error handling: a stack that MEF-SSIM cannot score (too
    small, non-finite) costs each candidate its score, as before, not the scene.
    """
    from . import scoring

    stats_fn = options.statistics or scoring.image_statistics
    if options.score is not None:
        return (lambda fused: options.score(fused, frames)), stats_fn
    reference = None

    def score(fused: np.ndarray) -> float:
        nonlocal reference
        if reference is None:
            reference = scoring.MefSsimReference(frames)
        return reference.score(fused)

    return score, stats_fn


def _run_one_generator(name, fn, frames, times, candidates_dir: Path, dataset: Path,
                       score_fn, stats_fn) -> dict:
    """Run, check, score and save one generator's candidate; failures become ``{"error": ...}``
    so that one broken generator costs one candidate, not the scene."""
    from ..io import write_image

    start = time.perf_counter()
    try:
        fused = np.asarray(fn(list(frames), np.asarray(times)), dtype=np.float32)
        seconds = time.perf_counter() - start
        if fused.shape != frames[0].shape:
            raise ValueError(f"returned shape {fused.shape}, expected {frames[0].shape}")
        if not np.all(np.isfinite(fused)):
            raise ValueError("returned non-finite values")
        fused = np.clip(fused, 0, 1)
        t_score = time.perf_counter()
        score = float(score_fn(fused))
        stats = {k: jsonable(v) for k, v in dict(stats_fn(fused)).items()}
        score_seconds = time.perf_counter() - t_score
        path = candidates_dir / f"{name}.png"
        write_image(path, fused)
    except Exception as exc:  # noqa: BLE001 - any generator bug must cost one candidate only
        return {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500],
                "seconds": round(time.perf_counter() - start, 4)}
    return {"mef_ssim": round(score, 6) if math.isfinite(score) else float("nan"),
            "statistics": stats, "seconds": round(seconds, 4), "score_seconds": round(score_seconds, 4),
            "file": path.relative_to(dataset).as_posix()}


def _copy_frames(paths, files, folder: Path, ext: str | None) -> list[dict]:
    """Frames as ``<k>.<ext>``, dark to bright: the source bytes when the format stays the same,
    re-encoded (bit depth and metadata kept) otherwise."""
    from ..files import atomic_write_bytes
    from ..io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, (path, image) in enumerate(zip(paths, files), start=1):
        source_ext = {"JPEG": "jpg", "PNG": "png"}.get(image.format)
        target_ext = ext or source_ext or "png"
        target = folder / f"{k}.{target_ext}"
        if target_ext == source_ext:
            atomic_write_bytes(target, Path(path).read_bytes())
            how = "copied"
        else:
            write_image(target, image.pixels, like=image)
            how = "converted"
        entries.append({"file": target.relative_to(folder.parent).as_posix(), "source": Path(path).name,
                        "how": how})
    return entries


# ---------------------------------------------------------------------------------------------
# The whole dataset
# ---------------------------------------------------------------------------------------------
def build_dataset(sequences: os.PathLike | str, dataset: os.PathLike | str, options: BuildOptions, *,
                  select: str = "mef-ssim", workers: int = 1, cluster: str | None = None,
                  limit: int | None = None, on_scene: Callable[[str, str | None], None] | None = None,
                  on_start: Callable[[int], None] | None = None) -> BuildResult:
    """Build (or resume building) a SICE-layout dataset.

    Parameters
    ----------
    sequences : path-like
        One folder per scene (>= 2 frames each, any format :mod:`sice.io` reads); the SICE layout
        (scene folders + ``Label/``) is accepted.
    dataset : path-like
        Output root (created). Scenes already finished there are skipped, except that those
        lacking a candidate of one of ``options.generators`` get just that candidate
        (:func:`extend_scene`).
    options : BuildOptions
    select : {"mef-ssim", "votes"}
        ``"votes"`` re-chooses every finished scene's label from ``dataset/screening.sqlite``
        (:func:`sice.screening.store.winners`), ties broken by MEF-SSIM.
    workers : int
        Processes of this machine (spawned; 1 builds in this process).
    cluster : str, optional
        Build on a Dask cluster instead: ``local:N`` or a scheduler address
        (:func:`sice.parallel.run_each`; the folders must be on a file system every worker sees).
    limit : int, optional
        Build at most this many scenes (first ones in natural order), finished ones included.
    on_scene : callable, optional
        ``on_scene(name, error_or_None)`` after each scene (progress bars).
    on_start : callable, optional
        ``on_start(number_of_scenes_to_build)`` before the first one.

    Returns
    -------
    BuildResult

    Raises
    ------
    DatasetError
        ``sequences`` is unusable, or ``select="votes"`` without a screening database.
    ClusterError
        ``cluster`` given and Dask missing or the scheduler unreachable.
    ValueError
        Bad ``select``, ``workers``, ``cluster``, ``limit`` or an empty generator list.
    """
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    cluster = check_parallel(workers, cluster)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if not options.generators:
        raise ValueError("options.generators is empty: no generator to build references with")
    if options.ext not in (None, *FRAME_EXTENSIONS):
        raise ValueError(f"ext must be one of {FRAME_EXTENSIONS} or None, got {options.ext!r}")
    start = time.perf_counter()
    dataset = Path(dataset)
    sources, problems = find_scenes(sequences)
    if Path(sequences).resolve() == dataset.resolve():
        raise DatasetError(f"{dataset}: the output folder must differ from the input folder")
    winners = _votes(dataset) if select == "votes" else None
    dataset.mkdir(parents=True, exist_ok=True)

    result = BuildResult()
    result.failed.extend(problems)
    if limit is not None:
        sources = sources[:limit]
    entries = read_scene_entries(dataset)
    todo = [s for s in sources if s.name not in entries or missing_generators(entries[s.name], options)]
    _remove_stale_temps(dataset, [s.name for s in todo])
    result.resumed = [s.name for s in sources if s.name in entries and s not in todo]
    finished_before = set(entries)
    opts_record = {"generators": [n for n, _ in options.generators], "align": options.align,
                   "ecc": options.ecc, "ext": options.ext, "select": select, "finish": options.finish}
    if on_start:
        on_start(len(todo))

    saver = _ThrottledManifest(dataset, entries, result, opts_record)
    # Generators' temp folders and external tools die with the build, even on SIGKILL.
    with scratch_tempdir():
        scenes = _run_scenes(todo, dataset, options, workers, cluster)
        try:
            for name, entry, error in scenes:
                if error is None:
                    entries[name] = entry
                    (result.extended if name in finished_before else result.built).append(name)
                else:
                    result.failed.append((name, error))
                if on_scene:
                    on_scene(name, error)
                saver.maybe_save()
        finally:
            scenes.close()  # on an interrupt: stops the workers now, not after their queued scenes
            # Workers may have finished scenes that were never reported here: the disk is the truth.
            entries.update(read_scene_entries(dataset))
            done = result.resumed + result.extended + result.built
            if winners is not None:
                reselect_by_votes(dataset, {n: entries[n] for n in done}, winners)
            result.refinished = refinish_labels(dataset, {n: entries[n] for n in done if n in entries},
                                                options.finish)
            saver.save()

    for name in result.resumed + result.extended + result.built:
        entry = entries[name]
        if entry.get("flags"):
            result.flagged[name] = entry["flags"]
        if name in result.built or name in result.extended:
            for gen, g in entry["generators"].items():
                if "error" in g:
                    result.generator_failures.append((name, gen, g["error"]))
    result.seconds = time.perf_counter() - start
    return result


def _remove_stale_temps(dataset: Path, scenes: Sequence[str]) -> None:
    """Delete temp files that a killed process left (``.<name>.<random>.part``, see
    :mod:`sice.files`) in the shared folders and the scenes about to be built."""
    folders = [dataset, dataset / LABEL_DIR, dataset / SCENE_ENTRIES]
    folders += [dataset / name for name in scenes] + [dataset / CANDIDATE_DIR / name for name in scenes]
    for folder in folders:
        remove_stale_parts(folder)


class _ThrottledManifest:
    """Rewrites manifest.json at most every few seconds during a run (and at the end), so that
    an interrupted run still leaves a complete, recent manifest without rewriting it per scene."""

    def __init__(self, dataset, entries, result, options, every: float = 10.0):
        self.dataset, self.entries, self.result, self.options = dataset, entries, result, options
        self.every, self.last = every, time.monotonic()

    def maybe_save(self):
        if time.monotonic() - self.last >= self.every:
            self.save()

    def save(self):
        write_manifest(self.dataset, self.entries, failed=self.result.failed, options=self.options)
        self.last = time.monotonic()


def _votes(dataset: Path) -> dict:
    try:
        from ..screening.store import winners
    except ImportError as exc:
        raise DatasetError(f"{dataset}: --select votes needs sice.screening, which cannot be imported ({exc})") from None
    return winners(dataset / "screening.sqlite")


def _build_or_error(source: SceneSource, dataset: Path, options: BuildOptions) -> tuple[str, dict | None, str | None]:
    try:
        finished = read_scene_entries(dataset, [source.name]).get(source.name)
        if finished is not None:
            return source.name, extend_scene(finished, dataset, options), None
        return source.name, build_scene(source, dataset, options), None
    except SiceError as exc:
        return source.name, None, " ".join(str(exc).split())
    except Exception as exc:  # noqa: BLE001 - one broken scene must not stop the other 200
        return source.name, None, f"{source.folder}: {type(exc).__name__}: {' '.join(str(exc).split())}"


def _run_scenes(todo: list, dataset: Path, options: BuildOptions, workers: int, cluster: str | None):
    """Yield ``(name, entry, error)`` per scene, as each finishes (:func:`sice.parallel.run_each`)."""
    outcomes = run_each(functools.partial(_build_or_error, dataset=dataset, options=options), todo,
                        workers=workers, cluster=cluster)
    try:
        for outcome in outcomes:
            if outcome.error is None:
                yield outcome.value
            else:
                source = outcome.item
                yield source.name, None, f"{source.folder}: {outcome.error}"
    finally:
        outcomes.close()  # on an interrupt: stops the workers now, not after their queued scenes
