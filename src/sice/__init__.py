"""sice: single-image contrast enhancement learned from multi-exposure images.

The one-call API::

    import sice
    out = sice.enhance(image)            # (M, N[, C]) uint8/uint16/float array -> same shape and dtype
    sice.enhance_file("in.jpg", "out.jpg")

Heavy modules (torch, OpenCV) are imported on first use, so ``import sice`` is cheap.
"""
from __future__ import annotations

from .version import __version__


def enhance(image, *, model=None, strength=1.0, channel_axis=-1, **kwargs):
    """Enhance a badly exposed (too dark or too bright) image array.

    Parameters
    ----------
    image : (M, N) or (M, N, C) ndarray
        A grey or colour image: C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), channels
        on ``channel_axis``. uint8, uint16, or float with values in [0, 1] (float16, float32 and
        float64 alike). Any size.
    model : str, path-like or torch.nn.Module, optional
        A registry name with shipped weights (see ``sice models``; default: the shipped model,
        alias ``"default"``), a checkpoint ``.pt``, an ``.onnx`` file from ``sice export``, or a
        model object. Loaded once and reused by later calls with the same arguments.
    strength : float in [0, 1], optional
        How much of the model's tone change to apply, in the model's tone domain: its log2
        gain field and offset field are scaled by ``strength`` before they reach the pixels,
        so 0.5 is half the exposure change in stops (not a 50 % mix of input and output) and 0
        returns the input. Models that output pixels directly (not a gain field) accept only 1.
    channel_axis : int or None, optional
        The axis of ``image`` that holds the channels (scikit-image's convention); None for a
        grey (M, N) image. A 2-D image is always grey.
    **kwargs
        Passed to :class:`sice.enhancement.Enhancer`: ``device`` ("cpu" or "cuda"),
        ``backend`` ("auto", "torch", "onnxruntime"), ``tile`` (tile side for fully
        convolutional networks).

    Returns
    -------
    ndarray
        The enhanced image: same shape, dtype and channel axis as ``image``; alpha passed
        through untouched; float values in [0, 1].

    Raises
    ------
    ValueError
        Float values outside [0, 1] or not finite (the message gives the range found), a dtype
        other than uint8/uint16/float, a shape with other than 1-4 channels, ``strength``
        outside [0, 1], or a bad ``channel_axis``.
    sice.errors.ModelError
        An unknown model name or an unreadable checkpoint.

    See Also
    --------
    enhance_file : the same for image files, keeping their metadata.

    Examples
    --------
    >>> import numpy as np
    >>> import sice
    >>> dark = np.full((48, 64, 3), 0.08)           # float64 in [0, 1]
    >>> out = sice.enhance(dark)
    >>> out.shape, out.dtype
    ((48, 64, 3), dtype('float64'))
    >>> bool(out.mean() > dark.mean())
    True
    >>> planar = np.zeros((3, 48, 64), np.uint8)     # channels first
    >>> sice.enhance(planar, channel_axis=0, strength=0.5).shape
    (3, 48, 64)
    """
    from .enhancement import enhance_array

    return enhance_array(image, model=model, strength=strength, channel_axis=channel_axis, **kwargs)


def enhance_file(src, dst, *, model=None, strength=1.0, quality=None, compare=None, max_pixels=None,
                 overwrite=True, **kwargs):
    """Enhance an image file into ``dst``, keeping what a photographer expects to keep.

    The output has the input's size, bit depth (16-bit PNG/TIFF stay 16-bit, float TIFF stays
    float), grey/colour layout, alpha channel, EXIF and ICC profile; the EXIF orientation is
    applied, so the output is upright with orientation 1. It is written atomically: ``dst``
    either is complete or is not touched.

    Parameters
    ----------
    src : path-like
        A JPEG, PNG, TIFF, BMP or WebP file.
    dst : path-like
        The output file; its extension chooses the format. Must not be ``src``.
    model : str, path-like or torch.nn.Module, optional
        As for :func:`enhance`.
    strength : float in [0, 1], optional
        As for :func:`enhance`.
    quality : int in 1..100, optional
        JPEG/WebP quality. Default: a JPEG written from a JPEG keeps the input's quality
        (estimated from its quantisation tables) and chroma subsampling; otherwise 95.
    compare : path-like, optional
        Also write a before/after image here (input and output side by side, labelled, each
        at most 1600 px on its long side).
    max_pixels : int, optional
        Refuse larger images (default 200 MP or ``$SICE_MAX_PIXELS``).
    overwrite : bool, optional
        If False, an existing ``dst`` raises :class:`sice.errors.ImageWriteError`.
    **kwargs
        Passed to :class:`sice.enhancement.Enhancer` (``device``, ``backend``, ``tile``).

    Returns
    -------
    pathlib.Path
        ``dst``.

    Raises
    ------
    sice.errors.ImageReadError
        ``src`` is missing, unreadable, not an image, truncated, over the pixel limit, or a float
        image outside [0, 1]. The message starts with the path.
    sice.errors.ImageWriteError
        ``dst`` is ``src``, its folder is missing or read-only, or the disk is full.
    ValueError
        ``strength`` or ``quality`` out of range.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> import sice
    >>> from sice.io import read_image, write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_image(folder / "dark.png", np.full((40, 60, 3), 20, np.uint8))
    >>> sice.enhance_file(folder / "dark.png", folder / "bright.png").name
    'bright.png'
    >>> bool(read_image(folder / "bright.png").pixels.mean() > 20)
    True
    """
    from .enhancement import enhance_file as _enhance_file

    return _enhance_file(src, dst, model=model, strength=strength, quality=quality, compare=compare,
                         max_pixels=max_pixels, overwrite=overwrite, **kwargs)


__all__ = ["__version__", "enhance", "enhance_file"]
