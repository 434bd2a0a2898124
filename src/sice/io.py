"""Image files in and out: the one place in sice that decodes and encodes.

Everything else works on arrays. Reading applies the EXIF orientation and keeps the metadata
(EXIF, ICC profile) and the bit depth, so that writing the enhanced pixels back ``like`` the
source gives a file a photographer would accept: same size, orientation, bit depth, format and
metadata.

Decoders: libjpeg-turbo through simplejpeg for JPEG (strict: data that ends early is an error,
not grey rows), Pillow for the other 8-bit files (PNG, BMP, WebP, 8-bit TIFF) and for headers and
metadata, OpenCV for 16-bit PNG (Pillow reduces 16-bit colour PNG to 8 bits), tifffile for 16-bit
and float TIFF. Every file is read through one handle with a byte budget set by its declared
size (see :func:`read_image`). Encoders: OpenCV's libjpeg-turbo for 8-bit RGB JPEG (the file
Pillow writes, metadata segments added here), Pillow for the other 8-bit files, sice's own PNG
writer for 16-bit PNG, tifffile for 16-bit and float TIFF.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageFile as PILImageFile

from .errors import ImageReadError, ImageWriteError
from .files import atomic_write_bytes

#: Formats sice reads and writes, by Pillow format name, with their file extensions.
FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe"),
    "PNG": (".png",),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp",),
    "WEBP": (".webp",),
}
EXTENSIONS: dict[str, str] = {ext: fmt for fmt, exts in FORMATS.items() for ext in exts}

#: Default decompression-bomb guard: 200 megapixels (a 24 MP photo is far below; a crafted
#: header claiming 100k x 100k is far above). Override with ``max_pixels=`` or $SICE_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 200_000_000

_EXIF_ORIENTATION = 0x0112
_TIFF_ICC_TAG = 34675

# We do the pixel-limit check ourselves (with a message naming the file), so Pillow's own
# warning/exception must not fire first; truncated files must fail, not decode half-grey.
PILImage.MAX_IMAGE_PIXELS = None
PILImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclasses.dataclass
class ImageFile:
    """Decoded pixels plus what is needed to write a faithful output.

    Attributes
    ----------
    pixels : (H, W, C) ndarray
        C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); uint8, uint16 or float32. EXIF
        orientation already applied (the image is upright).
    format : str
        ``"JPEG"``, ``"PNG"``, ``"TIFF"``, ``"BMP"`` or ``"WEBP"``.
    bit_depth : int
        8, 16, or 32 (float).
    exif : bytes or None
        Raw EXIF block, orientation reset to 1 (upright), for writing.
    icc : bytes or None
        ICC profile.
    path : Path or None
        Where it was read from.
    """

    pixels: np.ndarray
    format: str
    bit_depth: int
    exif: bytes | None = None
    icc: bytes | None = None
    path: Path | None = None

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)


def max_pixels_default() -> int:
    value = os.environ.get("SICE_MAX_PIXELS")
    if value:
        try:
            return int(float(value))
        except ValueError:
            raise ValueError(f"SICE_MAX_PIXELS must be a number of pixels, got {value!r}") from None
    return DEFAULT_MAX_PIXELS


def format_name(format: str) -> str:
    """A format as :data:`FORMATS` names it (``"jpg"``, ``"jpeg"``, ``"JPG"`` -> ``"JPEG"``);
    ValueError for a format sice does not write."""
    fmt = str(format).upper()
    fmt = "JPEG" if fmt == "JPG" else "TIFF" if fmt == "TIF" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    return fmt


def format_for_path(path: os.PathLike | str) -> str | None:
    """The format that a file extension names (``"JPEG"`` for ``x.JPG``), or None."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def is_image_path(path: os.PathLike | str) -> bool:
    return format_for_path(path) is not None


def list_images(folder: os.PathLike | str, recursive: bool = False) -> list[Path]:
    """Image files (by extension) in ``folder``, sorted naturally (``2.jpg`` before ``10.jpg``)."""
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    files = [p for p in it if is_image_path(p) and not p.name.startswith(".") and (p.is_file() or p.is_symlink())]
    return sorted(files, key=natural_key)


def natural_key(path: os.PathLike | str):
    """Sort key that orders digit runs numerically: ``a2`` < ``a10``."""
    import re

    s = os.fspath(path)
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", s)]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
#: Bytes a decoder may read before the image's size is known (headers and metadata: EXIF, ICC,
#: XMP, text chunks, TIFF tags). Also the allowance for metadata once the size is known.
METADATA_BYTES = 64 << 20

#: Most bytes of compressed data one pixel can need, per format, with margin: 8-bit JPEG with 4
#: components (a DCT block costs at most ~220 bytes), 16-bit RGBA PNG with its filter bytes,
#: 32-bit BMP, lossless WebP, uncompressed float64 RGBA TIFF. What a file holds beyond
#: ``pixels * this + METADATA_BYTES`` is never read, so memory follows the pixel limit, not the
#: file size.
MAX_BYTES_PER_PIXEL = {"JPEG": 16, "PNG": 10, "BMP": 8, "WEBP": 10, "TIFF": 36}

#: libjpeg warnings that mean pixels were lost (the decoder fills them with grey); others
#: (extraneous bytes between segments, unknown JFIF revision, ...) leave the picture intact.
_JPEG_DATA_LOSS = ("premature end", "bad huffman code", "bad arithmetic code", "instead of rst",
                   "inconsistent progression")

# JPEG frame markers of arithmetic-coded frames (SOF9-11, 13-15): they can code a flat block in
# under a bit, so the minimum-size check below does not apply to them.
_JPEG_SOF_ARITHMETIC = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7} | _JPEG_SOF_ARITHMETIC


class _ReadBudgetExceeded(Exception):
    """A decoder asked for more bytes than the image's declared size can justify. Not an OSError
    or EOFError, which decoders catch and turn into something else."""


class _BoundedFile(_io.BufferedReader):
    """One opened image file that serves at most ``size`` bytes (its size when opened) and at
    most ``budget`` bytes in all.

    Decoders call ``read(n)`` with ``n`` taken from the file; a plain file allocates all ``n``
    bytes before reading (GiBs for a crafted 600-byte PNG, found by fuzzing), so ``n`` is cut to
    what the file holds. Asking past the budget raises :class:`_ReadBudgetExceeded` and marks
    the file (``exceeded``) in case a library swallows the exception.
    """

    def __init__(self, raw: _io.FileIO, size: int, budget: int):
        super().__init__(raw, buffer_size=1 << 16)
        self.size = size
        self.budget = budget
        self.spent = 0
        self.exceeded = False

    def allow(self, extra: int) -> None:
        """Let decoders read ``extra`` more bytes from now on."""
        self.budget = self.spent + int(extra)

    @property
    def available(self) -> int:
        """Bytes that may still be read from here: to the end of the file or of the budget."""
        return max(0, min(self.size - self.tell(), self.budget - self.spent))

    def _grant(self, n: int | None) -> int:
        left = max(0, self.size - self.tell())
        n = left if n is None or n < 0 else min(n, left)
        if self.spent + n > self.budget:
            self.exceeded = True
            raise _ReadBudgetExceeded(f"asked for byte {self.spent + n:,} of a budget of {self.budget:,}")
        self.spent += n
        return n

    def read(self, n: int | None = -1) -> bytes:
        return super().read(self._grant(n))

    def read1(self, n: int = -1) -> bytes:
        return super().read1(self._grant(n))

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        return super().readinto(view[: self._grant(len(view))])

    def readinto1(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        return super().readinto1(view[: self._grant(len(view))])


def _open_file(path: Path) -> _BoundedFile:
    """Open ``path`` once for everything that follows: size, type and every byte decoded come
    from this handle, so a file renamed over ``path`` meanwhile cannot slip past the checks."""
    import errno
    import stat

    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageReadError(path, "dangling symbolic link" if path.is_symlink() else "no such file") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageReadError(path, "symbolic link loop") from None
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError(path, "is a folder, not an image file")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "special")
            raise ImageReadError(path, f"not a regular file ({kind}); sice reads image files only")
        if st.st_size == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
        os.set_blocking(fd, True)
        raw = _io.FileIO(fd, "rb", closefd=True)
        raw.name = os.fspath(path)  # not the descriptor: tifffile takes the name for a path
    except BaseException:
        os.close(fd)
        raise
    return _BoundedFile(raw, st.st_size, METADATA_BYTES)


def read_image(path: os.PathLike | str, *, max_pixels: int | None = None) -> ImageFile:
    """Decode an image file, upright, with its metadata.

    Parameters
    ----------
    path : path-like
        JPEG, PNG, TIFF, BMP or WebP file.
    max_pixels : int, optional
        Refuse images with more pixels than this (decompression bombs). Default
        :data:`DEFAULT_MAX_PIXELS` or $SICE_MAX_PIXELS.

    Returns
    -------
    ImageFile

    Raises
    ------
    ImageReadError
        Missing, not a regular file, unreadable, not an image, truncated (also when the data ends
        early behind an intact end marker), unsupported mode or format, animated, over the pixel
        limit, holding more data than its size justifies, or with NaN/Inf in float pixels. The
        message is one line and starts with the path.

    Notes
    -----
    The file is opened once; its size, header and pixels all come from that handle. At most
    ``METADATA_BYTES`` are read before the header gives the image size, and at most
    ``pixels * MAX_BYTES_PER_PIXEL + METADATA_BYTES`` after, whatever the file's size. Of a
    multi-page TIFF the first page is read, with a warning naming the file.
    """
    path = Path(path)
    limit = max_pixels_default() if max_pixels is None else int(max_pixels)
    with _open_file(path) as fh, _quiet_tifffile():
        try:
            image = _read_open_file(path, fh, limit)
        except _ReadBudgetExceeded:
            image = None
        if fh.exceeded:  # also when a library caught the exception and went on
            raise ImageReadError(path, f"holds more data than its image size justifies ({fh.size:,} bytes; "
                                       "padded or corrupt file); nothing past "
                                       f"{fh.budget:,} bytes was read")
    return image


def _read_open_file(path: Path, fh: _BoundedFile, limit: int) -> ImageFile:
    head = fh.peek(30)[:30]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        _prepare_webp(path, fh, head, limit)
    try:
        pil = PILImage.open(fh)
    except PILImage.UnidentifiedImageError:
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            # float or multi-sample TIFFs that Pillow cannot open: tifffile can
            return _read_tiff_only(path, fh, limit)
        raise ImageReadError(path, "not an image file, or a format sice cannot read") from None
    except (MemoryError, _ReadBudgetExceeded):
        raise
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or _one_line(exc)}") from None
    except Exception as exc:  # fuzzing: Pillow's plugins raise ValueError etc. on crafted headers
        raise ImageReadError(path, f"cannot open: corrupt or unsupported file ({_one_line(exc)})") from None
    with pil:
        fmt = pil.format
        if fmt == "MPO":  # multi-picture JPEG from some cameras: the first picture is the photo
            fmt = "JPEG"
        if fmt not in FORMATS:
            raise ImageReadError(path, f"unsupported format {fmt} (supported: {', '.join(FORMATS)})")
        w, h = pil.size
        _check_pixels(path, w, h, limit)
        try:
            n_frames = getattr(pil, "n_frames", 1)
        except (MemoryError, _ReadBudgetExceeded):
            raise
        except Exception as exc:  # fuzzing: counting TIFF frames walks every IFD (TypeError, ...)
            raise ImageReadError(path, f"cannot decode: corrupt {fmt} data ({_one_line(exc)})") from None
        if n_frames > 1 and fmt != "JPEG" and fmt != "TIFF":
            raise ImageReadError(path, f"animated {fmt} ({n_frames} frames) is not supported")
        if n_frames > 1 and fmt == "TIFF":
            _warn_pages(path, n_frames)
        exif_obj, exif_readable = _read_exif(pil)
        icc = pil.info.get("icc_profile") or None
        # JPEG metadata precedes the scan data and was read while opening; others may follow the pixels
        fh.allow(w * h * MAX_BYTES_PER_PIXEL[fmt] + (1 << 20 if fmt == "JPEG" else METADATA_BYTES))
        try:
            pixels, bit_depth = _decode(path, fh, pil, fmt, limit)
        except (ImageReadError, MemoryError, _ReadBudgetExceeded):
            raise
        except Exception as exc:  # decoders raise many types on corrupt data (fuzzing found
            # zlib.error, ZeroDivisionError and TypeError besides OSError/ValueError/struct.error)
            reason = _one_line(exc)
            if "truncated" in reason.lower() or isinstance(exc, (EOFError, struct.error)):
                reason = f"truncated or corrupt {fmt} data ({reason})"
            raise ImageReadError(path, f"cannot decode: {reason}") from None
    _check_decoded(path, pixels, w, h)
    if not exif_readable:  # said only for a picture that is kept: a failed read has its own line
        warnings.warn(f"{path}: unreadable EXIF ignored", stacklevel=3)
    orientation = 1
    exif_bytes = None
    if exif_obj is not None:
        orientation = _orientation(exif_obj)
        if orientation != 1:
            exif_obj[_EXIF_ORIENTATION] = 1
        try:
            exif_bytes = exif_obj.tobytes() if len(exif_obj) else None
        except Exception:  # corrupt EXIF must not cost the user the picture
            exif_bytes = None
    pixels = apply_orientation(pixels, orientation)
    return ImageFile(np.ascontiguousarray(pixels), fmt, bit_depth, exif_bytes, icc, path)


def _check_pixels(path: Path, w: int, h: int, limit: int) -> None:
    if w * h > limit:
        raise ImageReadError(
            path, f"{w}x{h} = {w * h / 1e6:.0f} megapixels exceeds the limit of {limit / 1e6:.0f} megapixels "
            "(raise it with --max-pixels or SICE_MAX_PIXELS if the file is trusted)")
    if w < 1 or h < 1:
        raise ImageReadError(path, f"invalid size {w}x{h}")


def _check_decoded(path: Path, pixels: np.ndarray, w: int, h: int) -> None:
    """What a decoder returned is what the header promised: complete and, for float data, finite."""
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(path, f"unsupported layout {pixels.shape}")
    if pixels.shape[:2] != (h, w):
        raise ImageReadError(path, f"decoded {pixels.shape[1]}x{pixels.shape[0]} pixels, the header says {w}x{h}")
    if pixels.dtype.kind == "f":
        bad = int(pixels.size - np.count_nonzero(np.isfinite(pixels)))
        if bad:
            raise ImageReadError(path, f"{bad} of {pixels.size} float samples are NaN or infinite; "
                                       "sice needs finite values (replace them in the source)")


def _warn_pages(path: Path, pages: int) -> None:
    warnings.warn(f"{path}: TIFF holds {pages} pages; only the first is read (the others are ignored)",
                  stacklevel=4)


def _prepare_webp(path: Path, fh: _BoundedFile, head: bytes, limit: int) -> None:
    """Pillow reads a whole WebP file before it knows the image size: the size is checked here
    first, and the file ends where its RIFF container says (trailing bytes are never read)."""
    riff_end = 8 + struct.unpack_from("<I", head, 4)[0]
    fh.size = min(fh.size, riff_end)
    size = _webp_size(head)
    if size is not None:
        _check_pixels(path, *size, limit)
        fh.allow(size[0] * size[1] * MAX_BYTES_PER_PIXEL["WEBP"] + METADATA_BYTES)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first chunk of a WebP file (RIFF header + 18 bytes), if known.

    Written by hand because Pillow only reports the size after reading the whole file; the
    layouts are those of the WebP container specification (VP8, VP8L, VP8X chunks)."""
    if len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(head[24:27], "little")
        h = 1 + int.from_bytes(head[27:30], "little")
        return w, h
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF)
    return None


def _one_line(exc: BaseException) -> str:
    """An exception as one line for an error message (library messages may span lines)."""
    return " ".join((str(exc) or type(exc).__name__).split())


def _orientation(exif) -> int:
    """The EXIF orientation 1-8; 1 when it is missing or not a number (corrupt EXIF must not
    cost the picture: fuzzing found tuples and strings there)."""
    try:
        value = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except (TypeError, ValueError, OverflowError):
        return 1
    return value if 1 <= value <= 8 else 1


def _read_tiff_only(path: Path, fh: _BoundedFile, limit: int) -> ImageFile:
    import tifffile

    try:
        fh.seek(0)
        with tifffile.TiffFile(fh) as tif:
            page = tif.pages[0]
            _check_tiff_size(path, page.shape, limit)
            icc_tag = page.tags.get(_TIFF_ICC_TAG)
            icc = bytes(icc_tag.value) if icc_tag is not None else None
            pages = len(tif.pages)
    except (ImageReadError, MemoryError, _ReadBudgetExceeded):
        raise
    except Exception as exc:  # tifffile raises several types for corrupt files
        raise ImageReadError(path, f"cannot decode: corrupt TIFF ({_one_line(exc)})") from None
    if pages > 1:
        _warn_pages(path, pages)
    dims = [int(d) for d in page.shape]
    fh.allow(int(np.prod(dims, dtype=object)) * 8 + METADATA_BYTES)
    decoded = _decode_tiff(path, fh, limit)
    if decoded is None:
        raise ImageReadError(path, "unsupported TIFF variant")
    pixels = decoded[0]
    _check_decoded(path, pixels, pixels.shape[1], pixels.shape[0])
    return ImageFile(np.ascontiguousarray(pixels), "TIFF", decoded[1], None, icc, path)


def _read_exif(pil: PILImage.Image):
    """(EXIF, True), or (None, False) for a corrupt EXIF block: the picture is kept without it."""
    try:
        return pil.getexif(), True
    except _ReadBudgetExceeded:
        raise
    except Exception:
        return None, False


def _decode(path: Path, fh: _BoundedFile, pil: PILImage.Image, fmt: str, limit: int) -> tuple[np.ndarray, int]:
    if fmt == "JPEG":
        return _decode_jpeg(path, fh, pil), 8
    if fmt == "PNG":
        fh.seek(0)
        head = fh.read(26)
        if len(head) == 26 and head[24] == 16:  # IHDR bit depth
            arr = _decode_cv2_16(path, fh)
            if head[25] == 4 and arr.shape[2] == 4:  # OpenCV expands grey+alpha to BGRA
                arr = np.ascontiguousarray(arr[..., [0, 3]])
            return arr, 16
    if fmt == "TIFF":
        decoded = _decode_tiff(path, fh, limit)
        if decoded is not None:
            return decoded
    pil.load()
    mode = pil.mode
    if mode == "P" or mode == "PA":
        mode_to = "RGBA" if ("transparency" in pil.info or mode == "PA") else "RGB"
        im = pil.convert(mode_to)
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = pil.convert("RGB")
    elif mode == "1":
        im = pil.convert("L")
    elif mode in ("L", "LA", "RGB", "RGBA"):
        im = pil
    elif mode == "RGBa":
        im = pil.convert("RGBA")
    elif mode == "La":
        im = pil.convert("LA")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(pil, dtype=np.uint16)
        return arr[..., None], 16
    elif mode == "I":
        arr = np.asarray(pil)
        if arr.min() >= 0 and arr.max() <= 65535:
            return arr.astype(np.uint16)[..., None], 16
        raise ImageReadError(path, "32-bit integer images are not supported")
    elif mode == "F":
        return np.asarray(pil, dtype=np.float32)[..., None], 32
    else:
        raise ImageReadError(path, f"unsupported pixel mode {mode}")
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr, 8


def _decode_jpeg(path: Path, fh: _BoundedFile, pil: PILImage.Image) -> np.ndarray:
    """JPEG pixels through libjpeg-turbo (simplejpeg) in strict mode.

    Pillow's JPEG decoder ignores libjpeg's warnings, so a file whose data ends early behind an
    intact end marker decodes "fine" with the missing rows grey; simplejpeg reports them. Its
    pixels equal Pillow's (same libjpeg-turbo, same IDCT and upsampling). CMYK files are checked
    the same way and converted by Pillow, which knows Adobe's inverted CMYK.
    """
    import simplejpeg

    w, h = pil.size
    fh.seek(0)
    data = fh.read(fh.available)
    _check_jpeg_size(path, data, w, h)
    colorspace = {"L": "GRAY", "RGB": "RGB"}.get(pil.mode, "CMYK")
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace=colorspace, strict=True)
    except ValueError as exc:
        reason = _one_line(exc)
        if any(s in reason.lower() for s in _JPEG_DATA_LOSS):
            raise ImageReadError(path, f"cannot decode: truncated or corrupt JPEG data ({reason}); "
                                       "the picture is incomplete") from None
        try:  # a harmless warning (extraneous bytes, unknown JFIF version, ...): decode anyway
            arr = simplejpeg.decode_jpeg(data, colorspace=colorspace, strict=False)
        except ValueError as exc2:
            raise ImageReadError(path, f"cannot decode: corrupt JPEG data ({_one_line(exc2)})") from None
    if colorspace == "CMYK":
        pil.load()
        arr = np.asarray(pil.convert("RGB"))
    return arr[..., None] if arr.ndim == 2 else arr


def _check_jpeg_size(path: Path, data: bytes, w: int, h: int) -> None:
    """Refuse, before allocating anything, a JPEG too short for the size it declares: Huffman
    coding spends at least one bit per 8x8 block of the full-resolution component (the DC
    difference), so a w x h frame needs at least w * h / 512 bytes."""
    if len(data) >= w * h / 512 or _jpeg_frame_marker(data) in _JPEG_SOF_ARITHMETIC:
        return
    raise ImageReadError(path, f"{len(data):,} bytes cannot hold the {w}x{h} pixels the header declares "
                               f"(at least {w * h // 512:,} needed): truncated or corrupt JPEG")


def _jpeg_frame_marker(data: bytes) -> int | None:
    """The SOF marker (0xC0-0xCF) of a JPEG, found by walking the header segments."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_SOF:
            return marker
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


def _decode_cv2_16(path: Path, fh: _BoundedFile) -> np.ndarray:
    import cv2

    fh.seek(0)
    data = np.frombuffer(fh.read(fh.available), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None:
        raise ImageReadError(path, "cannot decode: truncated or corrupt 16-bit PNG")
    if arr.ndim == 2:
        return arr[..., None]
    if arr.shape[2] == 3:
        return arr[..., ::-1]
    if arr.shape[2] == 4:
        return arr[..., [2, 1, 0, 3]]
    return arr


def _check_tiff_size(path: Path, shape, limit: int) -> None:
    """Refuse a TIFF page whose own shape (tifffile's reading, which may differ from Pillow's on
    a crafted file) exceeds the pixel limit, or holds more than 4 samples per allowed pixel,
    before anything is allocated (found by fuzzing)."""
    dims = [int(d) for d in shape]
    if len(dims) < 2:
        raise ImageReadError(path, f"unsupported TIFF layout {tuple(dims)}")
    pixels, samples = dims[0] * dims[1], int(np.prod(dims, dtype=object))
    if pixels > limit or samples > 4 * limit:
        raise ImageReadError(path, f"{'x'.join(map(str, dims))} samples exceed the limit of "
                                   f"{limit / 1e6:.0f} megapixels")


def _decode_tiff(path: Path, fh: _BoundedFile, limit: int) -> tuple[np.ndarray, int] | None:
    """16-bit and float TIFFs via tifffile; None lets Pillow take ordinary 8-bit ones."""
    import tifffile

    try:
        fh.seek(0)
        with tifffile.TiffFile(fh) as tif:
            page = tif.pages[0]
            dtype = np.dtype(page.dtype) if page.dtype is not None else None
            photometric = page.photometric
            if dtype is None or dtype == np.uint8 or photometric not in (
                    tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
                return None
            _check_tiff_size(path, page.shape, limit)
            arr = page.asarray()
    except (ImageReadError, MemoryError, _ReadBudgetExceeded):
        raise
    except Exception as exc:  # tifffile raises many types on corrupt files (zlib.error, ZeroDivisionError...)
        raise ImageReadError(path, f"cannot decode: corrupt TIFF ({_one_line(exc)})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(path, f"unsupported TIFF layout {arr.shape}")
    if dtype == np.uint16:
        return arr, 16
    if dtype.kind == "f":
        return arr.astype(np.float32), 32
    raise ImageReadError(path, f"unsupported TIFF sample type {dtype}")


class _TiffLogSilencer:
    """Holds back tifffile's log records (4-16 lines per corrupt file) in the threads that are
    decoding; the decode's own error is the one line the user sees."""

    def __init__(self) -> None:
        import threading

        self.local = threading.local()
        self.installed = False

    def filter(self, record) -> bool:
        return not getattr(self.local, "depth", 0)


_TIFF_LOG = _TiffLogSilencer()


@contextlib.contextmanager
def _quiet_tifffile():
    import logging

    if not _TIFF_LOG.installed:
        logging.getLogger("tifffile").addFilter(_TIFF_LOG)
        _TIFF_LOG.installed = True
    _TIFF_LOG.local.depth = getattr(_TIFF_LOG.local, "depth", 0) + 1
    try:
        yield
    finally:
        _TIFF_LOG.local.depth -= 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip ``pixels`` so that an image with EXIF ``orientation`` (1-8) is upright."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1, :],
    }
    return ops.get(orientation, ops[1])(pixels)


def read_rgb(path: os.PathLike | str, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as (H, W, 3) float32 RGB in [0, 1] (grey replicated, alpha dropped)."""
    from .imageops import to_float32, to_rgb

    return to_float32(to_rgb(read_image(path, max_pixels=max_pixels).pixels))


def read_radiance(path: os.PathLike | str, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an OpenEXR radiance map as (H, W, 3) float32 linear RGB (values unbounded, >= 0).

    Raises
    ------
    ImageReadError
        The file cannot be read, has no RGB channels, too many pixels, or non-finite values.
    """
    path = Path(path)
    try:
        import OpenEXR
    except ImportError:  # pragma: no cover - a dependency; the message names the fix
        raise ImageReadError(path, "reading OpenEXR needs the OpenEXR package: pip install OpenEXR") from None
    limit = max_pixels or max_pixels_default()
    try:
        with OpenEXR.File(str(path)) as f:
            channels = f.channels()
            if "RGB" in channels:
                rgb = np.asarray(channels["RGB"].pixels, np.float32)
            elif all(c in channels for c in "RGB"):
                rgb = np.stack([np.asarray(channels[c].pixels, np.float32) for c in "RGB"], axis=-1)
            else:
                raise ImageReadError(path, f"no RGB channels (has {', '.join(sorted(channels))})")
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - OpenEXR raises plain RuntimeErrors
        raise ImageReadError(path, f"cannot read as OpenEXR: {_one_line(exc)}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageReadError(path, f"unexpected pixel array of shape {rgb.shape}")
    if rgb.shape[0] * rgb.shape[1] > limit:
        raise ImageReadError(path, f"{rgb.shape[1]}x{rgb.shape[0]} exceeds the pixel limit of {limit}")
    if not np.all(np.isfinite(rgb)):
        raise ImageReadError(path, "radiance has NaN or infinite values")
    return np.maximum(rgb, 0.0)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def write_image(path: os.PathLike | str, pixels: np.ndarray, *, like: ImageFile | None = None,
                format: str | None = None, quality: int = 95, exif: bytes | None = None,
                icc: bytes | None = None, overwrite: bool = True, compress_level: int = 6,
                subsampling: int | None = None) -> Path:
    """Encode ``pixels`` to ``path`` atomically (temp file in the same folder, then rename).

    Parameters
    ----------
    path : path-like
        Output file; its extension picks the format unless ``format`` is given.
    pixels : (H, W[, C]) ndarray
        uint8, uint16, or float in [0, 1] (written as 8 bit, or as float32 for TIFF). C = 1-4.
    like : ImageFile, optional
        Source image whose EXIF and ICC profile are copied (unless ``exif``/``icc`` are given).
    quality : int
        JPEG/WebP quality 1-100.
    overwrite : bool
        If False, an existing ``path`` raises :class:`ImageWriteError`.
    compress_level : int
        PNG zlib level 0-9 (1 is several times faster than 6 for ~10 % larger files; caches
        and intermediate files want 1).
    subsampling : {0, 1, 2}, optional
        JPEG chroma subsampling (4:4:4, 4:2:2, 4:2:0; e.g. the input's, from
        :func:`jpeg_subsampling`). Default: 4:4:4 at quality >= 90, else 4:2:0.

    Notes
    -----
    16-bit pixels stay 16-bit in PNG and TIFF; JPEG, BMP and WebP are 8-bit formats, so 16-bit
    pixels are rounded to 8 bits there. Float pixels are kept as float32 in TIFF only.
    """
    path = Path(path)
    fmt = (format or format_for_path(path) or (like.format if like else None) or "").upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in FORMATS:
        raise ImageWriteError(path, f"cannot tell the output format from the extension {path.suffix!r} "
                                    f"(use one of {', '.join(sorted(EXTENSIONS))})")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ImageWriteError(path, f"output folder {folder} does not exist")
    if path.is_dir():
        raise ImageWriteError(path, "is a folder")
    if path.exists() and not overwrite:
        raise ImageWriteError(path, "exists already (refusing to overwrite)")
    if like is not None:
        exif = like.exif if exif is None else exif
        icc = like.icc if icc is None else icc
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"pixels must be (H, W) or (H, W, 1..4), got shape {arr.shape}")
    arr = _to_storable(arr, fmt)
    if not 0 <= int(compress_level) <= 9:
        raise ValueError(f"compress_level must be in 0..9, got {compress_level}")
    data = _encode(arr, fmt, quality=int(quality), exif=exif, icc=icc, compress_level=int(compress_level),
                   subsampling=subsampling)
    atomic_write_bytes(path, data)
    return path


def _to_storable(arr: np.ndarray, fmt: str) -> np.ndarray:
    from .imageops import from_float32

    if arr.dtype.kind == "f":
        if fmt == "TIFF":
            return arr.astype(np.float32)
        return from_float32(arr, np.uint8)
    if arr.dtype == np.uint16 and fmt not in ("PNG", "TIFF"):
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels must be uint8, uint16 or float, got {arr.dtype}")
    if fmt in ("BMP", "JPEG", "WEBP") and arr.shape[2] == 2:
        arr = arr[..., :1]  # these formats cannot store grey + alpha
    if fmt == "JPEG" and arr.shape[2] == 4:
        arr = arr[..., :3]  # JPEG has no alpha
    return arr


def _encode(arr: np.ndarray, fmt: str, *, quality: int, exif: bytes | None, icc: bytes | None,
            compress_level: int = 6, subsampling: int | None = None) -> bytes:
    import io as _io

    if fmt == "JPEG" and arr.dtype == np.uint8 and arr.shape[2] == 3:
        data = _encode_jpeg(arr, quality=quality, subsampling=subsampling, exif=exif, icc=icc)
        if data is not None:
            return data
    if arr.dtype == np.uint16 and fmt == "PNG":
        return _encode_png16(arr, exif=exif, icc=icc, compress_level=compress_level)
    if fmt == "TIFF" and arr.dtype != np.uint8:
        return _encode_tiff(arr, icc=icc)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    im = PILImage.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode=mode)
    params: dict = {}
    if icc:
        params["icc_profile"] = icc
    if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        params["exif"] = exif
    if fmt == "JPEG":
        # 4:4:4 chroma at high quality: enhancement brightens shadows, where 4:2:0 colour
        # bleeding becomes visible.
        if subsampling is None:
            subsampling = 0 if quality >= 90 else 2
        params.update(quality=quality, subsampling=subsampling, optimize=False)
    elif fmt == "WEBP":
        params.update(quality=quality, method=4)
    elif fmt == "PNG":
        params.update(compress_level=compress_level)
    elif fmt == "TIFF":
        params.update(compression="tiff_deflate")
    buf = _io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


#: Largest JPEG marker segment body (its length field counts itself: 65535 - 2).
_JPEG_MARKER_BYTES = 65533
#: ``ICC_PROFILE\0``, then the chunk's number and the number of chunks (ICC.1, annex B.4).
_ICC_CHUNK_HEAD = b"ICC_PROFILE\0"


def _encode_jpeg(arr: np.ndarray, *, quality: int, subsampling: int | None, exif: bytes | None,
                 icc: bytes | None) -> bytes | None:
    """8-bit RGB pixels as a JPEG file: the bytes Pillow's ``save`` writes with the same
    quality, subsampling, EXIF and ICC profile (both wrap the same libjpeg-turbo with its
    defaults), without Pillow's copy of the pixels into its own 4-bytes-per-pixel layout, which
    cost a 20 MP photo as much time as the compression itself.

    OpenCV compresses (BGR order, so RGB is swapped once) and writes SOI and the JFIF APP0
    segment (grey is left to Pillow, which marks its one component 2x2-sampled at 4:2:0); the EXIF (APP1) and ICC (APP2, in chunks) segments follow it, where Pillow puts them.
    Like Pillow, EXIF over 65533 bytes is refused with ValueError. None when OpenCV cannot
    encode the picture (over 65500 pixels wide or high): Pillow then reports why.
    """
    import cv2

    if subsampling is None:
        subsampling = 0 if quality >= 90 else 2
    sampling = (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420)[subsampling]
    segments = []
    if exif:
        if len(exif) > _JPEG_MARKER_BYTES:
            raise ValueError("EXIF data is too long")
        segments.append(_jpeg_segment(0xE1, exif))
    if icc:
        size = _JPEG_MARKER_BYTES - len(_ICC_CHUNK_HEAD) - 2
        chunks = [icc[i:i + size] for i in range(0, len(icc), size)]
        if len(chunks) > 255:
            raise ValueError(f"ICC profile is too large for JPEG ({len(icc):,} bytes)")
        segments += [_jpeg_segment(0xE2, _ICC_CHUNK_HEAD + bytes([k + 1, len(chunks)]) + chunk)
                     for k, chunk in enumerate(chunks)]
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality),
                                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling])
    data = encoded.tobytes() if ok else b""
    if data[:4] != b"\xff\xd8\xff\xe0":  # SOI + APP0: what libjpeg writes for YCbCr
        return None
    end_of_app0 = 4 + int.from_bytes(data[4:6], "big")
    return data[:end_of_app0] + b"".join(segments) + data[end_of_app0:]


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _encode_png16(arr: np.ndarray, *, exif: bytes | None, icc: bytes | None, compress_level: int = 6) -> bytes:
    """16-bit PNG through OpenCV, with iCCP/eXIf chunks spliced in after IHDR.

    Written by hand because neither Pillow (no 16-bit colour PNG output) nor OpenCV (no
    metadata) can write a 16-bit colour PNG with its ICC profile and EXIF.
    """
    import cv2

    if arr.shape[2] == 2:
        data = _encode_png16_grey_alpha(arr, compress_level)
    else:
        if arr.shape[2] == 3:
            bgr = arr[..., ::-1]
        elif arr.shape[2] == 4:
            bgr = arr[..., [2, 1, 0, 3]]
        else:
            bgr = arr[..., 0]
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr), [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
        if not ok:
            raise ValueError("OpenCV could not encode the 16-bit PNG")
        data = buf.tobytes()
    extra = b""
    if icc:
        extra += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    if exif:
        body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        extra += _png_chunk(b"eXIf", body)
    if extra:
        ihdr_end = 8 + 8 + 13 + 4
        data = data[:ihdr_end] + extra + data[ihdr_end:]
    return data


def _encode_png16_grey_alpha(arr: np.ndarray, compress_level: int = 6) -> bytes:
    """16-bit grey+alpha PNG (colour type 4), which neither OpenCV nor Pillow can write.

    Plain filter-0 scanlines in one zlib stream: the minimal valid encoding of the PNG spec.
    """
    h, w = arr.shape[:2]
    rows = arr.astype(">u2").view(np.uint8).reshape(h, w * 4)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw, compress_level))
            + _png_chunk(b"IEND", b""))


def _encode_tiff(arr: np.ndarray, *, icc: bytes | None) -> bytes:
    import io as _io

    import tifffile

    photometric = "rgb" if arr.shape[2] in (3, 4) else "minisblack"
    extratags = [(_TIFF_ICC_TAG, "B", len(icc), icc, True)] if icc else []
    extrasamples = ("unassalpha",) if arr.shape[2] in (2, 4) else None
    buf = _io.BytesIO()
    tifffile.imwrite(buf, arr[..., 0] if arr.shape[2] == 1 else arr, photometric=photometric,
                     compression="zlib", extratags=extratags, extrasamples=extrasamples)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# JPEG quality of an input, standard input and output
# --------------------------------------------------------------------------------------------
# The IJG (libjpeg) example tables, natural (row-major) order: what libjpeg, Pillow, OpenCV and
# most cameras scale for a quality setting (ITU-T T.81 Annex K.1).
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
_IJG_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=np.float64)


def _ijg_table(base: np.ndarray, quality) -> np.ndarray:
    """libjpeg's ``jpeg_quality_scaling`` + ``jpeg_add_quant_table`` (baseline: 1..255); for an
    array of qualities, one table per row."""
    q = np.asarray(quality, dtype=np.float64)[..., None]
    scale = np.where(q < 50, 5000 / q, 200 - 2 * q)
    return np.clip(np.floor((base * scale + 50) / 100), 1, 255)


def jpeg_encoding(path: os.PathLike | str) -> tuple[int, int | None] | None:
    """A JPEG file's (:func:`estimate_jpeg_quality`, :func:`jpeg_subsampling`) from one read of
    its header, or None when it is not a JPEG with usable tables."""
    from PIL import JpegImagePlugin

    try:
        with PILImage.open(path) as pil:
            if pil.format not in ("JPEG", "MPO"):
                return None
            quality = _quality_of_tables(getattr(pil, "quantization", None) or {})
            sampling = JpegImagePlugin.get_sampling(pil)
    except Exception:  # any unreadable file: the caller falls back to its defaults
        return None
    return None if quality is None else (quality, sampling if sampling in (0, 1, 2) else None)


def estimate_jpeg_quality(path: os.PathLike | str) -> int | None:
    """The IJG quality (1-100) whose quantisation tables best match a JPEG file's, or None.

    Reads the file's header only (Pillow parses the DQT segments without decoding pixels).
    Files written with another scaling (some cameras) get the quality whose tables are closest
    in log ratio, which gives about the same file size and artefacts when re-encoded with
    libjpeg. None when the file is not a JPEG or has no usable tables.
    """
    try:
        with PILImage.open(path) as pil:
            if pil.format not in ("JPEG", "MPO"):
                return None
            tables = getattr(pil, "quantization", None) or {}
    except Exception:  # any unreadable file: the caller falls back to its default quality
        return None
    return _quality_of_tables(tables)


#: The qualities tried, best first: the highest among equally good ones wins (at the bottom of
#: the scale, tables clipped at 255 make several qualities identical).
_QUALITIES = np.arange(100, 0, -1)


def _quality_of_tables(tables: dict) -> int | None:
    ids = sorted(tables)
    if not ids or any(len(tables[i]) != 64 for i in ids):
        return None
    actual = [np.log(np.maximum(np.asarray(tables[i], dtype=np.float64), 1)) for i in ids[:2]]
    bases = [_IJG_LUMA, _IJG_CHROMA][:len(actual)]
    # every quality's tables at once: (100, 64) per component
    error = sum(np.abs(a - np.log(_ijg_table(b, _QUALITIES))).sum(axis=1) for a, b in zip(actual, bases))
    return int(_QUALITIES[int(np.argmin(error))])


def jpeg_subsampling(path: os.PathLike | str) -> int | None:
    """A JPEG's chroma subsampling as Pillow's ``subsampling`` value (0 = 4:4:4, 1 = 4:2:2,
    2 = 4:2:0), or None when it is not a JPEG or unknown."""
    from PIL import JpegImagePlugin

    try:
        with PILImage.open(path) as pil:
            if pil.format not in ("JPEG", "MPO"):
                return None
            value = JpegImagePlugin.get_sampling(pil)
    except Exception:  # unreadable: the caller uses its default
        return None
    return value if value in (0, 1, 2) else None


def spool_stream(stream, folder: os.PathLike | str, *, name: str = "stdin") -> Path:
    """Copy a byte stream (standard input) into a new file in ``folder``, in 1 MiB chunks (memory
    stays bounded whatever the stream's size), so it can be read like any image file."""
    fd, tmp = tempfile.mkstemp(prefix=f"{name}.", dir=folder)
    with os.fdopen(fd, "wb") as f:
        while True:
            chunk = stream.read(1 << 20)
            if not chunk:
                break
            f.write(chunk)
    return Path(tmp)


def encode_image(pixels: np.ndarray, format: str, *, like: ImageFile | None = None, quality: int = 95,
                 subsampling: int | None = None) -> bytes:
    """The bytes :func:`write_image` would write for ``pixels`` in ``format`` (for standard output).

    Parameters
    ----------
    pixels : (H, W[, C]) ndarray
        As for :func:`write_image`.
    format : str
        ``"JPEG"``, ``"PNG"``, ``"TIFF"``, ``"BMP"`` or ``"WEBP"`` (``"JPG"`` accepted).
    like : ImageFile, optional
        Source image whose EXIF and ICC profile are copied.
    """
    fmt = format_name(format)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"pixels must be (H, W) or (H, W, 1..4), got shape {arr.shape}")
    return _encode(_to_storable(arr, fmt), fmt, quality=int(quality), exif=like.exif if like else None,
                   icc=like.icc if like else None, subsampling=subsampling)
