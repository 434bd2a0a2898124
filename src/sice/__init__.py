"""sice: single-image contrast enhancement learned from multi-exposure images.

The one-call API::

    import sice
    out = sice.enhance(image)            # (H, W, 3) uint8/uint16/float array -> same dtype
    sice.enhance_file("in.jpg", "out.jpg")

Heavy modules (torch, OpenCV) are imported on first use, so ``import sice`` is cheap.
"""
from __future__ import annotations

__version__ = "0.1.0"


def enhance(image, *, model=None, **kwargs):
    """Enhance one image array; see :func:`sice.enhancement.enhance_array`."""
    from .enhancement import enhance_array

    return enhance_array(image, model=model, **kwargs)


def enhance_file(src, dst, *, model=None, **kwargs):
    """Enhance one image file into ``dst``; see :func:`sice.enhancement.enhance_file`."""
    from .enhancement import enhance_file as _enhance_file

    return _enhance_file(src, dst, model=model, **kwargs)


__all__ = ["__version__", "enhance", "enhance_file"]
