"""What the peer benchmark's two sides share (stdlib and numpy only: the peers' own virtual
environments have no edge_albert): the peers and their venv requirements, the model inputs, and
the helpers that record a recipe's file or its error."""
from __future__ import annotations

import contextlib
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


__all__ = ["INPUTS", "MARKER", "PEERS", "VENVS", "attempt", "file_size", "first_lines",
           "load_calibration", "versions"]
