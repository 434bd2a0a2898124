"""Choosing each scene's label among its candidates: by MEF-SSIM, or by screening votes.

:func:`select_by_score` ranks the candidates by MEF-SSIM ([Ma2015]_); :func:`reselect_by_votes`
re-chooses from the votes of the screening room; :func:`write_label` writes ``Label/<scene>.png``
(photo-finished by default, :mod:`sice.dataset.finishing`).

References
----------
.. [Ma2015] K. Ma, K. Zeng, Z. Wang, "Perceptual quality assessment for multi-exposure image
   fusion", IEEE TIP 24(11):3345-3356, 2015.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import DatasetError
from .manifest import CANDIDATE_DIR, LABEL_DIR, write_scene_entry


def select_by_score(generators: dict, among: Iterable[str] | None = None, *, selected_by: str = "mef-ssim",
                    why: str = "") -> dict:
    """The candidate with the highest MEF-SSIM (among ``among`` when given), with the reason.

    Returns
    -------
    dict
        ``generator``, ``file`` (``Label/...`` is written by :func:`write_label`), ``mef_ssim``,
        ``selected_by`` and ``reason``.
    """
    pool = {n: g for n, g in generators.items()
            if "error" not in g and math.isfinite(g.get("mef_ssim", float("nan")))
            and (among is None or n in set(among))}
    if not pool:
        raise DatasetError("no scored candidate to choose from")
    ranked = sorted(pool, key=lambda n: (-pool[n]["mef_ssim"], n))
    best = ranked[0]
    reason = f"highest MEF-SSIM {pool[best]['mef_ssim']:.4f} of {len(pool)} candidates"
    if len(ranked) > 1:
        reason += f" (runner-up {ranked[1]} {pool[ranked[1]]['mef_ssim']:.4f})"
    if why:
        reason = f"{why}; {reason}"
    return {"generator": best, "mef_ssim": pool[best]["mef_ssim"], "selected_by": selected_by, "reason": reason}


def write_label(dataset: Path, entry: dict, finish: str = "photo") -> Path:
    """Write ``Label/<scene>.png`` atomically from the candidate ``entry["label"]`` names.

    ``finish="none"`` copies the candidate's bytes; ``"photo"`` writes
    :func:`sice.dataset.finishing.photo_finish` of it, with the scene's darkest frame (the first one in
    ``entry["frames"]``) deciding what stays white. ``entry["label"]["finish"]`` records which.
    """
    from .finishing import FINISHES
    from ..files import atomic_write_bytes

    if finish not in FINISHES:
        raise ValueError(f"finish must be one of {FINISHES}, got {finish!r}")
    dataset = Path(dataset)
    scene = entry["scene"]
    label_dir = dataset / LABEL_DIR
    label_dir.mkdir(parents=True, exist_ok=True)
    target = label_dir / f"{scene}.png"
    candidate = dataset / CANDIDATE_DIR / scene / f"{entry['label']['generator']}.png"
    if finish == "none":
        atomic_write_bytes(target, candidate.read_bytes())
    else:
        from .finishing import photo_finish
        from ..io import read_rgb, write_image

        darkest = read_rgb(dataset / entry["frames"][0]["file"]) if entry.get("frames") else None
        fused = read_rgb(candidate)
        write_image(target, photo_finish(fused, darkest if darkest is not None and
                                         darkest.shape == fused.shape else None))
    entry["label"]["finish"] = finish
    return target


def refinish_labels(dataset: os.PathLike | str, entries: dict, finish: str) -> list[str]:
    """Rewrite the labels of finished scenes whose recorded finish differs from ``finish``
    (cheap: from the stored candidates, nothing is fused again). Returns the scenes changed."""
    changed = []
    for name, entry in entries.items():
        if entry.get("label", {}).get("finish", "none") != finish:
            write_label(Path(dataset), entry, finish)
            write_scene_entry(Path(dataset), entry)
            changed.append(name)
    return changed


def reselect_by_votes(dataset: os.PathLike | str, entries: dict, winners: dict) -> list[str]:
    """Re-choose labels of finished scenes from screening votes.

    Parameters
    ----------
    winners : dict
        ``scene -> [candidate names with the most votes]`` (or one name), as returned by
        :func:`sice.screening.store.winners`. Ties are broken by MEF-SSIM; scenes without votes,
        rejected by the raters (``[]``) or whose winners are not candidates keep the MEF-SSIM
        choice, with that reason recorded.

    Returns
    -------
    list of str
        Scenes whose label image changed (the reasons are updated in every entry).
    """
    dataset = Path(dataset)
    changed = []
    for name, entry in entries.items():
        voted = winners.get(name)
        if isinstance(voted, str):
            voted = [voted]
        generators = entry["generators"]
        if voted is None:
            label = select_by_score(generators, why="no votes")
        elif not voted:
            label = select_by_score(generators, why="raters found no candidate acceptable")
        elif not any(v in generators and "error" not in generators[v] for v in voted):
            label = select_by_score(generators, why=f"voted {', '.join(voted)} not among the candidates")
        else:
            tie = f" (tie of {', '.join(voted)} broken by MEF-SSIM)" if len(voted) > 1 else ""
            label = select_by_score(generators, among=voted, selected_by="votes", why=f"most votes{tie}")
        label["finish"] = entry["label"].get("finish", "none")
        new_image = label["generator"] != entry["label"]["generator"]
        if new_image or label != entry["label"]:
            entry["label"] = label
            if new_image:
                write_label(dataset, entry, label["finish"])
                changed.append(name)
            write_scene_entry(dataset, entry)
    return changed
