"""``sice enhance INPUT... -o OUT``: files, folders, globs and standard input through one loaded model."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ..errors import SiceError
from ._common import BatchReport, allow_fast_exit, cluster_option, one_line, report_errors

_EXAMPLES = """
\b
Examples:
  sice enhance photo.jpg -o out/            one file -> out/photo.jpg
  sice enhance ~/Pictures/trip -r -o out/   a folder tree; the structure is kept
  sice enhance "shots/**/*.png" -o out/     a recursive glob (quote it)
  sice enhance dark.jpg -o bright.jpg --strength 0.6 --compare
  sice enhance photos/ -o photos/ --suffix _enhanced     beside the inputs
  cat dark.jpg | sice enhance - -o - > bright.jpg        standard input and output
"""


def _check_device(ctx, param, value: str) -> str:
    if value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise click.BadParameter(f"{value!r}: use cpu, cuda or cuda:N")


@click.command(name="enhance", epilog=_EXAMPLES)
@click.argument("inputs", nargs=-1, required=False, metavar="[INPUT]...")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="Output folder (created if missing; default ./enhanced), or one output file when the "
                   "inputs give one image, or '-' for standard output.")
@click.option("-m", "--model", default=None, metavar="NAME|PATH",
              help="Registry name (see 'sice models'), a checkpoint .pt, or an .onnx file. "
                   "Default: the shipped model.")
@click.option("-s", "--strength", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="How much of the model's change to apply, 0-1, in its own tone domain: its gains are "
                   "scaled in stops before they reach the photo (0.5 = half the stops, 0 = the photo unchanged; "
                   "the default model's curves stay pinned at black and white); not a blend of input and output.")
@click.option("--compare", is_flag=True,
              help="Also write NAME-compare.EXT next to each output: the input and the output side by side.")
@click.option("--suffix", default="", metavar="TEXT",
              help="Add TEXT to each output name: photo.jpg -> photoTEXT.jpg (e.g. --suffix _enhanced). "
                   "With a suffix, -o may be the input folder.")
@click.option("-r", "--recursive", is_flag=True, help="Descend into sub-folders; the folder structure is kept.")
@click.option("--format", "fmt", type=click.Choice(["same", "jpg", "png", "tif", "webp", "bmp"]), default="same",
              show_default=True, help="Output format.")
@click.option("--quality", type=click.IntRange(1, 100), default=None,
              help="JPEG/WebP quality 1-100. Default: a JPEG keeps its input's quality and chroma subsampling "
                   "(estimated from its quantisation tables); other outputs 95.")
@click.option("--overwrite/--skip-existing", default=False, show_default=True,
              help="Existing outputs are complete (writes are atomic), so by default they are skipped: "
                   "re-running an interrupted batch only does what is left.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr: no progress bar, notes or summary.")
@click.option("-v", "--verbose", is_flag=True, help="One line per file on stderr: input, output, seconds.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON summary on stdout (every input, its output, status, error) "
                   "instead of the output paths.")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda[:N]", callback=_check_device,
              help="cuda runs the model with torch on the GPU (an error if CUDA is not available).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto", show_default=True,
              help="auto: onnxruntime on the CPU when the model has an ONNX form, else torch.")
# 512 = sice.enhancement.api.DEFAULT_TILE, written out so that 'sice enhance --help' imports no NumPy
# (tests/test_cli_enhance.py checks that they agree)
@click.option("--tile", type=click.IntRange(16, None), default=512, show_default=True,
              help="Tile size for full-resolution networks (memory vs. speed).")
@click.option("--max-pixels", type=click.IntRange(1, None), default=None,
              help="Refuse larger images (default 200 MP or $SICE_MAX_PIXELS).")
@click.option("--sample", is_flag=True,
              help="Enhance the package's built-in sample photo (a quick first try; implies --compare).")
@cluster_option
@report_errors
def command(inputs, output, model, strength, compare, suffix, recursive, fmt, quality, overwrite, quiet, verbose,
            as_json, device, backend, tile, max_pixels, sample, cluster):
    """Enhance badly exposed photos: under- or over-exposed, any size.

    INPUTs are image files, folders (their images; -r for sub-folders), glob patterns
    ("shots/**/*.jpg" searches every depth) or '-' (standard input). Each output keeps the
    input's name, size, orientation, bit depth and metadata.

    Output names are planned for the whole batch before anything is written: when two inputs
    would get the same output (IMG_0001.JPG from two folders; a.jpg and a.png with --format png;
    names that differ only in case), the later one gets a numbered name (IMG_0001-2.JPG) and a
    note says so. An input is never overwritten. Existing outputs are skipped, so a re-run only
    does what is left.

    Output paths go to stdout, one per line (--json: one JSON document); progress, notes and
    errors go to stderr, one line each. The exit status is 1 if any input failed.
    """
    from ..enhancement.batch import Settings, plan_failures
    from ..enhancement.plan import STDIO, plan_batch

    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    if suffix and (os.sep in suffix or "/" in suffix or one_line(suffix) != suffix or suffix.strip() != suffix):
        raise click.BadParameter(f"{one_line(suffix)!r}: a suffix is part of a file name (no '/', control "
                                 "characters or surrounding spaces)", param_hint="--suffix")
    if sample:
        from ..samples import sample_path

        inputs = tuple(inputs) + (str(sample_path()),)
        compare = True
    if not inputs:
        raise click.UsageError("give at least one INPUT (file, folder, glob or '-'), or --sample")
    if as_json and output is not None and str(output) == STDIO:
        raise click.UsageError("--json prints to standard output, which -o - already uses for the image")
    if cluster is not None and (STDIO in inputs or (output is not None and str(output) == STDIO)):
        raise click.UsageError("--cluster works on files: workers cannot read this process's standard input "
                               "or write its standard output")
    plan = plan_batch(inputs, output, recursive=recursive, fmt=fmt, suffix=suffix, compare=compare)
    run = _Run(quiet=quiet, verbose=verbose, as_json=as_json,
               settings=Settings(strength=strength, quality=quality, max_pixels=max_pixels, overwrite=overwrite),
               options=dict(model=model, device=device, backend=backend, tile=tile, fmt=fmt, cluster=cluster))
    if plan.jobs and str(plan.jobs[0].source) == STDIO:
        for outcome in plan_failures(plan):
            run.outcome(outcome)
        run.stdin_job(plan.jobs[0])
    else:
        run.batch(plan)
    if sample and plan.jobs and plan.jobs[-1].compare is not None and plan.jobs[-1].compare.exists():
        run.note(f"the sample input is {plan.jobs[-1].source}; {plan.jobs[-1].compare} shows it (before) "
                 "next to its enhanced version (after)")
    if cluster is None:  # a cluster's client shuts down in the normal exit
        allow_fast_exit()
    run.finish(single=len(plan.jobs) + len(plan.failures) <= 1)


class _Run:
    """One ``sice enhance`` run: prints the batch's outcomes where they belong, records them for --json."""

    def __init__(self, *, quiet: bool, verbose: bool, as_json: bool, settings, options: dict):
        self.quiet, self.verbose, self.as_json = quiet, verbose, as_json
        self.settings, self.options = settings, options
        self.report = BatchReport()
        self.records: list[dict] = []
        self.skipped = 0
        self.enhancer = None

    # -- reporting ------------------------------------------------------------------------------
    def outcome(self, o) -> None:
        """Print and record one input's outcome."""
        self.records.append({
            "input": o.source, "output": None if o.output is None else str(o.output), "status": o.status,
            "compare": None if o.compare is None else str(o.compare),
            "renamed_from": None if o.renamed_from is None else str(o.renamed_from),
            "quality": o.quality, "seconds": None if o.seconds is None else round(o.seconds, 3), "error": o.error})
        if o.status == "failed":
            self.report.failure(o.source, o.error)
            return
        if o.status == "skipped":
            self.skipped += 1
            if self.verbose:
                self.note(f"{o.source} -> {o.output} (exists: skipped)")
        else:
            self.report.success()
            if self.verbose:
                self.note(f"{o.source} -> {o.output} ({o.seconds:.2f} s)")
        if str(o.output) != "-":
            self.output_path(o.output)

    def note(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"sice: {one_line(text)}", err=True)

    def output_path(self, path) -> None:
        """An output's path on stdout: the line scripts read (escaped like every message)."""
        if not self.as_json:
            click.echo(one_line(path))

    # -- the work ---------------------------------------------------------------------------------
    def load(self):
        if self.enhancer is None:
            from ..enhancement import Enhancer

            o = self.options
            self.enhancer = Enhancer(o["model"], device=o["device"], backend=o["backend"], tile=o["tile"])
            if self.verbose:
                self.note(f"model {self.enhancer.name} ({self.enhancer.backend} backend, {o['device']})")
        return self.enhancer

    def batch(self, plan) -> None:
        from ..enhancement.batch import ModelSpec, enhance_jobs, prepare_outputs, triage
        from ..enhancement.plan import STDIO, collision_note

        if not plan.jobs and not plan.failures:
            raise SiceError("no input images found")
        for job in plan.jobs:
            if job.renamed_from is not None:
                self.note(f"renamed: {collision_note(job)}")
        todo, known = triage(plan, self.settings)
        for outcome in known:
            self.outcome(outcome)
        if not todo:
            return
        prepare_outputs(plan, todo)
        if str(todo[0].output) == STDIO:  # one input, to standard output
            self.run_job(todo[0])
            return
        o = self.options
        spec = None
        if o["cluster"] is not None:  # every worker runs the backend this process resolves
            spec = ModelSpec(o["model"], device=o["device"], backend=self.load().backend, tile=o["tile"])
        outcomes = enhance_jobs(todo, self.settings, load_enhancer=self.load, spec=spec, cluster=o["cluster"])
        for outcome in _progress(outcomes, len(todo), enabled=not (self.quiet or self.verbose)):
            self.outcome(outcome)

    def run_job(self, job) -> None:
        from ..enhancement.batch import Outcome, enhance_job, failure_reason

        if str(job.output) != "-":
            self.outcome(enhance_job(job, self.load, self.settings))
            return
        start = time.perf_counter()
        try:
            self.to_stdout(job.source)
        except Exception as exc:  # reported like any failed file
            self.outcome(Outcome.of(job, job.source, "failed", error=failure_reason(exc, job.source)))
            return
        self.outcome(Outcome.of(job, job.source, "written", seconds=time.perf_counter() - start))

    def to_stdout(self, src: Path) -> None:
        """Enhance ``src`` and write the encoded image to standard output."""
        from ..enhancement import enhance_to_bytes

        o, settings = self.options, self.settings
        if sys.stdout.isatty():
            raise SiceError("refusing to write image data to a terminal: redirect standard output, or give -o FILE")
        data, _ = enhance_to_bytes(src, enhancer=self.load(), strength=settings.strength, quality=settings.quality,
                                   max_pixels=settings.max_pixels, format=None if o["fmt"] == "same" else o["fmt"])
        stream = sys.stdout.buffer
        stream.write(data)
        stream.flush()

    def stdin_job(self, job) -> None:
        """``-`` as the input: standard input is spooled to a temporary file and read like one;
        messages name it ``<stdin>``."""
        import tempfile

        from ..io import spool_stream

        with tempfile.TemporaryDirectory(prefix="sice-stdin-") as folder:
            src = spool_stream(sys.stdin.buffer, folder)
            job.source = src
            try:
                self.run_job(job)
            finally:
                for r in self.records:
                    r["input"] = "-"
                    if r["error"]:
                        r["error"] = r["error"].replace(str(src), "<stdin>")
                self.report.failed = [("<stdin>", reason.replace(str(src), "<stdin>"))
                                      for _, reason in self.report.failed]

    # -- the end ------------------------------------------------------------------------------------
    def finish(self, *, single: bool) -> None:
        if self.as_json:
            e = self.enhancer
            click.echo(json.dumps({
                "model": e.name if e else None, "backend": e.backend if e else None,
                "device": self.options["device"], "strength": self.settings.strength,
                "written": self.report.ok, "skipped": self.skipped, "failed": len(self.report.failed),
                "files": self.records}, indent=2))
        if self.skipped:
            self.note(f"skipped {self.skipped} existing output(s) (use --overwrite to redo them)")
        if self.report.failed or (not single and not self.quiet) or self.skipped:
            self.report.finish(summary=not self.quiet)


def _progress(outcomes, total: int, *, enabled: bool):
    """A progress bar over the outcomes of the jobs that do work (skipped outputs are not
    counted), on a terminal only."""
    if total <= 1 or not enabled:
        return outcomes
    from tqdm import tqdm

    return tqdm(outcomes, total=total, unit="img", desc="enhance", dynamic_ncols=True, disable=None)
