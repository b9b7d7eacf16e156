"""Run converted files on padded real inputs and compare their logits with torch.

:func:`run_file` runs an ``.onnx`` / ``.ort`` file in an onnxruntime ``InferenceSession``, a
``.tflite`` file in LiteRT's ``Interpreter`` (its signature runner, resized per batch) or a
``.pte`` program in ExecuTorch's runtime.
:func:`compare` gives max abs logit difference and top-1 agreement (:func:`text_in_parity`: for a
text-in file, on the texts its own tokenizer splits as the runtime does); :func:`gate` collects every
file that misses its tolerance (fp32 1e-4; fp16 1e-2, or three times what rounding the weights
to fp16 alone changes, :func:`fp16_rounding_diff`; int8 only reports) or returns a non-finite
logit, and raises one :class:`ConversionError` with the numbers of all of them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConversionError
from ..runtime.backends import ort_session_options
from .spec import (
    FP16_ROUNDING_MARGIN,
    INPUT_NAMES,
    OUTPUT_NAME,
    TFLITE_SIGNATURE,
    Format,
    Precision,
    tolerance,
)

Feed = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Parity:
    """One file against torch."""

    format: str
    precision: str
    max_abs_logit_diff: float
    agreement: float
    n: int
    tolerance: float | None
    finite: bool

    @property
    def passed(self) -> bool:
        if not self.finite:
            return False
        return self.tolerance is None or self.max_abs_logit_diff <= self.tolerance

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("format", "precision")}


def torch_logits(model, batches: Sequence[Feed], *, threads: int | None = None
                 ) -> list[np.ndarray]:
    """The torch model's logits, batch by batch; ``threads``: torch's thread count meanwhile
    (None: as it is)."""
    import torch

    saved = torch.get_num_threads()
    out = []
    try:
        if threads:
            torch.set_num_threads(threads)
        with torch.no_grad():
            for b in batches:
                feed = {n: torch.from_numpy(np.asarray(b[n], dtype=np.int64))
                        for n in INPUT_NAMES}
                out.append(model(**feed).logits.float().numpy())
    finally:
        torch.set_num_threads(saved)
    return out


def fp16_rounding_diff(model, batches: Sequence[Feed], ref: Sequence[np.ndarray]) -> float:
    """Max abs logit change on ``batches`` when every weight of ``model`` is rounded to fp16 and
    the forward stays fp32 (what an fp16-weight file computes, its graph aside): the error such
    a file carries however right its conversion is (see :func:`.spec.fp16_tolerance`)."""
    import copy

    import torch

    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.half().float())
    out = torch_logits(rounded, batches)
    return float(max(np.max(np.abs(o - r)) for o, r in zip(out, ref, strict=True)))


def run_file(path: str | Path, batches: Sequence[Feed], *, threads: int = 2) -> list[np.ndarray]:
    """Logits of a converted file, batch by batch."""
    path = Path(path)
    if path.suffix in (".onnx", ".ort"):
        return _run_ort(path, batches, threads)
    if path.suffix == ".tflite":
        return _run_tflite(path, batches, threads)
    if path.suffix == ".pte":
        from ..runtime.backends import PteBackend

        try:
            backend = PteBackend(path, threads=threads)
        except Exception as exc:
            raise ConversionError(f"ExecuTorch cannot load the file: {str(exc)[:300]}",
                                  where=path) from exc
        return [backend.run({n: np.asarray(b[n]) for n in INPUT_NAMES}) for b in batches]
    raise ValueError(f"cannot run {path.name}")


def _run_ort(path: Path, batches: Sequence[Feed], threads: int) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort_session_options(ort, threads)
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"onnxruntime cannot load the file: {str(exc).splitlines()[0][:300]}",
                              where=path) from exc
    return [sess.run([OUTPUT_NAME], {n: np.asarray(b[n], dtype=np.int64)
                                     for n in INPUT_NAMES})[0] for b in batches]


def _run_tflite(path: Path, batches: Sequence[Feed], threads: int) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path), num_threads=threads)
        runner = interp.get_signature_runner(TFLITE_SIGNATURE)
    except Exception as exc:
        raise ConversionError(f"LiteRT cannot load the file: {str(exc).splitlines()[0][:300]}",
                              where=path) from exc
    return [runner(**{n: np.asarray(b[n], dtype=np.int32) for n in INPUT_NAMES})[OUTPUT_NAME]
            for b in batches]


def compare(ref: Sequence[np.ndarray], out: Sequence[np.ndarray], *, fmt: Format | str,
            precision: Precision | str, tol: float | None = None) -> Parity:
    """``out`` against ``ref``; the gate is ``tol`` when given (an fp16 file's, measured on the
    model: :func:`.spec.fp16_tolerance`), else the precision's fixed one."""
    r = np.concatenate(list(ref))
    o = np.concatenate(list(out)).astype(np.float32)
    finite = bool(np.isfinite(o).all())
    diff = float(np.max(np.abs(o - r))) if finite else float("nan")
    agree = float(np.mean(o.argmax(-1) == r.argmax(-1))) if finite else 0.0
    return Parity(Format(fmt).value, Precision(precision).value, diff, agree, int(r.shape[0]),
                  tolerance(precision) if tol is None else tol, finite)


def text_in_parity(ref: list, out: list, texts: list[str], differ: list[int], fmt: Format,
                   precision: Precision, why: str, *, tol: float | None = None
                   ) -> tuple[Parity, dict, dict]:
    """A text-in file's parity, on the texts its own tokenizer splits as the runtime does, its
    agreement on every text, and the ``tokenization_checked`` record (``differ``: indices of
    the texts tokenized otherwise; ``why``: the reason recorded when there are any)."""
    other = set(differ)
    same = [i for i in range(len(texts)) if i not in other]
    par = compare([ref[i] for i in same], [out[i] for i in same], fmt=fmt, precision=precision,
                  tol=tol)
    every = compare(ref, out, fmt=fmt, precision=precision, tol=tol)
    checked = {"texts": len(texts), "ids_equal": len(same),
               "first_differences": [texts[i][:120] for i in differ[:5]],
               **({"why": why + "; parity counts the texts it tokenizes as the runtime does,"
                          " agreement_all_texts every text"} if differ else {})}
    return par, {**par.to_dict(), "agreement_all_texts": every.agreement}, checked


def gate(results: Mapping[str, Parity]) -> None:
    """One ConversionError naming every file that missed its gate, with the numbers."""
    bad: list[str] = []
    for name, p in results.items():
        if not p.finite:
            bad.append(f"{name} ({p.format} {p.precision}) returned non-finite logits")
        elif not p.passed:
            why = (f" ({FP16_ROUNDING_MARGIN:g} x the change rounding the weights to fp16 alone"
                   " causes, at least 0.01)" if p.precision == Precision.FP16.value else "")
            bad.append(f"{name} ({p.format} {p.precision}) max abs logit diff"
                       f" {p.max_abs_logit_diff:.3g} > {p.tolerance:.3g}{why} over {p.n} inputs"
                       f" (top-1 agreement {p.agreement:.1%})")
    if bad:
        raise ConversionError("parity gate missed: " + "; ".join(bad),
                              hint="run with -v for details; int8 files only report")


