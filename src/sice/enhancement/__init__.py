"""The enhancement core: one photo, or ten thousand, through one loaded model.

Read it top-down:

1. :mod:`~sice.enhancement.api`: :class:`Enhancer` (load a model once, enhance pixels of any
   layout and dtype), :func:`enhance_array`, :func:`enhance_file`, :func:`enhance_to_bytes`.
2. :mod:`~sice.enhancement.runners`: the model behind one small protocol, run by torch or by
   onnxruntime; its registry config declares how photos reach it (``photo_path``).
3. :mod:`~sice.enhancement.apply`: the full-resolution application (tiles for fully
   convolutional networks; gain and tone fields upsampled and applied strip by strip).
4. :mod:`~sice.enhancement.plan`: a batch of files: inputs found, every output name planned
   before anything is written.
5. :mod:`~sice.enhancement.batch`: the plan run: skip / overwrite, one outcome per file (the CLI
   only prints them), here or on a cluster.
"""
from .api import (
    Enhancer,
    before_after_image,
    check_float_range,
    enhance_array,
    enhance_file,
    enhance_to_bytes,
    jpeg_settings,
)
from .apply import apply_log2_gain, apply_tone, gain_inputs, tiled_apply

__all__ = [
    "Enhancer",
    "apply_log2_gain",
    "apply_tone",
    "before_after_image",
    "check_float_range",
    "enhance_array",
    "enhance_file",
    "enhance_to_bytes",
    "gain_inputs",
    "jpeg_settings",
    "tiled_apply",
]
