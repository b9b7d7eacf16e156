"""The peers' side of benchmarks/peers.py: runs inside a peer's own virtual environment (no
edge_albert there), converts the student with that peer's tools and writes the files and a
``driver.json`` of what it did; a recipe that fails is recorded with its error.

    <peer venv>/bin/python benchmarks/peer_driver.py --driver optimum --model M --out O ...

One module per peer (peer_optimum.py, peer_litert.py); stdlib and numpy only here.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: each peer venv: the pip requirements it is built from (torch pinned: a bare "torch" would
#: pull a CUDA build), and the packages whose versions the rows record
VENVS: dict[str, dict[str, Any]] = {
    "optimum": {
        "requirements": ["torch==2.13.0", "optimum-onnx[onnxruntime]==0.1.0", "datasets"],
        "record": ["optimum", "optimum-onnx", "transformers", "torch", "onnx", "onnxruntime",
                   "datasets", "numpy"],
        # why it cannot share the project's environment: checked with pip --dry-run at build
        "coinstall": ["optimum-onnx[onnxruntime]==0.1.0"],
    },
    "litert-torch": {
        "requirements": ["torch==2.13.0", "litert-torch==0.10.0"],
        "record": ["litert-torch", "ai-edge-quantizer", "ai-edge-litert", "litert-converter",
                   "torchao", "transformers", "torch", "jax", "numpy"],
        "coinstall": ["litert-torch==0.10.0"],
    },
}
PEERS = ("optimum", "litert-torch", "torch.ao")
MARKER = ".edge-albert-peer.json"




def first_lines(exc: BaseException, n: int = 3, width: int = 600) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = [x for x in text.splitlines() if x.strip()]
    return " | ".join(lines[:n])[:width]


def versions(names: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for n in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[n] = metadata.version(n)
    return out


def file_size(path: Path) -> int:
    """Bytes of a model file plus its external-data file, if any."""
    total = path.stat().st_size
    for extra in (path.with_name(path.name + ".data"), path.with_name(path.name + "_data")):
        if extra.is_file():
            total += extra.stat().st_size
    return total




def load_calibration(path: str):
    import numpy as np

    data = np.load(path)
    return [{k: data[k][i:i + 1] for k in INPUTS} for i in range(len(data["input_ids"]))]


def attempt(rows: list[dict], recipe: str, short: str, fn: Callable[[], Path],
             **extra: Any) -> Path | None:
    """Run one recipe; record its file, or its error (a peer's failure is a result)."""
    t = time.perf_counter()
    try:
        path = fn()
        rows.append({"recipe": recipe, "short": short, "file": str(path),
                     "seconds": round(time.perf_counter() - t, 2), **extra})
        return path
    except Exception as exc:
        rows.append({"recipe": recipe, "short": short, "error": first_lines(exc),
                     "seconds": round(time.perf_counter() - t, 2),
                     "traceback": traceback.format_exc()[-3000:], **extra})
        return None


def driver_main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", required=True, choices=list(VENVS))
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calibration", required=True, help=".npz of padded calibration rows")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    if args.driver == "optimum":
        from peer_optimum import drive
    else:
        from peer_litert import drive
    try:
        rows = drive(args.model, args.out, args.calibration)
        fatal = None
    except Exception as exc:
        rows, fatal = [], {"error": first_lines(exc), "traceback": traceback.format_exc()[-3000:]}
    result = {"rows": rows, "fatal": fatal, "python": sys.version.split()[0],
              "versions": versions(VENVS[args.driver]["record"])}
    (args.out / "driver.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0




if __name__ == "__main__":
    sys.exit(driver_main(sys.argv[1:]))
