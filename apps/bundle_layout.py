"""What a bundle holds and where (written by ``edge_albert.bundle`` on the host, read on the device).

A bundle is an artifact directory of stage ``bundle``::

    manifest.json            every file's sha256; extra: target, labels, eval, reference, models
    model.<precision>.<fmt>  the model files, at the top (their manifest entries keep the convert
                             stage's format, precision, seq_len and buckets)
    spiece.model, tokenizer.json, tokenizer_config.json, labels.txt
    eval/<file>              the eval set, byte for byte (its sha256 identifies it in reports)
    eval/reference.json      the float model's stored logits and predictions on it
    rpi:     edge_albert/ (errors, artifacts, data, runtime/, apps/), requirements.txt, run.sh
    android: inputs/ (token-id tensors), run_android.sh

Torch-free.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import Manifest, verify
from ..errors import ArtifactError

STAGE = "bundle"
REFERENCE = "eval/reference.json"
REFERENCE_SCHEMA = "edge-albert/reference-predictions/v1"
RESULTS_SCHEMA = "edge-albert/device-results/v1"
RESULTS = "device_results.json"


@dataclass
class ReferencePredictions:
    """The float model's stored outputs on the eval set."""

    name: str
    predictions: np.ndarray           # (rows,) int
    logits: np.ndarray | None          # (rows, labels) float32, when stored
    meta: dict[str, Any]


@dataclass
class Bundle:
    path: Path
    manifest: Manifest

    @property
    def extra(self) -> dict[str, Any]:
        return self.manifest.extra

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.extra.get("labels") or []]

    @property
    def eval_path(self) -> Path:
        return self.path / self.extra["eval"]["path"]

    def reference(self) -> ReferencePredictions:
        path = self.path / self.extra.get("reference", {}).get("file", REFERENCE)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read the stored reference predictions ({exc})",
                                where=path) from None
        if raw.get("schema") != REFERENCE_SCHEMA or "predictions" not in raw:
            raise ArtifactError(f"not a reference-predictions file (schema {REFERENCE_SCHEMA})",
                                where=path)
        logits = raw.get("logits")
        return ReferencePredictions(
            name=str(raw.get("name", "reference")),
            predictions=np.asarray(raw["predictions"], dtype=np.int64),
            logits=None if logits is None else np.asarray(logits, dtype=np.float32),
            meta={k: v for k, v in raw.items() if k not in ("logits", "predictions")},
        )


def open_bundle(directory: str | Path, *, check: bool = True) -> Bundle:
    """Load a bundle; with ``check`` re-hash every file (ArtifactError naming the first bad one)."""
    directory = Path(directory)
    if check:
        manifest = verify(directory, stage=STAGE)
    else:
        from ..artifacts import load_manifest

        manifest = load_manifest(directory)
        if manifest.stage != STAGE:
            raise ArtifactError(f"is a {manifest.stage!r} artifact, expected a bundle",
                                where=directory / "manifest.json")
    if "eval" not in manifest.extra:
        raise ArtifactError("bundle manifest lacks extra.eval", where=directory / "manifest.json")
    return Bundle(directory, manifest)
