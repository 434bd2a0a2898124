"""The stack stage: what one multi-exposure sequence needs before it can be fused.

:mod:`~sice.stack.exposure` estimates each frame's relative exposure (from EXIF or from the
pixels); :mod:`~sice.stack.alignment` registers the frames to one reference.
"""
