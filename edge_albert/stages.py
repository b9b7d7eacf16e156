"""The stages as one public surface, in pipeline order.

Every stage is ``run_<stage>(config, *inputs, out_dir, *, force=False, progress=None) ->
Manifest``: a frozen config dataclass (one per stage, its recipe table named like the stage),
its input artifacts or data, and the artifact directory it writes atomically with a
``manifest.json``. ``progress``: None or True shows progress bars, False is silent (a callable
receives the bundle's messages). The names load lazily, so importing this module stays light.

    from edge_albert.stages import DistillConfig, run_distill
    run_distill(DistillConfig(student="pruned", flops=0.33), "teacher/", train, dev, "student/")
"""
from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "TokenizerConfig": ".config", "run_tokenizer": ".tokenizer_train",
    "FinetuneConfig": ".config", "run_finetune": ".finetune",
    "DistillConfig": ".config", "run_distill": ".distill",
    "TrimVocabConfig": ".trim_vocab", "run_trim_vocab": ".trim_vocab",
    "QuantizeConfig": ".converters.quantize", "run_quantize": ".converters.quantize",
    "ConvertConfig": ".converters.convert", "run_convert": ".converters.convert",
    "ValidateConfig": ".validate", "run_validate": ".validate",
    "BundleConfig": ".bundle", "run_bundle": ".bundle",
    "run_pipeline": ".pipeline", "Manifest": ".artifacts",
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name], __package__), name)


def __dir__() -> list[str]:
    return __all__
