"""edge-albert: distil, int8-quantize and convert text classifiers into small ALBERTs for the edge.

This module stays light (no torch, tensorflow or onnxruntime at import): the CLI's ``--help`` and
the device runtime import it. Heavy parts load when first used.
"""
from __future__ import annotations

import logging as _logging
import os as _os

# In a source checkout the product card keeps runtime/, converters/ and apps/ at the top of the
# repo, while an installed wheel puts them under this package (pyproject's package-dir). Adding the
# checkout root to __path__ makes ``edge_albert.runtime`` resolve to ./runtime there as well, so
# there is one import name in both cases.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if (_os.path.isfile(_os.path.join(_root, "pyproject.toml"))
        and _os.path.isfile(_os.path.join(_root, "runtime", "__init__.py")) and _root not in __path__):
    __path__.append(_root)

# OpenMP threads that wait for work spin briefly, then sleep. Why: on a machine with neighbours
# (another training job, a second demo, an export), libgomp's default spin (300,000 rounds) made
# each process burn the cores the other needed: the demo teacher's training steps ran 4.2-6.2x
# slower beside one neighbour. Sleeping at once (OMP_WAIT_POLICY=PASSIVE, this package's setting
# until training learnt to share the cores) cost 15-25 % alone; 10,000 rounds cost nothing alone
# and, with training on one thread beside a neighbour (core_share.py), ran those steps faster
# than passive waiting both alone and beside one (benchmarks/results/neighbours.md, 2-core Xeon).
# libgomp (torch's OpenMP on Linux) reads it when torch loads it, so this works when edge_albert
# is imported before torch (the CLI always is); a wait policy or spin count the user set is kept.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

# ExecuTorch (the pte format's extra) installs torchao, which transformers then imports on its own
# import: torchao logs a warning for each CUDA-only kernel library a CPU machine cannot load, and
# torch's pytree one deprecation warning per torchao enum, on every command. Neither is about
# this package's work; a level the user set is left alone.
for _name in ("torchao", "torch.utils._pytree"):
    if _logging.getLogger(_name).level == _logging.NOTSET:
        _logging.getLogger(_name).setLevel(_logging.ERROR)

from .errors import (  # noqa: E402 - after the __path__ line above, which it may need
    AccuracyGateError,
    ArtifactError,
    ConfigError,
    ConversionError,
    DataError,
    EdgeAlbertError,
    ModelError,
    RuntimeBackendError,
    TokenizerError,
)

__version__ = "0.1.0"

__all__ = [
    "AccuracyGateError",
    "ArtifactError",
    "ConfigError",
    "ConversionError",
    "DataError",
    "EdgeAlbertError",
    "ModelError",
    "RuntimeBackendError",
    "TokenizerError",
    "__version__",
]
