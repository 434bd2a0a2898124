"""Runners: one loaded model behind one small protocol, whatever runs it (torch or onnxruntime).

A runner says how photos reach its model (``photo_path``, declared in the model's registry
config and carried into an exported ONNX file's sidecar, never guessed from the object) and
offers what that path needs:

* ``"tiles"`` (fully convolutional networks): :meth:`Runner.run_tiles` on the whole image;
* ``"gain"`` / ``"tone"`` (grid models): :meth:`Runner.photo_fields` at the working resolution
  (``work_size``); :mod:`sice.enhancement.apply` applies them at full resolution.

:func:`load_runner` picks the runner: the shipped ONNX form of a named model on the CPU (no
torch imported), else torch.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError, SiceError
from .apply import tiled_apply

class Runner(Protocol):
    """What the enhancement core needs from a loaded model."""

    name: str
    backend: str
    #: "tiles", "gain" or "tone" (:class:`sice.models.ModelConfig.photo_path`).
    photo_path: str
    #: Long side of the working image of "gain" / "tone" models (0 for "tiles").
    work_size: int

    def photo_fields(self, thumb: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, ...]:
        """Fields at ``work``'s resolution: ``"gain"``: (log2 gains (h, w, 3)[, offsets (h, w, 3)]);
        ``"tone"``: (luma gain (h, w), chroma gain (h, w))."""

    def run_tiles(self, rgb: np.ndarray, *, tile: int, decomposition: str) -> np.ndarray:
        """``"tiles"`` models: the enhanced (H, W, 3) float32 image of float32 ``rgb``."""


def load_runner(model: Any, *, device: str = "cpu", backend: str = "auto") -> Runner:
    """A runner for a registry name (or ``default``), a checkpoint, an ``.onnx`` file or a model
    object built by :func:`sice.models.create_model`."""
    if isinstance(model, (str, os.PathLike)):
        s = os.fspath(model)
        if s.endswith(".onnx"):
            if device != "cpu":
                raise SiceError(f"{s}: an ONNX model runs with onnxruntime on the CPU; for device {device!r} "
                                "pass a checkpoint or a registry name")
            return OnnxRunner.from_file(s)
        if backend in ("auto", "onnxruntime"):
            runner = shipped_onnx_runner(s, required=backend == "onnxruntime")
            if runner is not None:
                return runner
        from ..models import load_model

        module = load_model(s)
    else:
        module = model
        if backend == "onnxruntime":
            raise ModelError("backend 'onnxruntime' needs a model name or an .onnx file, not a model object")
    if getattr(module, "sice_config", None) is None:
        raise ModelError("model object was not built by sice.models.create_model (no sice_config)")
    return TorchRunner(module, device=device)


def _fields_to_numpy(fields) -> tuple[np.ndarray, ...]:
    """(1, C, h, w) arrays -> (h, w, C), or (h, w) for one-channel fields."""
    out = []
    for f in fields:
        a = f[0]
        out.append(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
    return tuple(out)


class TorchRunner:
    """A torch model from the registry, on the CPU or a CUDA device."""

    backend = "torch"

    def __init__(self, module, *, device: str = "cpu"):
        import torch

        from .. import tensorops

        self.torch, self.tensorops = torch, tensorops
        self.module = module.eval().to(device)
        self.config = module.sice_config
        self.name = self.config.name
        self.device = device
        self.photo_path = self.config.photo_path
        self.work_size = int(module.work_size) if self.photo_path != "tiles" else 0
        if device == "cpu":
            self.module = self.module.to(memory_format=torch.channels_last)

    def photo_fields(self, thumb: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, ...]:
        with self.torch.inference_mode():
            as_tensor = self.tensorops.image_to_tensor
            fields = self.module.photo_fields(as_tensor(thumb, device=self.device), as_tensor(work, device=self.device))
        return _fields_to_numpy([f.float().cpu().numpy() for f in fields])

    def run_tiles(self, rgb: np.ndarray, *, tile: int, decomposition: str) -> np.ndarray:
        cfg = self.config
        planes = [rgb]
        if cfg.aux == "luminance_detail":
            from ..decomposition import aux_tensor

            planes.append(np.moveaxis(aux_tensor(rgb, method=decomposition), 0, -1))
        # the planes are joined per tile, not for the whole image: at 24 MP a full-size
        # 5-channel copy would cost 480 MB of peak memory
        with self.torch.inference_mode():
            return tiled_apply(planes, self._forward_tile, tile=tile, overlap=cfg.receptive_radius,
                               multiple=cfg.size_multiple, out_channels=3)

    def _forward_tile(self, block: np.ndarray) -> np.ndarray:
        fmt = self.torch.channels_last if self.device == "cpu" else self.torch.contiguous_format
        t = self.tensorops.image_to_tensor(block, device=self.device, memory_format=fmt)
        if self.config.aux == "luminance_detail":
            out = self.module(t[:, :3], t[:, 3:])
        else:
            out = self.module(t)
        return self.tensorops.tensor_to_image(out.float().clamp_(0, 1))


class OnnxRunner:
    """A model exported by ``sice export`` (:func:`sice.models.onnx_export.export_onnx`), run with
    onnxruntime on the CPU. Imports no torch: what makes ``sice enhance`` start fast."""

    backend = "onnxruntime"
    #: Sidecar ``kind`` -> photo path (files exported before the photo paths had names say "image").
    _PHOTO_PATHS = {"image": "tiles", "tiles": "tiles", "gain": "gain", "tone": "tone"}

    def __init__(self, session, sidecar: dict, name: str):
        self.session = session
        self.config = sidecar["config"]
        self.name = name
        self.photo_path = self._PHOTO_PATHS[sidecar["kind"]]
        self.work_size = int(sidecar.get("work_size") or 0)
        if self.photo_path != "tiles" and self.work_size < 1:
            raise ModelError(f"{name}: the model config gives no working size for its fields (work_size)")

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
            kind = sidecar["kind"]
            sidecar["config"].get
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"{side}: unreadable model config ({exc})") from None
        if kind not in cls._PHOTO_PATHS:
            raise ModelError(f"{side}: unknown model kind {kind!r}")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = min(4, os.cpu_count() or 1)
        # Threads that spin between the graph's ~1000 small operators burn a core each while
        # they wait: on a 2-core machine the grid model's first run took 0.23-0.33 s of CPU
        # with spinning and 0.15-0.25 s without, and its wall time did not improve.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The memory pattern, planned after a first run, is one more block of ~70 MB mapped
        # and page-faulted on the second run of every image size: a batch of photos paid
        # for it (second run 0.14 s instead of 0.12 s, peak RSS 231 MiB instead of 159 MiB
        # for the grid model alone).
        opts.enable_mem_pattern = False
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        return cls(session, sidecar, name or sidecar["config"].get("name", path.stem))

    def photo_fields(self, thumb: np.ndarray, work: np.ndarray) -> tuple[np.ndarray, ...]:
        return _fields_to_numpy(self.session.run(None, {"thumb": _nchw(thumb), "work": _nchw(work)}))

    def run_tiles(self, rgb: np.ndarray, *, tile: int, decomposition: str) -> np.ndarray:
        planes = [rgb]
        if self.config.get("aux") == "luminance_detail":
            from ..decomposition import aux_tensor

            planes.append(np.moveaxis(aux_tensor(rgb, method=decomposition), 0, -1))

        def forward(block: np.ndarray) -> np.ndarray:
            feed = {"rgb": _nchw(block[..., :3])}
            if block.shape[2] > 3:
                feed["aux"] = _nchw(block[..., 3:])
            return np.clip(self.session.run(None, feed)[0][0].transpose(1, 2, 0), 0, 1)

        return tiled_apply(planes, forward, tile=tile, overlap=int(self.config.get("receptive_radius", 0)),
                           multiple=int(self.config.get("size_multiple", 1)), out_channels=3)


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
