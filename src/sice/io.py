"""Image files in and out: the one place in sice that decodes and encodes.

Everything else works on arrays. Reading applies the EXIF orientation and keeps the metadata
(EXIF, ICC profile) and the bit depth, so that writing the enhanced pixels back ``like`` the
source gives a file a photographer would accept: same size, orientation, bit depth, format and
metadata.

Decoders: Pillow for 8-bit files (JPEG, PNG, BMP, WebP, 8-bit TIFF), OpenCV for 16-bit PNG
(Pillow reduces 16-bit colour PNG to 8 bits), tifffile for 16-bit and float TIFF.
"""
from __future__ import annotations

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
        Missing, not a file, unreadable, not an image, truncated, unsupported mode or format,
        animated, or over the pixel limit. The message starts with the path.
    """
    path = Path(path)
    limit = max_pixels_default() if max_pixels is None else int(max_pixels)
    if not path.exists():
        raise ImageReadError(path, "no such file" if not path.is_symlink() else "dangling symbolic link")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if not os.access(path, os.R_OK):
        raise ImageReadError(path, "permission denied")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        # From memory, not the file: Pillow reads chunks with file.read(n), n taken from the file,
        # and a buffered file allocates all n bytes first (4 GiB for a crafted 600-byte PNG,
        # found by fuzzing); BytesIO.read(n) returns what there is.
        pil = PILImage.open(_io.BytesIO(path.read_bytes()))
    except PILImage.UnidentifiedImageError:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic in (b"II*\x00", b"MM\x00*"):
            # float or multi-sample TIFFs that Pillow cannot open: tifffile can
            return _read_tiff_only(path, limit)
        raise ImageReadError(path, "not an image file, or a format sice cannot read") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open: {exc.strerror or exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # fuzzing: Pillow's plugins raise ValueError etc. on crafted headers
        raise ImageReadError(path, f"cannot open: corrupt or unsupported file ({_one_line(exc)})") from None
    with pil:
        fmt = pil.format
        if fmt == "MPO":  # multi-picture JPEG from some cameras: the first picture is the photo
            fmt = "JPEG"
        if fmt not in FORMATS:
            raise ImageReadError(path, f"unsupported format {fmt} (supported: {', '.join(FORMATS)})")
        w, h = pil.size
        if w * h > limit:
            raise ImageReadError(
                path, f"{w}x{h} = {w * h / 1e6:.0f} megapixels exceeds the limit of {limit / 1e6:.0f} megapixels "
                "(raise it with --max-pixels or SICE_MAX_PIXELS if the file is trusted)")
        if w < 1 or h < 1:
            raise ImageReadError(path, f"invalid size {w}x{h}")
        try:
            n_frames = getattr(pil, "n_frames", 1)
        except MemoryError:
            raise
        except Exception as exc:  # fuzzing: counting TIFF frames walks every IFD (TypeError, ...)
            raise ImageReadError(path, f"cannot decode: corrupt {fmt} data ({_one_line(exc)})") from None
        if n_frames > 1 and fmt != "JPEG" and fmt != "TIFF":
            raise ImageReadError(path, f"animated {fmt} ({n_frames} frames) is not supported")
        exif_obj = _read_exif(pil, path)
        icc = pil.info.get("icc_profile") or None
        try:
            pixels, bit_depth = _decode(path, pil, fmt, limit)
        except (ImageReadError, MemoryError):
            raise
        except Exception as exc:  # decoders raise many types on corrupt data (fuzzing found
            # zlib.error, ZeroDivisionError and TypeError besides OSError/ValueError/struct.error)
            reason = _one_line(exc)
            if "truncated" in reason.lower() or isinstance(exc, (EOFError, struct.error)):
                reason = f"truncated or corrupt {fmt} data ({reason})"
            raise ImageReadError(path, f"cannot decode: {reason}") from None
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


def _read_tiff_only(path: Path, limit: int) -> ImageFile:
    import tifffile

    try:
        with tifffile.TiffFile(_io.BytesIO(path.read_bytes())) as tif:  # see read_image: in memory
            _check_tiff_size(path, tif.pages[0].shape, limit)
            icc_tag = tif.pages[0].tags.get(_TIFF_ICC_TAG)
            icc = bytes(icc_tag.value) if icc_tag is not None else None
    except (ImageReadError, MemoryError):
        raise
    except Exception as exc:  # tifffile raises several types for corrupt files
        raise ImageReadError(path, f"cannot decode: corrupt TIFF ({_one_line(exc)})") from None
    decoded = _decode_tiff(path, limit)
    if decoded is None:
        raise ImageReadError(path, "unsupported TIFF variant")
    return ImageFile(np.ascontiguousarray(decoded[0]), "TIFF", decoded[1], None, icc, path)


def _read_exif(pil: PILImage.Image, path: Path):
    try:
        exif = pil.getexif()
    except Exception:  # corrupt EXIF block: keep the picture, drop the metadata
        warnings.warn(f"{path}: unreadable EXIF ignored", stacklevel=3)
        return None
    return exif


def _decode(path: Path, pil: PILImage.Image, fmt: str, limit: int) -> tuple[np.ndarray, int]:
    if fmt == "PNG":
        depth, colour_type = _png_ihdr(path)
        if depth == 16:
            arr = _decode_cv2_16(path)
            if colour_type == 4 and arr.shape[2] == 4:  # OpenCV expands grey+alpha to BGRA
                arr = np.ascontiguousarray(arr[..., [0, 3]])
            return arr, 16
    if fmt == "TIFF":
        decoded = _decode_tiff(path, limit)
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


def _png_ihdr(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR; (8, -1) if it is not readable."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return 8, -1
    return head[24], head[25]


def _decode_cv2_16(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
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


def _decode_tiff(path: Path, limit: int) -> tuple[np.ndarray, int] | None:
    """16-bit and float TIFFs via tifffile; None lets Pillow take ordinary 8-bit ones."""
    import tifffile

    try:
        with tifffile.TiffFile(_io.BytesIO(path.read_bytes())) as tif:  # see read_image: in memory
            page = tif.pages[0]
            dtype = np.dtype(page.dtype) if page.dtype is not None else None
            photometric = page.photometric
            if dtype is None or dtype == np.uint8 or photometric not in (
                    tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
                return None
            _check_tiff_size(path, page.shape, limit)
            arr = page.asarray()
    except (ImageReadError, MemoryError):
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


def atomic_write_bytes(path: os.PathLike | str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one.

    The bytes go to a hidden temp file in the same folder (same file system, so the rename is
    atomic), are fsynced, then renamed over ``path``. Any failure removes the temp file.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write in {folder}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, _default_file_mode())  # mkstemp makes 0600; outputs get normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise ImageWriteError(path, f"cannot write: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _default_file_mode() -> int:
    """0666 minus the process umask: what ``open()`` would have given a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _unlink_quietly(p: str) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


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


def _ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's ``jpeg_quality_scaling`` + ``jpeg_add_quant_table`` (baseline: 1..255)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((base * scale + 50) / 100), 1, 255)


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
    ids = sorted(tables)
    if not ids or any(len(tables[i]) != 64 for i in ids):
        return None
    actual = [np.log(np.maximum(np.asarray(tables[i], dtype=np.float64), 1)) for i in ids[:2]]
    bases = [_IJG_LUMA, _IJG_CHROMA][:len(actual)]

    def error(q: int) -> float:
        return sum(float(np.abs(a - np.log(_ijg_table(b, q))).sum()) for a, b in zip(actual, bases))

    # the highest quality among equally good ones: at the bottom of the scale, tables clipped
    # at 255 make several qualities identical
    return min(range(100, 0, -1), key=error)


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
    fmt = format.upper()
    fmt = "JPEG" if fmt == "JPG" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"pixels must be (H, W) or (H, W, 1..4), got shape {arr.shape}")
    return _encode(_to_storable(arr, fmt), fmt, quality=int(quality), exif=like.exif if like else None,
                   icc=like.icc if like else None, subsampling=subsampling)
