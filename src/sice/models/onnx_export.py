"""ONNX export and the onnxruntime backend.

Two kinds of graphs are exported, chosen by the model's config:

* gain-grid models (``photo_path="gain"``): inputs ``thumb`` (1, 3, 256, 256) and ``work``
  (1, 3, H, W), output ``log_gain`` (1, 3, H, W) (and ``offset`` (1, 3, H, W) for models with
  offsets); the NumPy side makes the thumbnail and applies the gains at full resolution
  (:mod:`sice.enhancement`);
* tone-grid models (``photo_path="tone"``): the same inputs, outputs ``luma_gain`` and
  ``chroma_gain`` (1, 1, H, W), applied by :func:`sice.enhancement.apply_tone`;
* fully convolutional networks: input ``rgb`` (1, 3, H, W) (plus ``aux`` (1, 2, H, W) for models
  fed the luminance/detail split), output ``rgb`` (1, 3, H, W); run tiled like the torch path.

Height and width are dynamic in both. A JSON sidecar (``model.onnx.json``) carries the model's
config so an ``.onnx`` file alone is enough to enhance. The onnxruntime path imports no torch,
which is what makes ``sice enhance`` start fast.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import ModelError
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
        if cfg.photo_path == "tone":
            names_out = ["luma_gain", "chroma_gain"]
        else:
            names_out = ["log_gain", "offset"] if getattr(model, "offset", False) else ["log_gain"]
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
        kind = "image"
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


class OnnxRunner:
    """Runs an exported sice model with onnxruntime (CPU)."""

    backend = "onnxruntime"

    def __init__(self, session, sidecar: dict, name: str):
        self.session = session
        self.sidecar = sidecar
        self.kind = sidecar["kind"]
        self.config = sidecar["config"]
        self.name = name
        self.work_size = int(sidecar.get("work_size") or 1024)

    def gain_fields(self, thumb: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(h, w, 3) log2 gains and, from models exported with an ``offset`` output, offsets."""
        feed = {"thumb": _nchw(thumb), "work": _nchw(work)}
        outs = [o[0].transpose(1, 2, 0) for o in self.session.run(None, feed)]
        return outs[0], (outs[1] if len(outs) > 1 else None)

    def tone_fields(self, thumb: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(h, w) luma gain and (h, w) chroma gain of a tone model at ``work``."""
        luma_gain, chroma_gain = self.session.run(None, {"thumb": _nchw(thumb), "work": _nchw(work)})
        return luma_gain[0, 0], chroma_gain[0, 0]

    @classmethod
    def from_file(cls, path: os.PathLike | str, name: str | None = None) -> "OnnxRunner":
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such ONNX file")
        side = Path(str(path) + ".json")
        if not side.is_file():
            raise ModelError(f"{path}: missing its config file {side.name} (export with 'sice export')")
        try:
            sidecar = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{side}: unreadable model config ({exc})") from None
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = min(4, os.cpu_count() or 1)
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        return cls(session, sidecar, name or sidecar["config"].get("name", path.stem))

    def run(self, rgb: np.ndarray, *, tile: int, decomposition: str) -> np.ndarray:
        from ..enhancement import tiled_apply

        planes = [rgb]
        if self.config.get("aux") == "luminance_detail":
            from ..decomposition import aux_tensor

            planes.append(np.moveaxis(aux_tensor(rgb, method=decomposition), 0, -1))
        def fwd(block: np.ndarray) -> np.ndarray:
            feed = {"rgb": _nchw(block[..., :3])}
            if block.shape[2] > 3:
                feed["aux"] = _nchw(block[..., 3:])
            return np.clip(self.session.run(None, feed)[0][0].transpose(1, 2, 0), 0, 1)

        return tiled_apply(planes, fwd, tile=tile, overlap=int(self.config.get("receptive_radius", 0)),
                           multiple=int(self.config.get("size_multiple", 1)), out_channels=3)


OnnxGainRunner = OnnxRunner  # the name the enhancement core imports for .onnx files


def _nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(2, 0, 1)[None], dtype=np.float32)


def shipped_onnx_path(name: str) -> Path | None:
    """The ONNX form shipped in the package for a registry name (or ``default``), if any."""
    from ..weights import shipped_file

    p = shipped_file(name, ".onnx")
    return p if p is not None and Path(str(p) + ".json").is_file() else None


def shipped_onnx_runner(name: str, *, required: bool = False) -> OnnxRunner | None:
    """An onnxruntime runner for a shipped model, or None (then torch is used).

    The runner's name is the architecture's (``default`` resolves to it).

    ``required``: raise :class:`ModelError` instead of returning None.
    """
    path = shipped_onnx_path(name)
    if path is None:
        if required:
            raise ModelError(f"model {name!r} has no ONNX form in this package; export one with "
                             f"'sice export {name} -o model.onnx' and pass --model model.onnx")
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if required:
            raise ModelError("onnxruntime is not installed (pip install onnxruntime)") from None
        return None
    from ..weights import resolve_alias

    return OnnxRunner.from_file(path, name=resolve_alias(name))
