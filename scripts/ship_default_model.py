"""Package trained runs as the shipped default model.

    python scripts/ship_default_model.py runs/gaingrid/best.pt runs/gg-grey/best.pt

One checkpoint is shipped as it is; several ``tonegrid`` (or ``gaingrid``) checkpoints are
shipped as one ``tonegrid-ensemble`` (``gaingrid-ensemble``): their outputs averaged. Writes src/sice/weights/<registry name>.pt
(weights + provenance only, no optimiser state), src/sice/weights/<registry name>.onnx and its
.json config (the fast onnxruntime path): files are named after the model's registry name, so
`sice models` lists the shipped model under its real name and `-m <name>` loads it. Point
`sice.weights.DEFAULT_MODEL` at that name to make it the default.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from sice.models.onnx_export import export_onnx
from sice.models import load_checkpoint, save_checkpoint
from sice.models.checkpoint import read_checkpoint
from sice.models.gaingrid import ensemble_of
from sice.models.tonegrid import ToneGrid, tone_ensemble_of

WEIGHTS = Path(__file__).resolve().parent.parent / "src" / "sice" / "weights"


def _provenance(path: Path) -> dict:
    payload = read_checkpoint(path)
    meta = dict(payload.get("meta", {}))
    meta.update({"trained_from": str(path), "step": payload.get("step"), "config": payload.get("config")})
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--name", default=None, help="file name stem (default: the model's registry name)")
    ap.add_argument("--work-size", type=int, default=None,
                    help="working resolution photos get their fields at (default: the model's own)")
    args = ap.parse_args()
    models = [load_checkpoint(p) for p in args.checkpoints]
    metas = [_provenance(p) for p in args.checkpoints]
    if len(models) == 1:
        model, meta = models[0], metas[0]
    else:  # the mean of several models of one family
        model = tone_ensemble_of(models) if isinstance(models[0], ToneGrid) else ensemble_of(models)
        meta = {"members": metas, "step": [m.get("step") for m in metas]}
    if args.work_size is not None:
        model.work_size = args.work_size
        model.sice_kwargs = {**getattr(model, "sice_kwargs", {}), "work_size": args.work_size}
    name = args.name or model.sice_config.name
    meta["licence"] = f"weights trained by the sice project on SICE Part1 (research use); see weights/{name}.md"
    model.sice_meta = meta  # the ONNX sidecar carries it too
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    pt = save_checkpoint(WEIGHTS / f"{name}.pt", model, meta=meta)
    onnx_path = export_onnx(model, WEIGHTS / f"{name}.onnx")
    for p in (pt, onnx_path):
        print(f"{p}  {p.stat().st_size / 1e6:.2f} MB  sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}")
    print(json.dumps({"model": model.sice_config.name, "step": meta.get("step")}))


if __name__ == "__main__":
    main()
