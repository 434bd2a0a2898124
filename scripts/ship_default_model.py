"""Package a trained run as the shipped default model.

    python scripts/ship_default_model.py runs/gaingrid/best.pt

Writes src/sice/weights/gaingrid.pt (weights + provenance only, no optimiser state),
src/sice/weights/gaingrid.onnx and its .json config (the fast onnxruntime path).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from sice.export import export_onnx
from sice.models import load_checkpoint, save_checkpoint
from sice.models.checkpoint import read_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "src" / "sice" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", default="gaingrid")
    args = ap.parse_args()
    payload = read_checkpoint(args.checkpoint)
    model = load_checkpoint(args.checkpoint)
    meta = dict(payload.get("meta", {}))
    meta.update({
        "trained_from": str(args.checkpoint),
        "step": payload.get("step"),
        "config": payload.get("config"),
        "licence": "weights trained by the sice project on SICE Part1 (research use); see weights/gaingrid.md",
    })
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    pt = save_checkpoint(WEIGHTS / f"{args.name}.pt", model, meta=meta)
    onnx_path = export_onnx(model, WEIGHTS / f"{args.name}.onnx")
    for p in (pt, onnx_path):
        print(f"{p}  {p.stat().st_size / 1e6:.2f} MB  sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}")
    print(json.dumps({k: meta[k] for k in ("step",) if k in meta}))


if __name__ == "__main__":
    main()
