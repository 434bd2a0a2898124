"""Reproducing the authors' demo of the released Caffe models, to check the port against it.

``sice-caffe/demo/model{1,2,3}.bmp`` are the authors' MATLAB figures of input | output for
``sice-fullres/9.JPG``. :func:`demo_input` applies the demos' preprocessing, :func:`run_model`
runs a ported network on the whole frame, and :func:`screenshot_geometry` registers our images
to the screenshot (docs/caffe-port.md). Used by ``tests/test_caffe.py`` only: nothing in
``sice`` needs it, so it lives test-side.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from sice.tensorops import image_to_tensor, tensor_to_image

#: Down-scaling the released demos apply before the network.
DEMO_SCALE = {"sice2018-residual": 1 / 3, "sice2018": 3 / 5, "sice2018-perpixel": 3 / 5}
#: The demos crop height and width to this multiple (Model 3's space-to-depth needs it).
DEMO_MULTIPLE = 4


def demo_input(rgb: np.ndarray, scale: float) -> np.ndarray:
    """The demos' preprocessing: bicubic down-scaling by ``scale``, crop to a multiple of 4.

    Parameters
    ----------
    rgb : (H, W, 3) ndarray
        uint8, or float in [0, 1].
    scale : float
        In (0, 1]; the release uses :data:`DEMO_SCALE` of the model.

    Returns
    -------
    (H', W', 3) float32 ndarray in [0, 1]
        ``H' = floor(round(H * scale) / 4) * 4`` (top-left kept), likewise ``W'``.

    Notes
    -----
    MATLAB's ``imresize(im, s, 'bicubic')`` antialiases when shrinking (its cubic kernel,
    a = -0.5, is stretched by 1/s). Pillow's ``BICUBIC`` resize does the same with the same
    kernel, so it stands in for it; the result is rounded to 8 bits as MATLAB's on a uint8 image.
    """
    from PIL import Image

    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got {a.shape}")
    h, w = a.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    u8 = a if a.dtype == np.uint8 else np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    small = np.asarray(Image.fromarray(u8, "RGB").resize(size, Image.BICUBIC))
    hh, ww = small.shape[0] // DEMO_MULTIPLE * DEMO_MULTIPLE, small.shape[1] // DEMO_MULTIPLE * DEMO_MULTIPLE
    if hh == 0 or ww == 0:
        raise ValueError(f"scale {scale} leaves less than {DEMO_MULTIPLE} pixels of a {w}x{h} image")
    return small[:hh, :ww].astype(np.float32) / np.float32(255)


def run_model(model: nn.Module, rgb: np.ndarray, *, aux: np.ndarray | None = None,
              aux_method: str = "auto") -> np.ndarray:
    """One untiled forward pass of a sice2018 model on a whole image, as the demos do.

    rgb (H, W, 3) float32 in [0, 1] -> (H, W, 3) float32, unclipped. Models that take cat(L, D)
    get ``aux`` (2, H, W) when given, else :func:`sice.decomposition.aux_tensor` of ``rgb``
    with ``aux_method``.
    """
    # channels_last: a view of the array, as the demos' forward pass was always run
    x = image_to_tensor(np.asarray(rgb, dtype=np.float32), memory_format=torch.channels_last)
    args = (x,)
    if model.sice_config.aux == "luminance_detail":
        if aux is None:
            from sice.decomposition import aux_tensor

            aux = aux_tensor(rgb, aux_method)
        args = (x, torch.from_numpy(np.ascontiguousarray(aux, dtype=np.float32))[None])
    with torch.no_grad():
        return tensor_to_image(model(*args))


@dataclasses.dataclass
class ScreenshotGeometry:
    """Where the two images of a demo screenshot are, and how our images map onto them.

    Attributes
    ----------
    input_half, output_half : (h, w, 3) float32 ndarray
        The screenshot's left (input) and right (output) images.
    warp : (2, 3) float32 ndarray
        Affine map (scale and offset) from a half's pixel grid to our image resized to the
        half's size, found on the input half (independent of any model).
    """

    input_half: np.ndarray
    output_half: np.ndarray
    warp: np.ndarray

    def resample(self, image: np.ndarray) -> np.ndarray:
        """Our (H, W, 3) image seen at the screenshot's resolution and position (clipped to [0, 1])."""
        import cv2

        h, w = self.input_half.shape[:2]
        small = cv2.resize(np.clip(image, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(small, self.warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)


def screenshot_geometry(screenshot: np.ndarray, demo_rgb: np.ndarray) -> ScreenshotGeometry:
    """Locate the input | output images in a demo screenshot and register ``demo_rgb`` to it.

    Parameters
    ----------
    screenshot : (H, W, 3) ndarray
        The MATLAB figure (white background, the two images side by side, same size).
    demo_rgb : (h, w, 3) float ndarray in [0, 1]
        The network's input as we prepared it (:func:`demo_input`).

    Returns
    -------
    ScreenshotGeometry

    Notes
    -----
    The images are the non-white bounding box, split in two equal halves. The half size gives
    the scale; the remaining sub-pixel scale/offset is refined by OpenCV's ECC maximisation
    (Evangelidis & Psarakis, PAMI 2008) of our down-sized input against the screenshot's input
    half, so the geometry is found without looking at any model's output.
    """
    import cv2

    shot = np.asarray(screenshot, dtype=np.float32)
    if shot.max() > 1.0:
        shot = shot / 255.0
    ink = np.abs(shot - 1.0).sum(-1) > 0
    if not ink.any():
        raise ValueError("screenshot is blank")
    ys, xs = np.nonzero(ink)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    half = (x1 - x0) // 2
    left = shot[y0:y1, x0:x0 + half]
    right = shot[y0:y1, x0 + half:x0 + 2 * half]
    h, w = left.shape[:2]
    ours = cv2.resize(np.clip(demo_rgb, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(cv2.cvtColor(left, cv2.COLOR_RGB2GRAY),
                                       cv2.cvtColor(ours, cv2.COLOR_RGB2GRAY), warp, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6),
                                       None, 3)
    except cv2.error:
        warp = np.eye(2, 3, dtype=np.float32)  # ECC did not converge: the bounding box stands
    return ScreenshotGeometry(left, right, warp)
