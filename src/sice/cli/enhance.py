"""``sice enhance INPUT... -o OUT``: files, folders and globs through one loaded model."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import SiceError
from ._common import BatchReport, report_errors


@click.command(name="enhance")
@click.argument("inputs", nargs=-1, required=False)
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=None,
              help="Output folder (created if missing), or a file name when there is one input. "
                   "Default: ./enhanced")
@click.option("-m", "--model", default=None, metavar="NAME|PATH",
              help="Registry name (see 'sice models'), a checkpoint .pt, or an .onnx file. Default: the shipped model.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (torch backend).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime"]), default="auto", show_default=True,
              help="auto: onnxruntime when the model has an ONNX form, else torch.")
@click.option("-r", "--recursive", is_flag=True, help="Descend into sub-folders; the folder structure is kept.")
@click.option("--format", "fmt", type=click.Choice(["same", "jpg", "png", "tif", "webp", "bmp"]), default="same",
              show_default=True, help="Output format.")
@click.option("-q", "--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--overwrite/--skip-existing", default=False, show_default=True,
              help="Existing outputs are complete (writes are atomic), so by default they are skipped: "
                   "re-running an interrupted batch only does what is left.")
@click.option("--tile", type=click.IntRange(16, None), default=512, show_default=True,
              help="Tile size for full-resolution networks (memory vs. speed).")
@click.option("--max-pixels", type=click.IntRange(1, None), default=None,
              help="Refuse larger images (default 200 MP or $SICE_MAX_PIXELS).")
@click.option("--sample", is_flag=True, help="Enhance the package's built-in sample photo (a quick first try).")
@report_errors
def command(inputs, output, model, device, backend, recursive, fmt, quality, overwrite, tile, max_pixels, sample):
    """Enhance badly exposed photos: under- or over-exposed, any size.

    INPUTS are image files, folders (their images; -r for sub-folders) or glob patterns.
    Each output keeps the input's name, size, orientation, bit depth and metadata.
    """
    from ..enhancement import Enhancer, enhance_file, expand_inputs
    from ..io import EXTENSIONS, is_image_path

    if sample:
        from ..samples import sample_path

        inputs = tuple(inputs) + (str(sample_path()),)
    if not inputs:
        raise click.UsageError("give at least one INPUT (file, folder or glob), or --sample")
    single_file_out = (output is not None and len(inputs) == 1 and is_image_path(output)
                       and not Path(inputs[0]).is_dir() and not output.is_dir())
    out_dir = output.parent if single_file_out else (output or Path("enhanced"))
    files, problems = expand_inputs(inputs, recursive=recursive, exclude=None if single_file_out else out_dir)
    report = BatchReport()
    for item, reason in problems:
        report.failure(item, reason)
    if not files:
        inside = [i for i in inputs if Path(i).is_dir() and _is_within(out_dir, Path(i)) or
                  Path(i).is_dir() and _is_within(Path(i), out_dir)]
        if inside and not problems:
            raise SiceError(f"{out_dir}: the output folder is (or is inside) the input folder {inside[0]}; "
                            "its images would be taken for outputs - choose another -o")
        report.finish()
        raise SiceError("no input images found")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SiceError(f"{out_dir}: cannot create output folder: {exc.strerror or exc}") from None

    _remove_stale_temp_files(out_dir, recursive)
    enhancer = Enhancer(model, device=device, backend=backend, tile=tile)
    ext_for = {"jpg": ".jpg", "png": ".png", "tif": ".tif", "webp": ".webp", "bmp": ".bmp"}
    skipped = 0
    progress = _progress(files)
    for src, rel in progress:
        if single_file_out:
            dst = output
        else:
            dst = out_dir / rel
            if fmt != "same":
                dst = dst.with_suffix(ext_for[fmt])
            elif dst.suffix.lower() not in EXTENSIONS:
                dst = dst.with_suffix(".png")
        if dst.exists() and not overwrite and not single_file_out:
            skipped += 1
            continue
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            enhance_file(src, dst, enhancer=enhancer, quality=quality, max_pixels=max_pixels)
            report.success()
        except Exception as exc:  # one bad file must not stop a library-sized batch
            reason = str(exc) if isinstance(exc, SiceError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, SiceError) and reason.startswith(str(src)):
                reason = reason[len(str(src)) + 2:]
            report.failure(str(src), reason)
    if skipped:
        click.echo(f"skipped {skipped} existing output(s) (use --overwrite to redo them)", err=True)
    if len(files) > 1 or report.failed or skipped:
        report.finish()
    elif single_file_out or len(files) == 1:
        click.echo(str(dst), err=True)


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def _remove_stale_temp_files(out_dir: Path, recursive: bool) -> None:
    """A killed run can leave hidden ``.<name>.<random>.part`` files (never outputs: they are
    renamed into place only when complete); clear them so re-runs leave a clean folder."""
    pattern = "**/.*.part" if recursive else ".*.part"
    for p in out_dir.glob(pattern):
        try:
            p.unlink()
        except OSError:
            pass


def _progress(files):
    if len(files) <= 1:
        return files
    from tqdm import tqdm

    return tqdm(files, unit="img", desc="enhance", dynamic_ncols=True)
