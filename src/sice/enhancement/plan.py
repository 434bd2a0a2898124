"""Planning a batch of ``sice enhance``: every input found and every output named before anything
is written (:mod:`sice.enhancement.batch` then runs the plan).

A photo library is full of repeated names (``IMG_0001.JPG`` in every camera folder, ``a.jpg``
next to ``a.png``), so output names are planned for the whole batch at once: two inputs that
would write the same output (compared the way a case-insensitive file system compares them)
never overwrite each other or get skipped; the later one gets a numbered name
(``x-2.jpg``) and the plan says so. Outputs that would overwrite an input of the batch are
refused per input. Entries that cannot even be looked at (a symbolic link loop, a link into a
folder without search permission, a folder that cannot be listed, a folder without images)
become per-entry failures: the rest of the batch goes on.

The plan depends only on the inputs and options, never on what the output folder holds, so a
re-run maps every input to the same output as before and can skip the finished ones.
"""
from __future__ import annotations

import dataclasses
import errno
import glob
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable

from ..errors import SiceError
from ..files import same_file
from ..io import EXTENSIONS, is_image_path, natural_key

#: The input name that means standard input (and, as ``-o -``, standard output).
STDIO = "-"

#: Output format names of ``--format`` and their file extensions.
FORMAT_EXTENSIONS = {"jpg": ".jpg", "png": ".png", "tif": ".tif", "webp": ".webp", "bmp": ".bmp"}

_GLOB_CHARS = "*?["


@dataclasses.dataclass
class Source:
    """One input image file and where it sits below the input it was found through."""

    path: Path
    rel: Path


@dataclasses.dataclass
class Job:
    """One planned enhancement: ``source`` -> ``output`` (and ``compare``, a before/after image).

    ``renamed_from`` is the output name the job would have had without a collision, and
    ``renamed_for`` the input whose output holds that name.
    """

    source: Path
    output: Path
    compare: Path | None = None
    renamed_from: Path | None = None
    renamed_for: Path | None = None

    def targets(self) -> list[Path]:
        return [self.output] + ([self.compare] if self.compare is not None else [])


@dataclasses.dataclass
class Plan:
    """Every job of a batch, and every input entry that failed before any work (entry, reason)."""

    jobs: list[Job]
    failures: list[tuple[str, str]]
    out_dir: Path | None
    single_file: bool


def find_sources(inputs: Iterable[str], *, recursive: bool = False, exclude: Path | None = None,
                 previous_suffix: str = "", previous_folder: Path | None = None
                 ) -> tuple[list[Source], list[tuple[str, str]]]:
    """Files, folders and glob patterns -> image files, plus (entry, reason) failures.

    Parameters
    ----------
    inputs : iterable of str
        Image files, folders (their images; sub-folders too with ``recursive``) and glob patterns
        (``**`` matches any depth, as with a shell's globstar).
    recursive : bool
        Descend into sub-folders of folder inputs (symbolic links to folders are not followed,
        so a link loop cannot make the walk endless).
    exclude : Path, optional
        The output folder: images that folders and patterns find in it are not inputs, so a
        re-run does not enhance its own outputs (files named one by one always are).
    previous_suffix : str
        Files whose name ends with this suffix (before the extension, perhaps followed by a
        collision number and ``-compare``) and whose input (the same name without it) is in the
        same folder are outputs of an earlier run written beside their input with ``--suffix``;
        they are not inputs (their input's job plans them again). A file that only looks like
        one (``a_s.jpg`` with no ``a.*`` beside it, or outside ``previous_folder``) is an input
        like any other.
    previous_folder : Path, optional
        Where earlier outputs written with ``--suffix`` can be (the output folder, which is an
        input folder): ``previous_suffix`` applies to files in it (and below it) only.

    Returns
    -------
    sources : list of Source
        In input order; a folder's files in natural order (``2.jpg`` before ``10.jpg``); each
        ``rel`` is the path below the folder (or below the glob's fixed leading folders).
    failures : list of (str, str)
        Missing paths, patterns that match nothing, folders that cannot be listed or hold no
        image, files whose link cannot be followed (a loop, no permission).
    """
    found: list[Source] = []
    failures: list[tuple[str, str]] = []
    seen: set[str] = set()
    excl = _real(exclude) if exclude is not None else None
    # an earlier run's outputs: <stem><suffix>, numbered after a collision, and compare images
    previous = re.compile(f"(.*){re.escape(previous_suffix)}(-[0-9]+)?(-compare)?") if previous_suffix else None
    previous_in = _real(previous_folder) if previous_folder is not None else None

    def add(path: Path, rel: Path, *, found_by_search: bool = True) -> None:
        key = os.path.abspath(path)
        if key in seen:
            return
        if found_by_search and excl is not None and _inside(_real(path), excl):
            return
        earlier = None
        if previous is not None and (previous_in is None or _inside(_real(path), previous_in)):
            earlier = previous.fullmatch(path.stem)
        if earlier is not None and _has_image_named(path.parent, earlier.group(1)):
            return
        seen.add(key)
        found.append(Source(path, rel))

    for item in inputs:
        p = Path(item)
        if _is_dir(p):
            files, problems = _walk(p, recursive=recursive, skip=excl)
            failures.extend(problems)
            if not files and not problems:
                failures.append((item, _empty_folder_reason(p, recursive)))
            for f in files:
                add(f, f.relative_to(p))
        elif os.path.lexists(p):
            add(p, Path(p.name), found_by_search=False)  # named: never dropped in silence
        elif any(ch in item for ch in _GLOB_CHARS):
            base = _glob_base(item)
            matches = sorted(glob.glob(item, recursive=True), key=natural_key)
            files = [Path(m) for m in matches if is_image_path(m) and not _is_dir(Path(m))]
            if not files:
                failures.append((item, "pattern matches no image files"))
            for f in files:
                add(f, _relative(f, base))
        else:
            failures.append((item, "no such file or folder"))
    return found, failures


def plan_batch(inputs: Iterable[str], output: Path | None, *, recursive: bool = False, fmt: str = "same",
               suffix: str = "", compare: bool = False) -> Plan:
    """Plan a whole batch: sources, output names (collisions disambiguated), refusals.

    Parameters
    ----------
    inputs : iterable of str
        As for :func:`find_sources`; ``"-"`` alone means standard input.
    output : Path or None
        An output folder (created later if missing), one output file (when the inputs give exactly
        one image file and no folder), ``-`` (standard output), or None for ``./enhanced``.
    fmt : {"same", "jpg", "png", "tif", "webp", "bmp"}
        Output format; "same" keeps each input's extension.
    suffix : str
        Appended to each output's name before the extension (``a.jpg`` -> ``a_x.jpg``).
    compare : bool
        Also plan a before/after image ``<output name>-compare.<ext>`` per job.

    Returns
    -------
    Plan

    Raises
    ------
    SiceError
        The command as a whole cannot work: ``-o`` names one file but several images or a
        folder were given; ``-o`` is an input folder and outputs would replace the inputs;
        standard input mixed with other inputs.
    """
    inputs = list(inputs)
    if fmt != "same" and fmt not in FORMAT_EXTENSIONS:
        raise ValueError(f"fmt must be 'same' or one of {', '.join(FORMAT_EXTENSIONS)}, got {fmt!r}")
    if STDIO in inputs:
        if len(inputs) > 1:
            raise SiceError("'-' (standard input) cannot be mixed with other inputs")
        target = output if output is not None else Path(STDIO)
        if str(target) != STDIO and (_is_dir(target) or not is_image_path(target)):
            raise SiceError(f"{target}: with standard input, -o must be one image file or '-' (standard output)")
        if compare and str(target) == STDIO:
            raise SiceError("--compare needs an output file, not standard output")
        job = Job(Path(STDIO), target, _compare_path(target) if compare else None)
        return Plan([job], [], None, single_file=True)

    names_file = output is not None and (str(output) == STDIO or (is_image_path(output) and not _is_dir(output)))
    folder_inputs = [i for i in inputs if _is_dir(Path(i))]
    out_dir = None if names_file else (output if output is not None else Path("enhanced"))
    beside = [i for i in folder_inputs if out_dir is not None and _real(Path(i)) == _real(out_dir)]
    if beside and not suffix:
        raise SiceError(f"{out_dir}: the output folder is the input folder {beside[0]}: outputs would replace "
                        "or mix with the inputs; choose another -o, or add --suffix to write beside the inputs")
    sources, failures = find_sources(inputs, recursive=recursive,
                                     exclude=out_dir if out_dir is not None and not beside else None,
                                     previous_suffix=suffix if beside else "",
                                     previous_folder=out_dir if beside else None)
    if names_file:
        if folder_inputs or len(sources) > 1:
            what = f"the folder {folder_inputs[0]}" if folder_inputs else f"{len(sources)} images"
            raise SiceError(f"{output}: -o names one file, but the inputs give {what}; "
                            "give an output folder instead (it is created if missing)")
        if suffix:
            raise SiceError("--suffix applies to outputs in a folder; -o already names the output file")
        if str(output) == STDIO and compare:
            raise SiceError("--compare needs an output file, not standard output")
        jobs = [Job(s.path, output, _compare_path(output) if compare else None) for s in sources]
        return Plan(_refuse_inputs(jobs, sources, failures), failures, None, single_file=True)

    jobs = []
    taken: dict[str, Path] = {}
    for s in sources:
        wanted = out_dir / _output_rel(s.rel, fmt, suffix)
        output_path = wanted
        holder = None
        n = 1
        while True:
            names = [output_path] + ([_compare_path(output_path)] if compare else [])
            clash = next((taken[_key(p)] for p in names if _key(p) in taken), None)
            if clash is None:
                break
            holder = holder or clash
            n += 1
            output_path = wanted.with_name(f"{wanted.stem}-{n}{wanted.suffix}")
        for p in names:
            taken[_key(p)] = s.path
        jobs.append(Job(s.path, output_path, names[1] if compare else None,
                        renamed_from=wanted if holder is not None else None, renamed_for=holder))
    return Plan(_refuse_inputs(jobs, sources, failures), failures, out_dir, single_file=False)


def collision_note(job: Job) -> str:
    """One line saying why ``job`` got a numbered name: whose output holds the plain one."""
    return f"{job.source} -> {job.output} ({job.renamed_from} is the output of {job.renamed_for})"


# --------------------------------------------------------------------------------------------
def _output_rel(rel: Path, fmt: str, suffix: str) -> Path:
    ext = rel.suffix
    if fmt != "same":
        ext = FORMAT_EXTENSIONS[fmt]
    elif ext.lower() not in EXTENSIONS:
        ext = ".png"
    return rel.with_name(f"{rel.stem}{suffix}{ext}")


def _compare_path(output: Path) -> Path:
    return output.with_name(f"{output.stem}-compare{output.suffix}")


def _key(path: Path) -> str:
    """How a file system that ignores case and Unicode normal form compares names (macOS,
    Windows, many USB drives): outputs equal under this key would overwrite each other there."""
    return unicodedata.normalize("NFC", os.path.normpath(os.path.abspath(path))).casefold()


def _refuse_inputs(jobs: list[Job], sources: list[Source], failures: list[tuple[str, str]]) -> list[Job]:
    """Drop jobs whose output (or compare image) would overwrite one of the batch's inputs;
    each becomes a failure saying which input."""
    by_real = {_real(s.path): s.path for s in sources}
    by_key = {_key(s.path): s.path for s in sources}
    kept = []
    for job in jobs:
        reason = None
        for t in job.targets():
            if str(t) == STDIO:
                continue
            hit = by_real.get(_real(t))
            if hit is not None and _real(hit) == _real(job.source) or same_file(job.source, t):
                reason = f"{t}: output path is the input file; refusing to overwrite an input"
            elif hit is not None:
                reason = f"{t}: output path is another input of this batch ({hit}); refusing to overwrite an input"
            elif _key(t) in by_key:
                reason = (f"{t}: output name differs from the input {by_key[_key(t)]} only in case or Unicode "
                          "form, so it would overwrite it on a case-insensitive file system")
            if reason:
                break
        if reason is None:
            kept.append(job)
        else:
            failures.append((str(job.source), reason))
    return kept


def _walk(folder: Path, *, recursive: bool, skip: str | None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image entries of ``folder`` (not hidden, not folders; links whatever they point at, so a
    bad link fails when it is read, with its reason), natural order; folders that cannot be
    listed are failures."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        if skip is not None and current != folder and _real(current) == skip:
            continue
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: natural_key(e.name))
        except OSError as exc:
            problems.append((str(current), f"cannot list folder: {exc.strerror or exc}"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:  # a link loop, or a link into a folder we may not search
                is_dir = False
            if is_dir:
                if recursive and not entry.is_symlink():
                    subfolders.append(Path(entry.path))
            elif is_image_path(entry.name):
                files.append(Path(entry.path))
        pending.extend(reversed(subfolders))
    files.sort(key=lambda f: natural_key(f.relative_to(folder).as_posix()))
    return files, problems


def _has_image_named(folder: Path, stem: str) -> bool:
    """Whether ``folder`` holds an image file called ``stem`` with any image extension."""
    return any(is_image_path(p) for p in folder.glob(glob.escape(stem) + ".*"))


def _empty_folder_reason(folder: Path, recursive: bool) -> str:
    if not recursive:
        try:
            if any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(folder)):
                return "no image files in this folder (add -r to search its sub-folders)"
        except OSError:
            pass
    return "no image files in this folder"


def _glob_base(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard (``shots/**/*.jpg`` -> shots)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if any(ch in part for ch in _GLOB_CHARS):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _relative(path: Path, base: Path) -> Path:
    rel = Path(os.path.relpath(path, base))
    return Path(path.name) if rel.parts[0] == ".." else rel


def _is_dir(path: Path) -> bool:
    return os.path.isdir(path)  # never raises: a loop or a denied link is "not a folder"


def _real(path: Path | None) -> str:
    """The canonical path (links followed as far as they go; never raises on a loop)."""
    return os.path.realpath(path)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def stat_problem(path: Path) -> str | None:
    """Why ``path`` cannot be opened as a file, in words, or None when it can be looked at.

    Catches what would otherwise surface as an exception from deep inside a reader: a symbolic
    link loop (ELOOP), a link into a folder without search permission (EACCES), a dangling link.
    """
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if exc.errno == errno.ENOENT:
            return "dangling symbolic link" if os.path.islink(path) else "no such file"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied (a folder on its path cannot be searched)"
        return exc.strerror or str(exc)
    return None
