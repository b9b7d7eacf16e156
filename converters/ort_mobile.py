"""ORT-format files for onnxruntime mobile, with onnxruntime's own converter.

``onnxruntime.tools.convert_onnx_models_to_ort`` turns every ``.onnx`` of a directory into an
``.ort`` flatbuffer next to it (fixed optimisations; the NCHWc layout transform is left out so one
file serves ARM and x86), and writes ``required_operators.config``: the ops all of them need,
the input of a reduced onnxruntime build (``build.sh --include_ops_by_config``).
"""
from __future__ import annotations

import contextlib
import gc
import io
import logging
import warnings
from pathlib import Path

from ..errors import ConversionError

CONFIG_NAME = "required_operators.config"


def convert_to_ort(onnx_dir: str | Path, *, target_platform: str = "arm") -> list[Path]:
    """Write ``<name>.ort`` for each ``<name>.onnx`` in ``onnx_dir`` and ``required_operators.config``.

    ``target_platform="arm"`` lets the optimiser keep int8 QDQ fusions meant for ARM devices (a Pi
    or a phone); the files still run on x86.
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    onnx_dir = Path(onnx_dir)
    sources = sorted(onnx_dir.glob("*.onnx"))
    if not sources:
        raise ConversionError("no .onnx files to convert to .ort", where=onnx_dir)
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)  # "Created config"
    log = io.StringIO()
    try:
        # onnxruntime's ORTFormatModelProcessor reads each .ort with open(...).read() and never
        # closes the file: collect those objects here, with their ResourceWarning silenced,
        # rather than let them surface later as an unraisable warning in someone else's code
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            convert_onnx_models_to_ort(onnx_dir, output_dir=onnx_dir,
                                       optimization_styles=[OptimizationStyle.Fixed],
                                       target_platform=target_platform)
            gc.collect()
    except Exception as exc:
        raise ConversionError(f"onnxruntime's ORT-format converter failed: "
                              f"{str(exc).splitlines()[0][:300]}", where=onnx_dir) from exc
    outs = [p.with_suffix(".ort") for p in sources]
    missing = [p.name for p in outs if not p.is_file()]
    if missing or not (onnx_dir / CONFIG_NAME).is_file():
        raise ConversionError(f"the ORT-format converter wrote no {', '.join(missing) or CONFIG_NAME}",
                              where=onnx_dir)
    _relative_config(onnx_dir / CONFIG_NAME)
    return outs


def _relative_config(path: Path) -> None:
    """The config's comment header names absolute source paths; keep only file names so the
    artifact does not depend on where it was built."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fixed = [f"# - {Path(ln[4:]).name}" if ln.startswith("# - ") else ln for ln in lines]
    path.write_text("\n".join(fixed) + "\n", encoding="utf-8")
