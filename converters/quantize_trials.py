"""The rows of a quantize search: one :class:`Trial` per recipe, and the table they print as."""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

from ..errors import AccuracyGateError, ConversionError


class TrialStatus(str, enum.Enum):
    """What became of a recipe."""

    REFERENCE = "reference"  # the backend's fp32 file, the yardstick
    KEPT = "kept"  # the fastest within budget: written to the artifact
    WITHIN = "within budget"
    OVER = "over budget"
    FAILED = "failed"  # the quantizer, converter or interpreter raised: ``Trial.error``


@dataclasses.dataclass
class Trial:
    """One row of the trial table."""

    recipe: str
    backend: str
    precision: str
    settings: str
    status: TrialStatus | None = None
    accuracy: float | None = None
    drop: float | None = None  # points below the backend's fp32 file
    agreement: float | None = None  # top-1 agreement with the backend's fp32 file
    p50_ms: float | None = None
    latency_ms: dict[str, float] | None = None
    size_bytes: int | None = None
    int8_weights: int | None = None
    weight_ops: int | None = None
    int8_ops: int | None = None
    stored_weight_bytes: int | None = None
    seconds: float | None = None
    error: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status_text(self) -> str:
        """The status as the table shows it (a failure with its error)."""
        if self.status is TrialStatus.FAILED:
            return f"failed: {self.error}"
        return self.status.value if self.status is not None else ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status"] = self.status.value if self.status is not None else None
        return d


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(trials: Sequence[Trial]) -> str:
    """The trial table as Markdown (also what the CLI prints)."""
    head = ("| recipe | backend | settings | accuracy % | drop (pts) | agree % | p50 ms | size MB"
            " | int8 weights | status |")
    rows = [head, "|" + "---|" * 10]
    for t in trials:
        w = "-" if t.weight_ops is None else f"{t.int8_weights}/{t.weight_ops}"
        rows.append(
            f"| {t.recipe} | {t.backend} | {t.settings} | "
            f"{_fmt(None if t.accuracy is None else 100 * t.accuracy, '.2f')} | "
            f"{_fmt(t.drop, '+.2f')} | "
            f"{_fmt(None if t.agreement is None else 100 * t.agreement, '.1f')} | "
            f"{_fmt(t.p50_ms, '.3f')} | "
            f"{_fmt(None if t.size_bytes is None else t.size_bytes / 1e6, '.3f')} | {w} | "
            f"{t.status_text.replace('|', '/')}{' (see note)' if t.note else ''} |")
    notes = [f"- {t.recipe}: {t.note}" for t in trials if t.note]
    return "\n".join(rows) + "\n" + ("\nNotes:\n" + "\n".join(notes) + "\n" if notes else "")


def trials_markdown(trials: Sequence[Trial], config: Any, dev_ds: Any,
                    measured_on: dict[str, Any]) -> str:
    """trials.md: what was measured where (``config``: the search's QuantizeConfig), then the
    table."""
    return (f"# int8 recipe search\n\nMeasured on {measured_on['cpu']} ({measured_on['isa']}; int8"
            f" dot product: {'yes' if measured_on['int8_dot_product'] else 'no'}): the winner"
            " is this CPU class's; rerun the search on another.\n\n"
            f"Accuracy on {len(dev_ds)} dev rows ({dev_ds.path}); budget:"
            f" {config.max_drop:g} point(s) below each backend's fp32 file. Latency: median of"
            f" {config.latency_runs} batch-1 calls at sequence length {max(config.buckets)},"
            f" {config.threads} thread(s).\n\n" + format_table(trials))


def first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300] if not isinstance(exc, ConversionError) \
        else text[:300]




class QuantizeGateError(AccuracyGateError):
    """No int8 recipe of some backend stayed within the budget; ``trials`` holds every row."""

    def __init__(self, message: str, *, trials: Sequence[Trial], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.trials: list[Trial] = list(trials)


__all__ = ["QuantizeGateError", "Trial", "TrialStatus", "first_line", "format_table",
           "trials_markdown"]
