"""Reference generators: multi-exposure fusion (MEF) and stack-based HDR + tone mapping.

The SICE paper (Cai et al. 2018, section III-B) fused every multi-exposure sequence with 13 MEF
and HDR algorithms and let people choose the best result as the sequence's reference. This
package is that step: one module per algorithm family and the name -> :class:`Generator` table
:data:`GENERATORS` that the dataset builder, the CLI and the docs read.

Every generator takes aligned float32 RGB frames (H, W, 3) in [0, 1], sorted dark to bright,
and relative exposure times (or None), and returns a float32 RGB image in [0, 1] of the same
size; :func:`run_generator` checks the inputs and post-processes every output the same way
(finite, clipped, same shape).

:data:`DEFAULT_GENERATORS` are the in-process ones (NumPy/SciPy/OpenCV), what
``sice build-dataset`` runs by default; the others drive Debian tools (enfuse, pfstools +
pfstmo, luminance-hdr) and are skipped, with a reason, where those are missing.

Families
--------
``mef``: fusion in the image domain, no exposure times needed.
``hdr``: camera-response recovery + radiance merge, then a tone-mapping operator; these need
exposure times (the builder estimates them when the files carry no EXIF).

Examples
--------
>>> usable, skipped = available_generators()          # doctest: +SKIP
>>> fused = run_generator("mertens", frames)          # doctest: +SKIP
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from . import (ashikhmin, bilateral_fusion, block_fusion, external, fattal, hdr, mai, photographic, pyramid_fusion,
               tonemap)
from ._common import finish, shared_radiance
from .gff import gff
from .gradient import gradient_fusion
from .mertens import mertens, mertens_exposedness
from .spd_mef import spd_mef

__all__ = ["Generator", "GENERATORS", "DEFAULT_GENERATORS", "available_generators", "run_generator", "shared_radiance"]


@dataclass(frozen=True)
class Generator:
    """One named reference generator.

    Attributes
    ----------
    name : str
        Table key and candidate file stem, e.g. ``"mertens"``, ``"debevec-reinhard"``.
    family : str
        ``"mef"`` or ``"hdr"``.
    fn : callable
        ``fn(frames, exposure_times) -> (H, W, 3)`` float image; use :func:`run_generator`,
        which validates the inputs and cleans the output.
    needs_exposures : bool
        True when ``exposure_times`` must be given.
    requires : tuple of str
        External executables that must be on PATH (empty: runs in-process, pip install only).
    citation : str
        The method's reference.
    packages : tuple of str
        Debian packages that provide ``requires`` (for the message when they are missing).
    """

    name: str
    family: str
    fn: Callable[[list[np.ndarray], np.ndarray | None], np.ndarray]
    needs_exposures: bool
    requires: tuple[str, ...] = ()
    citation: str = ""
    packages: tuple[str, ...] = ()


_CITE = {
    "mertens": "T. Mertens, J. Kautz, F. Van Reeth, Exposure fusion, Pacific Graphics 2007",
    "gff": "S. Li, X. Kang, J. Hu, Image fusion with guided filtering, IEEE TIP 22(7), 2013",
    "spd-mef": "K. Ma, H. Li, H. Yong, Z. Wang, D. Meng, L. Zhang, Robust multi-exposure image fusion: a structural "
               "patch decomposition approach, IEEE TIP 26(5), 2017",
    "gradient-domain": "S. Paul, I. Sevcenko, P. Melnikov, Multi-exposure and multi-focus image fusion in gradient "
                       "domain, J. Circuits Syst. Comput. 25(10), 2016",
    "debevec": "P. Debevec, J. Malik, Recovering high dynamic range radiance maps from photographs, SIGGRAPH 1997",
    "reinhard": "E. Reinhard, K. Devlin, Dynamic range reduction inspired by photoreceptor physiology, IEEE TVCG 2005",
    "drago": "F. Drago et al., Adaptive logarithmic mapping for displaying high contrast scenes, CGF 22(3), 2003",
    "mantiuk": "R. Mantiuk, K. Myszkowski, H.-P. Seidel, A perceptual framework for contrast processing of HDR "
               "images, ACM TAP 3(3), 2006",
    "durand": "F. Durand, J. Dorsey, Fast bilateral filtering for the display of HDR images, SIGGRAPH 2002",
    "reinhard02": "E. Reinhard, M. Stark, P. Shirley, J. Ferwerda, Photographic tone reproduction for digital images, "
                  "SIGGRAPH 2002",
    "bilateral-fusion": "S. Raman, S. Chaudhuri, Bilateral filter based compositing for variable exposure "
                        "photography, Eurographics 2009 short papers",
    "block-entropy": "A. A. Goshtasby, Fusion of multi-exposure images, Image and Vision Computing 23(6), 2005",
    "pyramid-salience": "P. J. Burt, R. J. Kolczynski, Enhanced image capture through fusion, ICCV 1993",
    "enfuse": "Enblend/Enfuse (Hugin), after T. Mertens, J. Kautz, F. Van Reeth, Exposure fusion, PG 2007",
    "pfshdrcalibrate": "pfstools pfshdrcalibrate: M. Robertson, S. Borman, R. Stevenson, J. Electron. Imaging "
                       "12(2), 2003",
    "fattal02": "R. Fattal, D. Lischinski, M. Werman, Gradient domain high dynamic range compression, "
                "SIGGRAPH 2002",
    "mai11": "Z. Mai et al., Optimizing a tone curve for backward-compatible high dynamic range image and video "
             "compression, IEEE TIP 20(6), 2011",
    "luminance-hdr": "Luminance HDR (luminance-hdr-cli): Debevec & Malik merge, SIGGRAPH 1997; M. Ashikhmin, "
                     "A tone mapping algorithm for high contrast images, EGWR 2002",
}
# pfstmo operators implementing methods cited above.
_CITE.update(drago03=_CITE["drago"], durand02=_CITE["durand"], mantiuk06=_CITE["mantiuk"], reinhard05=_CITE["reinhard"])
# In-process operators implementing methods cited above.
_CITE.update(fattal=_CITE["fattal02"], mai=_CITE["mai11"],
             ashikhmin="M. Ashikhmin, A tone mapping algorithm for high contrast images, EGWR 2002")

_TONEMAPS = {"reinhard": tonemap.reinhard, "drago": tonemap.drago, "mantiuk": tonemap.mantiuk,
             "durand": tonemap.durand, "reinhard02": photographic.reinhard02, "fattal": fattal.fattal, "mai": mai.mai,
             "ashikhmin": ashikhmin.ashikhmin}


def _debevec_generator(tmo: str) -> Callable:
    """Debevec radiance recovery followed by the ``tmo`` operator, as one generator function."""
    tmo_fn = _TONEMAPS[tmo]

    def generate(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None) -> np.ndarray:
        return tmo_fn(hdr.debevec_radiance(frames, exposure_times))

    generate.__name__ = f"debevec_{tmo}"
    generate.__doc__ = (f"Debevec CRF recovery and radiance merge, then {tmo.title()} tone mapping.\n\n"
                        f"References: {_CITE['debevec']}; {_CITE[tmo]}.")
    return generate


def _pfs_generator(operator: str) -> Callable:
    """pfshdrcalibrate merge followed by ``pfstmo_<operator>``, as one generator function."""

    def generate(frames: Sequence[np.ndarray], exposure_times: np.ndarray | None) -> np.ndarray:
        return external.pfs_tonemap(operator, frames, exposure_times)

    generate.__name__ = f"pfs_{operator}"
    generate.__doc__ = (f"pfstools: pfshdrcalibrate (Robertson) merge, then pfstmo_{operator}.\n\n"
                        f"References: {_CITE['pfshdrcalibrate']}; {_CITE[operator]}.")
    return generate


def _table() -> dict[str, Generator]:
    gens = [
        Generator("mertens", "mef", mertens, False, citation=_CITE["mertens"]),
        Generator("mertens-exposedness", "mef", mertens_exposedness, False,
                  citation=_CITE["mertens"] + " (contrast and well-exposedness weights only)"),
        Generator("gff", "mef", gff, False, citation=_CITE["gff"]),
        Generator("spd-mef", "mef", spd_mef, False, citation=_CITE["spd-mef"]),
        Generator("gradient-domain", "mef", gradient_fusion, False, citation=_CITE["gradient-domain"]),
        Generator("bilateral-fusion", "mef", bilateral_fusion.bilateral_fusion, False,
                  citation=_CITE["bilateral-fusion"]),
        Generator("block-entropy", "mef", block_fusion.block_fusion, False, citation=_CITE["block-entropy"]),
        Generator("pyramid-salience", "mef", pyramid_fusion.pyramid_fusion, False,
                  citation=_CITE["pyramid-salience"]),
    ]
    for tmo in _TONEMAPS:
        gens.append(Generator(f"debevec-{tmo}", "hdr", _debevec_generator(tmo), True,
                              citation=f"{_CITE['debevec']}; {_CITE[tmo]}"))
    gens.append(Generator("enfuse", "mef", external.enfuse, False, ("enfuse",), _CITE["enfuse"], ("enfuse",)))
    for op in external.PFS_OPERATORS:
        # pfstools has the readers, the merge and pfsgamma; the pfstmo package the operators.
        gens.append(Generator(f"pfs-{op}", "hdr", _pfs_generator(op), True,
                              ("pfsinhdrgen", "pfsin", "pfstag", "pfshdrcalibrate", f"pfstmo_{op}", "pfsgamma",
                               "pfsout"),
                              f"{_CITE['pfshdrcalibrate']}; {_CITE[op]}", ("pfstools", "pfstmo")))
    gens.append(Generator("luminance-hdr", "hdr", external.luminance_hdr, True, ("luminance-hdr-cli",),
                          _CITE["luminance-hdr"], ("luminance-hdr",)))
    return {g.name: g for g in gens}


#: name -> :class:`Generator`, in the order candidates are produced and listed.
GENERATORS: dict[str, Generator] = _table()

#: What ``sice build-dataset`` runs by default: every in-process generator (NumPy/SciPy/OpenCV
#: only, so a pip install gets them all). All are fast (at most about 0.4 CPU s per megapixel of
#: frames, docs/generators.md); the external tools (enfuse, pfstools, luminance-hdr) are
#: added by ``--generators all`` when installed.
DEFAULT_GENERATORS: tuple[str, ...] = tuple(name for name, gen in GENERATORS.items() if not gen.requires)


def _missing_tools(gen: Generator) -> list[str]:
    return [tool for tool in gen.requires if shutil.which(tool) is None]


def available_generators(names: Iterable[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Which generators can run on this machine.

    Parameters
    ----------
    names : iterable of str, optional
        Generators to consider (default: all of :data:`GENERATORS`, in table order).

    Returns
    -------
    usable : list of str
        Names whose external tools are all installed, in the order given.
    skipped : dict
        name -> reason, e.g. ``{"enfuse": "enfuse not installed"}``.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones).
    """
    names = list(GENERATORS) if names is None else list(names)
    unknown = [n for n in names if n not in GENERATORS]
    if unknown:
        raise ValueError(f"unknown generator(s) {', '.join(unknown)}; known: {', '.join(GENERATORS)}")
    usable, skipped = [], {}
    for name in names:
        missing = _missing_tools(GENERATORS[name])
        if missing:
            skipped[name] = f"{', '.join(missing)} not installed"
        else:
            usable.append(name)
    return usable, skipped


def _check_frames(frames: Sequence[np.ndarray]) -> tuple[int, ...]:
    if not isinstance(frames, (list, tuple)) or len(frames) < 2:
        n = len(frames) if isinstance(frames, (list, tuple)) else type(frames).__name__
        raise ValueError(f"frames must be a list of at least 2 images, got {n}")
    shape = None
    for i, f in enumerate(frames):
        if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3:
            got = f.shape if isinstance(f, np.ndarray) else type(f).__name__
            raise ValueError(f"frames[{i}] must be an (H, W, 3) RGB array, got {got}")
        if f.dtype != np.float32:
            raise ValueError(f"frames[{i}] must be float32 in [0, 1], got dtype {f.dtype}")
        if shape is None:
            shape = f.shape
        elif f.shape != shape:
            raise ValueError(f"frames[{i}] has shape {f.shape}, frames[0] has {shape}: frames must be aligned "
                             "and of the same size")
        if f.shape[0] < 2 or f.shape[1] < 2:
            raise ValueError(f"frames[{i}] is too small: {f.shape}")
        lo, hi = float(f.min()), float(f.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise ValueError(f"frames[{i}] values must be finite and in [0, 1], got range [{lo}, {hi}]")
    return shape


def _check_times(exposure_times, n: int) -> np.ndarray:
    t = np.asarray(exposure_times, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"exposure_times must have one value per frame ({n}), got shape {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"exposure_times must be finite and > 0, got {t.tolist()}")
    return t


def run_generator(name: str, frames: Sequence[np.ndarray], exposure_times: np.ndarray | None = None) -> np.ndarray:
    """Run one generator on an aligned stack, with input checks and output clean-up.

    Parameters
    ----------
    name : str
        A key of :data:`GENERATORS`.
    frames : list of (H, W, 3) float32 ndarray in [0, 1]
        At least 2 aligned RGB frames of the same size, sorted dark to bright.
    exposure_times : (N,) array_like, optional
        Relative exposure times (any scale) of the frames; required by the ``hdr`` family.

    Returns
    -------
    (H, W, 3) float32 ndarray in [0, 1], finite, same H and W as the frames.

    Raises
    ------
    ValueError
        Unknown name, bad frames (fewer than 2, wrong shape/dtype/range, different sizes), or
        exposure times missing (for ``hdr``), of the wrong length, non-positive or non-finite.
    RuntimeError
        A required external tool is missing or fails (:class:`sice.fusion.external.ExternalToolError`).
    """
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}")
    gen = GENERATORS[name]
    shape = _check_frames(frames)
    times = None
    if exposure_times is not None:
        times = _check_times(exposure_times, len(frames))
    elif gen.needs_exposures:
        raise ValueError(f"generator {name!r} ({gen.family}) needs exposure_times, got None")
    missing = _missing_tools(gen)
    if missing:
        raise RuntimeError(f"generator {name!r} needs {', '.join(missing)}, which is not installed")
    return finish(gen.fn(list(frames), times), shape)
