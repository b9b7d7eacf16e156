"""``bundle``: a folder to copy to a Raspberry Pi or an Android phone, whose results merge back.

    run_bundle(BundleConfig(target=Target.RPI), "artifacts/convert", "dev.tsv", "bundle-pi")

From a convert artifact and an eval file it writes an artifact directory of stage ``bundle``
(layout in :mod:`edge_albert.apps.bundle_layout`):

* **rpi**: every model file, the tokenizer and labels, the eval file byte for byte, the float
  model's stored predictions, a copy of the torch-free code as an importable ``edge_albert/``
  package (``__init__``, errors, artifacts, data, runtime/, apps/), ``requirements.txt`` for
  Raspberry Pi OS Bookworm (Python 3.11, aarch64) and ``run.sh`` (venv, install, validate).
* **android**: the .tflite and .ort files, the tokenizer, the eval file and its token ids
  (``inputs/eval_tokens.tsv``), one representative eval row as raw input tensors for TFLite's
  ``benchmark_model`` and as TensorProto files for ``onnxruntime_perf_test``, and
  ``run_android.sh`` (adb push, run both tools, pull their logs for ``report --merge-android``).

**The float model's stored predictions** (``eval/reference.json``): by default the artifact's
fp32 file (``model.fp32.onnx``, else ``.tflite``, else ``.ort``) is run through the device runtime
on this host over the whole eval set at batch 1, and its logits and argmax are stored. The
convert stage's parity check ties that file to the torch model (max abs logit difference about
1e-8), so it stands for the float model while the device needs no torch. ``reference`` may
instead name another model file of the artifact, or a ``.json`` (``{"logits": [[...]]}`` or
``{"predictions": [...]}``) or ``.npy`` (logits) file made elsewhere, e.g. from the torch model.
"""
from __future__ import annotations

import enum
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import Manifest, sha256_file, verify, write_artifact
from .bundle_android import android_inputs, android_script
from .data import label_mapping, read_dataset
from .errors import ArtifactError, ConfigError, DataError
from .runtime.tokenizer import TOKENIZER_FILES


def template(name: str) -> str:
    """A file of ``edge_albert/templates`` (the bundle's run script and READMEs)."""
    from importlib import resources

    return resources.files("edge_albert").joinpath("templates", name).read_text(encoding="utf-8")


CODE_MODULES = ("errors.py", "artifacts.py", "data.py")
# Raspberry Pi OS Bookworm: Python 3.11, aarch64. What the runtime needs, nothing heavier.
REQUIREMENT_MINIMUMS = {"numpy": "1.24", "sentencepiece": "0.1.99", "tokenizers": "0.19",
                        "onnxruntime": "1.18", "ai-edge-litert": "2.0"}


class Target(str, enum.Enum):
    RPI = "rpi"
    ANDROID = "android"
    NONE = "none"  # in a recipe: no bundle stage


@dataclass(frozen=True)
class BundleConfig:
    """How to bundle. ``models``: file names or precisions to keep (default: all the target runs).
    ``reference``: ``fp32`` (run the artifact's fp32 file), a model file name, or a file path."""

    target: Target = Target.RPI
    models: tuple[str, ...] = ()
    reference: str = "fp32"
    text_columns: tuple[str, ...] = ()
    label_column: str = ""  # empty: detected
    threads: int = 2
    pin_versions: bool = True
    label_map: str = ""  # "0=negative,1=positive": the eval file's labels -> the model's

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target.value
        return d


# ------------------------------------------------------------------------------ helpers
def _mediapipe_files(conv: Manifest, root: Path, w: Any) -> list[str]:
    """Copy the artifact's MediaPipe TextClassifier files under ``mediapipe/`` (for the app:
    MediaPipe tokenizes, so the adb scripts do not time them)."""
    from .runtime.backends import MEDIAPIPE_SUFFIX

    assert conv.path is not None
    names = sorted(n for n in conv.files if n.endswith(MEDIAPIPE_SUFFIX) and "/" not in n)
    if names:
        (root / "mediapipe").mkdir()
    for n in names:
        shutil.copy2(conv.path / n, root / "mediapipe" / n)
        w.describe(f"mediapipe/{n}", **{k: v for k, v in conv.files[n].items()
                                        if k not in ("sha256", "size_bytes")})
    return names


def _pick_models(conv: Manifest, cfg: BundleConfig) -> list[str]:
    from .runtime import model_files
    from .runtime.backends import E2E_SUFFIX, MEDIAPIPE_SUFFIX

    allowed = {Target.RPI: (".onnx", ".ort", ".tflite"), Target.ANDROID: (".ort", ".tflite")}
    assert conv.path is not None
    # text-in files need onnxruntime-extensions or MediaPipe, which the bundles' device scripts
    # do not run (the Android bundle ships the MediaPipe files apart, for the app: see bundle)
    names = [n for n in model_files(conv.path) if Path(n).suffix in allowed[cfg.target]
             and not n.endswith((E2E_SUFFIX, MEDIAPIPE_SUFFIX))]
    if cfg.models:
        wanted = set(cfg.models)
        known = set(names) | {conv.files[n].get("precision") for n in names}
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigError(f"--models names {', '.join(unknown)}, which the artifact lacks"
                              f" (files: {', '.join(names)})", key="models")
        names = [n for n in names if n in wanted or conv.files[n].get("precision") in wanted]
    if not names:
        raise ArtifactError(f"no model file the {cfg.target.value} target runs"
                            f" ({', '.join(allowed[cfg.target])})", where=conv.path)
    return names


def _fp32_file(conv: Manifest) -> str:
    for suffix in (".onnx", ".tflite", ".ort"):
        for name, meta in conv.files.items():
            if (name.endswith(suffix) and meta.get("precision") == "fp32" and "/" not in name
                    and meta.get("format") != "onnx-e2e"):
                return name
    raise ArtifactError("the artifact has no fp32 model file to make the reference predictions",
                        where=conv.path, hint="convert with fp32 among --precisions, or pass"
                        " --reference-predictions FILE")


def reference_predictions(conv: Manifest, texts: list, gold: list[int], labels: list[str],
                          spec: str, *, eval_sha256: str) -> dict[str, Any]:
    """The float model's stored outputs on the eval set (see the module docstring)."""
    from .runtime import Classifier
    from .runtime.metrics import accuracy, f1

    assert conv.path is not None
    logits: np.ndarray | None
    spec_path = Path(spec)
    if spec == "fp32" or spec in conv.files:
        name = _fp32_file(conv) if spec == "fp32" else spec
        clf = Classifier.load(conv.path, model=name, threads=1)
        logits = clf.logits(texts, batch_size=1)
        preds = logits.argmax(-1)
        versions = ", ".join(f"{k} {v}" for k, v in clf.info.items()
                             if k not in ("format", "precision", "size_bytes", "backend"))
        produced = f"{name} through edge_albert.runtime ({versions}) on the bundling host, batch 1"
        meta: dict[str, Any] = {"name": name, "model_sha256": conv.files[name]["sha256"],
                                "parity_vs_torch": conv.files[name].get("parity")}
    elif spec_path.is_file():
        name = spec_path.name
        if spec_path.suffix == ".npy":
            logits = np.load(spec_path).astype(np.float32)
            preds = logits.argmax(-1)
        elif spec_path.suffix == ".json":
            try:
                raw = json.loads(spec_path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise DataError(f"not valid JSON ({exc})", where=spec_path) from None
            if isinstance(raw, dict) and raw.get("logits") is not None:
                logits = np.asarray(raw["logits"], dtype=np.float32)
                preds = logits.argmax(-1)
            elif isinstance(raw, dict) and raw.get("predictions") is not None:
                logits = None
                index = {n: i for i, n in enumerate(labels)}
                preds = np.asarray([index.get(str(p), p) for p in raw["predictions"]], dtype=np.int64)
            else:
                raise DataError('expected {"logits": [[...]]} or {"predictions": [...]}',
                                where=spec_path)
            name = str(raw.get("name", name))
        else:
            raise DataError("reference predictions must be .json or .npy", where=spec_path)
        produced = f"supplied file {spec_path}"
        meta = {"name": name, "file_sha256": sha256_file(spec_path)}
        if len(preds) != len(gold) or (logits is not None and logits.ndim != 2):
            raise DataError(f"{len(preds)} reference rows for {len(gold)} eval rows",
                            where=spec_path)
    else:
        raise ConfigError(f"{spec!r} is neither 'fp32', a model file of the artifact, nor a file",
                          key="reference-predictions")
    return {
        "schema": "edge-albert/reference-predictions/v1",
        **meta,
        "produced_by": produced,
        "eval_sha256": eval_sha256,
        "rows": len(gold),
        "labels": labels,
        "batch_size": 1,
        "accuracy": round(accuracy(preds, np.asarray(gold)), 6),
        "f1": round(f1(preds, np.asarray(gold), max(2, len(labels))), 6),
        "predictions": [int(p) for p in preds],
        "logits": None if logits is None else [[float(x) for x in r] for r in logits],
    }


def _package_dirs() -> dict[str, Path]:
    import edge_albert

    from . import apps, runtime  # type: ignore[attr-defined]  # mapped by package-dir / __path__

    return {"edge_albert": Path(edge_albert.__file__).parent,
            "runtime": Path(runtime.__file__).parent, "apps": Path(apps.__file__).parent}


def _copy_code(dest: Path) -> list[str]:
    """The torch-free code as an importable package: edge_albert/{__init__,errors,artifacts,data}.py,
    runtime/, apps/. Returns the copied paths (relative to ``dest``)."""
    from . import __version__

    src = _package_dirs()
    pkg = dest / "edge_albert"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        '"""edge-albert, as copied into a bundle: the torch-free device part only (errors,\n'
        'artifacts, data, runtime, apps). Run the validator with\n'
        '``python -m edge_albert.apps.validate .`` from the bundle directory."""\n'
        f'__version__ = "{__version__}"\n', encoding="utf-8")
    for mod in CODE_MODULES:
        shutil.copy2(src["edge_albert"] / mod, pkg / mod)
    for sub in ("runtime", "apps"):
        (pkg / sub).mkdir()
        for f in sorted(src[sub].glob("*.py")):
            shutil.copy2(f, pkg / sub / f.name)
    return sorted(p.relative_to(dest).as_posix() for p in pkg.rglob("*.py"))


def requirements_text(formats: set[str], pin: bool = True) -> str:
    """requirements.txt for Raspberry Pi OS Bookworm (Python 3.11, aarch64)."""
    from importlib import metadata

    def req(name: str) -> str:
        if pin:
            try:
                return f"{name}=={metadata.version(name)}"
            except metadata.PackageNotFoundError:
                pass
        return f"{name}>={REQUIREMENT_MINIMUMS[name]}"

    lines = [
        "# Raspberry Pi OS Bookworm (Debian 12), 64-bit (aarch64), Python 3.11: Pi 4 (Cortex-A72) or Pi 5",
        "# (Cortex-A76, dot-product int8). Pinned to the versions the bundling host ran, so the device",
        "# runs what the reference was measured with. A 32-bit OS (armv7l) has no wheels for these.",
        req("numpy"), req("sentencepiece"), req("tokenizers"),
    ]
    if formats & {"onnx", "ort"}:
        lines.append(req("onnxruntime"))
    if "tflite" in formats:
        lines += ["# TFLite interpreter: ai-edge-litert (tflite-runtime 2.14, the last release, cannot load",
                  "# files from TensorFlow >= 2.16's converter and needs numpy < 2).", req("ai-edge-litert")]
    return "\n".join(lines) + "\n"







# ------------------------------------------------------------------------------ the stage
def run_bundle(config: BundleConfig, artifacts_dir: str | Path, data_file: str | Path,
               out_dir: str | Path, *, force: bool = False,
               progress: bool | Callable[[str], None] | None = None) -> Manifest:
    """Write a bundle for ``config.target``; returns its manifest. ``progress``: a callable
    gets the progress messages (False: none; otherwise they go to stderr)."""
    if config.target is Target.NONE:
        raise ConfigError("target 'none' writes no bundle (rpi or android)", key="bundle.target")

    def say(message: str) -> None:
        if callable(progress):
            progress(message)
        elif progress is not False:
            print(message, file=sys.stderr)
    conv = verify(artifacts_dir, stage="convert")
    assert conv.path is not None
    data_file = Path(data_file)
    ds = read_dataset(data_file, text_columns=list(config.text_columns) or None,
                      label_column=config.label_column or None)
    labels = [str(x) for x in conv.extra.get("labels") or []]
    if not labels and (conv.path / "labels.txt").is_file():
        labels = [x for x in (conv.path / "labels.txt").read_text(encoding="utf-8").splitlines() if x]
    labels = labels or ds.label_names()
    mapping = label_mapping(ds.labels, labels, config.label_map, where=data_file)
    gold = ds.label_ids(labels, mapping)
    texts = ds.inputs()
    names = _pick_models(conv, config)
    eval_sha = sha256_file(data_file)
    say(f"reference predictions ({config.reference}) over {len(texts)} eval rows")
    ref = reference_predictions(conv, texts, gold, labels, config.reference, eval_sha256=eval_sha)
    eval_rel = f"eval/{data_file.name}"
    formats = {str(conv.files[n].get("format") or Path(n).suffix[1:]) for n in names}
    with write_artifact(out_dir, stage="bundle", config=config.to_json(), inputs=[conv.path],
                        force=force) as w:
        root = w.path
        for name in names:
            shutil.copy2(conv.path / name, root / name)
            w.describe(name, **{k: v for k, v in conv.files[name].items()
                                if k not in ("sha256", "size_bytes")})
        for name in (*TOKENIZER_FILES, "labels.txt"):
            if (conv.path / name).is_file():
                shutil.copy2(conv.path / name, root / name)
        if not (root / "labels.txt").is_file():
            (root / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
        (root / "eval").mkdir()
        shutil.copy2(data_file, root / eval_rel)
        (root / "eval" / "reference.json").write_text(json.dumps(ref) + "\n", encoding="utf-8")
        extra: dict[str, Any] = {
            "target": config.target.value,
            "labels": labels,
            "task": "pair" if ds.is_pair else "single",
            "models": names,
            "eval": {"path": eval_rel, "rows": len(texts), "sha256": eval_sha,
                     "source": str(data_file.resolve()), "text_columns": list(ds.text_columns),
                     "label_column": ds.label_column, "label_map": mapping},
            "reference": {"file": "eval/reference.json", "name": ref["name"],
                          "accuracy": ref["accuracy"], "f1": ref["f1"],
                          "produced_by": ref["produced_by"]},
            "interpreters": {
                "onnx": "onnxruntime (CPU execution provider)",
                "tflite": "ai-edge-litert >= 2 (tflite-runtime 2.14 cannot load these files)",
            },
        }
        for key in ("vocab_size", "parameters", "model_type"):
            if key in conv.extra:
                extra[key] = conv.extra[key]
        if config.target is Target.RPI:
            code = _copy_code(root)
            (root / "requirements.txt").write_text(requirements_text(formats, config.pin_versions),
                                                   encoding="utf-8")
            (root / "run.sh").write_text(template("run.sh"), encoding="utf-8")
            (root / "run.sh").chmod(0o755)
            (root / "README.txt").write_text(template("README_rpi.txt"), encoding="utf-8")
            extra["code"] = code
            extra["run"] = "bash run.sh   (or: python -m edge_albert.apps.validate .)"
        else:
            info = android_inputs(conv, names, texts, gold, root)
            if (conv.path / "required_operators.config").is_file():
                shutil.copy2(conv.path / "required_operators.config", root / "required_operators.config")
            (root / "run_android.sh").write_text(android_script(names, conv, info, eval_sha),
                                                 encoding="utf-8")
            (root / "run_android.sh").chmod(0o755)
            readme = template("README_android.txt")
            mediapipe = _mediapipe_files(conv, root, w)
            if mediapipe:
                readme += template("README_mediapipe.txt").format(
                    files="\n".join(f"   mediapipe/{n}" for n in mediapipe),
                    first=mediapipe[0])
                extra["mediapipe"] = [f"mediapipe/{n}" for n in mediapipe]
            (root / "README.txt").write_text(readme, encoding="utf-8")
            extra["android"] = {k: v for k, v in info.items() if k != "files"}
            extra["android"]["input_tensors"] = info["files"]
            extra["run"] = ("put benchmark_model / onnxruntime_perf_test in bin/, then bash"
                            " run_android.sh")
        w.extra = extra
    assert w.manifest is not None
    say(f"wrote {len(w.manifest.files)} files to {out_dir}")
    return w.manifest
