"""ONNX export of sice models (``sice export``); :class:`sice.enhancement.runners.OnnxRunner` runs them.

Three kinds of graphs are exported, chosen by the model's config (``photo_path``):

* gain-grid models (``photo_path="gain"``): inputs ``thumb`` (1, 3, 256, 256) and ``work``
  (1, 3, H, W), output ``log_gain`` (1, 3, H, W) (and ``offset`` (1, 3, H, W) for models with
  offsets); the NumPy side makes the thumbnail and applies the gains at full resolution
  (:mod:`sice.enhancement`);
* tone-grid models (``photo_path="tone"``): the same inputs, outputs ``luma_gain`` and
  ``chroma_gain`` (1, 1, H, W), applied by :func:`sice.enhancement.apply_tone`;
* fully convolutional networks (``photo_path="tiles"``): input ``rgb`` (1, 3, H, W) (plus ``aux``
  (1, 2, H, W) for models fed the luminance/detail split), output ``out`` (1, 3, H, W); run tiled
  like the torch path.

Height and width are dynamic in all three. A JSON sidecar (``model.onnx.json``) carries the model's
config (its ``photo_path`` as ``kind``) so an ``.onnx`` file alone is enough to enhance.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path


from ..files import atomic_path

ONNX_OPSET = 17


def export_onnx(model, path: os.PathLike | str, *, check: bool = True) -> Path:
    """Export a sice model (from the registry or a checkpoint) to ONNX with dynamic H, W.

    Writes ``path`` and ``path + '.json'`` (the model config) atomically.
    """
    import torch

    if check:
        import onnx  # noqa: F401  (before a minute of export work, not after it)

    path = Path(path)
    cfg = model.sice_config
    model = model.eval().float()
    if cfg.photo_path in ("gain", "tone"):
        from .gaingrid import PhotoFieldsOnnx

        wrapper = PhotoFieldsOnnx(model).eval()
        args = (torch.rand(1, 3, 256, 256), torch.rand(1, 3, 96, 128))
        names_in = ["thumb", "work"]
        with torch.no_grad():
            n_out = len(wrapper(*args))
        names_out = (["luma_gain", "chroma_gain"] if cfg.photo_path == "tone" else ["log_gain", "offset"])[:n_out]
        dynamic = {n: {2: "height", 3: "width"} for n in ["work"] + names_out}
        kind = cfg.photo_path
    else:
        wrapper = model
        m = max(1, cfg.size_multiple)
        h, w = 16 * m, 24 * m
        if cfg.aux == "luminance_detail":
            args = (torch.rand(1, 3, h, w), torch.rand(1, 2, h, w))
            names_in = ["rgb", "aux"]
        else:
            args = (torch.rand(1, 3, h, w),)
            names_in = ["rgb"]
        names_out = ["out"]
        dynamic = {n: {2: "height", 3: "width"} for n in names_in + names_out}
        kind = "tiles"
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # edge padding exports as Slice ops with negative steps, which the exporter notes
        # it cannot constant-fold; the graph is correct (tests compare it with torch)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(wrapper, args, str(tmp), input_names=names_in, output_names=names_out,
                          dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False)
        if check:
            import onnx

            onnx.checker.check_model(str(tmp))
    sidecar = {"kind": kind, "config": dataclasses.asdict(cfg),
               "work_size": getattr(model, "work_size", None),
               "meta": getattr(model, "sice_meta", {})}
    from ..files import atomic_write_bytes

    atomic_write_bytes(Path(str(path) + ".json"), json.dumps(sidecar, indent=2, default=str).encode())
    return path
