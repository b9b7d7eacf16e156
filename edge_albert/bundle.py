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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import Manifest, sha256_file, verify, write_artifact
from .data import read_dataset
from .errors import ArtifactError, ConfigError, DataError

TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.txt")
CODE_MODULES = ("errors.py", "artifacts.py", "data.py")
# Raspberry Pi OS Bookworm: Python 3.11, aarch64. What the runtime needs, nothing heavier.
REQUIREMENT_MINIMUMS = {"numpy": "1.24", "sentencepiece": "0.1.99", "tokenizers": "0.19",
                        "onnxruntime": "1.18", "ai-edge-litert": "2.0"}


class Target(str, enum.Enum):
    RPI = "rpi"
    ANDROID = "android"


@dataclass(frozen=True)
class BundleConfig:
    """How to bundle. ``models``: file names or precisions to keep (default: all the target runs).
    ``reference``: ``fp32`` (run the artifact's fp32 file), a model file name, or a file path."""

    target: Target = Target.RPI
    models: tuple[str, ...] = ()
    reference: str = "fp32"
    text_columns: tuple[str, ...] = ()
    label_column: str | None = None
    threads: int = 2
    pin_versions: bool = True

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target.value
        return d


# ------------------------------------------------------------------------------ helpers
def _pick_models(conv: Manifest, cfg: BundleConfig) -> list[str]:
    from .runtime import model_files

    allowed = {Target.RPI: (".onnx", ".ort", ".tflite"), Target.ANDROID: (".ort", ".tflite")}
    names = [n for n in model_files(conv.path) if Path(n).suffix in allowed[cfg.target]]
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
            if name.endswith(suffix) and meta.get("precision") == "fp32" and "/" not in name:
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


RUN_SH = r"""#!/usr/bin/env bash
# Validate this bundle on the device (Raspberry Pi OS Bookworm, 64-bit; any Linux with Python 3.11).
#   bash run.sh                          create a venv (./.venv, or $VENV), install requirements.txt,
#                                        run the validator; writes ./device_results.json
#   bash run.sh --no-venv                use $PYTHON (default python3) as it is (also: EDGE_ALBERT_NO_VENV=1)
#   WHEELS=/path bash run.sh             install offline from a folder of wheels
# Other arguments go to the validator: --threads N, --models a,b, --out FILE, --device-name NAME.
# Then, on the host: edge-albert report --merge device_results.json REPORT_DIR
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
PYTHON="${PYTHON:-python3}"
USE_VENV=1
[ "${EDGE_ALBERT_NO_VENV:-0}" = 1 ] && USE_VENV=0
args=()
for a in "$@"; do
  if [ "$a" = --no-venv ]; then USE_VENV=0; else args+=("$a"); fi
done
case "$(uname -m)" in
  aarch64|arm64|x86_64) ;;
  *) echo "warning: $(uname -m): onnxruntime and ai-edge-litert publish wheels for 64-bit systems;" \
          "install the 64-bit Raspberry Pi OS" >&2 ;;
esac
if [ "$USE_VENV" = 1 ]; then
  VENV="${VENV:-$HERE/.venv}"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  if ! cmp -s requirements.txt "$VENV/.edge-albert-requirements"; then
    pip_args=(install --disable-pip-version-check -r requirements.txt)
    [ -n "${WHEELS:-}" ] && pip_args+=(--no-index --find-links "$WHEELS")
    "$VENV/bin/python" -m pip "${pip_args[@]}"
    cp requirements.txt "$VENV/.edge-albert-requirements"
  fi
  PYTHON="$VENV/bin/python"
fi
exec "$PYTHON" -m edge_albert.apps.validate . ${args[@]+"${args[@]}"}
"""


README_RPI = """edge-albert bundle for a Raspberry Pi (Raspberry Pi OS Bookworm, 64-bit, Python 3.11)

Copy this folder to the Pi and run:    bash run.sh
It creates a venv (.venv), installs requirements.txt (numpy, tokenizers, sentencepiece,
onnxruntime, ai-edge-litert: no torch, no tensorflow), checks every file's sha256 against
manifest.json, runs every model over eval/ and writes device_results.json: accuracy, F1, agreement
with the float model's predictions stored in eval/reference.json, latency p50/p90/p99 at batch 1,
load time, cold start and peak memory, plus the board's CPU, cores and flags (asimddp: int8 dot
product, Pi 5 yes, Pi 4 no).

Copy device_results.json back and merge it:  edge-albert report --merge device_results.json REPORT_DIR
Try it:           .venv/bin/python -m edge_albert.apps.demo .
Embed it:         see edge_albert/apps/embed_example.py
"""

README_ANDROID = """edge-albert bundle for an Android phone (arm64-v8a), measured with adb

1. Put TFLite's benchmark_model and ONNX Runtime's onnxruntime_perf_test (built for android
   arm64-v8a) in ./bin/ (run_android.sh's header says where to get them).
2. Connect the phone (USB debugging on) and run:   bash run_android.sh [--threads 4]
3. Merge the logs:  edge-albert report --merge-android logs/device.txt logs/*.log REPORT_DIR

inputs/eval_tokens.tsv holds every eval row's token ids (label, input_ids, token_type_ids), for an
app-side accuracy check; the tools themselves time one representative row (see run_android.sh).
"""


# ------------------------------------------------------------------------------ android
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tensor_proto(name: str, array: np.ndarray) -> bytes:
    """An ONNX ``TensorProto`` (dims, data_type, name, raw_data), serialised by hand so bundling
    needs no onnx package; onnxruntime_perf_test reads these as ``test_data_set_0/input_N.pb``."""
    types = {np.dtype(np.float32): 1, np.dtype(np.int32): 6, np.dtype(np.int64): 7}
    dt = types[np.dtype(array.dtype)]
    out = bytearray()
    for d in array.shape:
        out += _varint(1 << 3 | 0) + _varint(int(d))
    out += _varint(2 << 3 | 0) + _varint(dt)
    nb = name.encode("utf-8")
    out += _varint(8 << 3 | 2) + _varint(len(nb)) + nb
    raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    out += _varint(9 << 3 | 2) + _varint(len(raw)) + raw
    return bytes(out)


def _android_inputs(conv: Manifest, names: list[str], texts: list, labels_ids: list[int],
                    root: Path) -> dict[str, Any]:
    """Token ids of the eval set, and one representative row as tensors for both tools."""
    from .runtime import Classifier
    from .runtime.backends import open_backend
    from .runtime.tokenizer import TextTokenizer

    assert conv.path is not None
    tok = TextTokenizer.load(conv.path)
    first = conv.files[names[0]]
    max_len = int(first.get("seq_len") or 128)
    buckets = [int(b) for b in first.get("buckets") or [max_len]]
    inputs = root / "inputs"
    inputs.mkdir()
    # every eval row's ids (truncated as the runtime does, unpadded): label, ids, type ids
    clf_lines = ["# label_id\tinput_ids\ttoken_type_ids"]
    lengths = []
    for text, gold in zip(texts, labels_ids):
        pair = [text[1]] if isinstance(text, tuple) else None
        enc = tok.encode([text[0] if isinstance(text, tuple) else text], pair, max_length=max_len)
        n = int(enc.lengths[0])
        lengths.append(n)
        clf_lines.append(f"{gold}\t{' '.join(map(str, enc.input_ids[0, :n]))}\t"
                         f"{' '.join(map(str, enc.token_type_ids[0, :n]))}")
    (inputs / "eval_tokens.tsv").write_text("\n".join(clf_lines) + "\n", encoding="utf-8")
    # the representative row: the median token length, padded to its bucket
    order = np.argsort(lengths, kind="stable")
    idx = int(order[len(order) // 2])
    clf = Classifier.load(conv.path, model=names[0], verify=False)
    enc = clf.encode([texts[idx]])
    seq = int(enc.input_ids.shape[1])
    feeds = enc.as_dict()
    for dtype, suffix in ((np.int32, "i32"), (np.int64, "i64")):
        for k, v in feeds.items():
            (inputs / f"{k}.{suffix}.bin").write_bytes(v.astype(np.dtype(dtype).newbyteorder("<")).tobytes())
    ort_dir = inputs / "ort" / "test_data_set_0"
    ort_dir.mkdir(parents=True)
    tensors: dict[str, dict[str, Any]] = {}
    order_names = ("input_ids", "attention_mask", "token_type_ids")
    for name in names:
        be = open_backend(conv.path / name, threads=1)
        if name.endswith(".tflite"):
            details = be.runner.get_input_details()  # type: ignore[attr-defined]
            tensors[name] = {"inputs": [{"key": k, "tensor": details[k]["name"],
                                         "dtype": np.dtype(details[k]["dtype"]).name}
                                        for k in order_names if k in details]}
        else:
            tensors[name] = {"inputs": [{"key": n, "tensor": n, "dtype": "int64"}
                                        for n in be.input_names]}
    ort_inputs = next((t["inputs"] for n, t in tensors.items() if not n.endswith(".tflite")), None)
    for i, spec in enumerate(ort_inputs or [{"key": k} for k in order_names]):
        (ort_dir / f"input_{i}.pb").write_bytes(tensor_proto(spec["key"], feeds[spec["key"]].astype(np.int64)))
    return {"row": idx, "seq_len": seq, "tokens": lengths[idx], "buckets": buckets,
            "files": tensors}


def _android_script(names: list[str], conv: Manifest, info: dict[str, Any], eval_sha: str) -> str:
    seq = info["seq_len"]
    lines = [
        "#!/usr/bin/env bash",
        "# Benchmark this bundle's models on an Android phone (arm64-v8a) over adb, with the tools",
        "# the phone's apps would use: TFLite's benchmark_model and ONNX Runtime's onnxruntime_perf_test.",
        "#",
        "# Put the binaries (built for android arm64-v8a; you supply them) in ./bin/ before running:",
        "#   bin/benchmark_model        TFLite: the prebuilt android_aarch64_benchmark_model from",
        "#                              https://ai.google.dev/edge/litert/models/measurement (rename it), or",
        "#                              bazel build -c opt --config=android_arm64 //tensorflow/lite/tools/benchmark:benchmark_model",
        "#   bin/onnxruntime_perf_test  ONNX Runtime: ./build.sh --android --android_abi arm64-v8a --android_api 29",
        "#                              --android_sdk_path SDK --android_ndk_path NDK --config Release",
        "#                              (the binary is build/Android/Release/onnxruntime_perf_test; put",
        "#                              libonnxruntime.so beside it in bin/ if your build made one)",
        "# A missing binary skips that tool's files. Needs adb on PATH and one phone (or --serial).",
        "#",
        "#   bash run_android.sh [--serial SERIAL] [--threads N] [--runs N]",
        "# Then, on the host:",
        "#   edge-albert report --merge-android logs/device.txt logs/*.log REPORT_DIR",
        (f"# Every file runs batch 1 on eval row {info['row']} ({info['tokens']} tokens, the median),"
        f" padded to {seq}."),
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        'cd "$HERE"',
        "THREADS=4; RUNS=100; WARMUP=5; SERIAL=\"${ANDROID_SERIAL:-}\"",
        "while [ $# -gt 0 ]; do",
        "  case \"$1\" in",
        "    --serial) SERIAL=\"$2\"; shift 2 ;;",
        "    --threads) THREADS=\"$2\"; shift 2 ;;",
        "    --runs) RUNS=\"$2\"; shift 2 ;;",
        "    *) echo \"error: unknown option $1\" >&2; exit 2 ;;",
        "  esac",
        "done",
        "ADB=(adb); [ -n \"$SERIAL\" ] && ADB+=(-s \"$SERIAL\")",
        "DEV=/data/local/tmp/edge-albert",
        "command -v adb >/dev/null || { echo 'error: adb not found on PATH (Android platform-tools)' >&2; exit 3; }",
        "\"${ADB[@]}\" get-state >/dev/null || { echo 'error: no device: connect one with USB debugging on' >&2; exit 3; }",
        "mkdir -p logs",
        "\"${ADB[@]}\" shell \"rm -rf $DEV && mkdir -p $DEV/inputs $DEV/ort\"",
        ("{ echo 'edge-albert-device: android'; \"${ADB[@]}\" shell getprop | grep -E"
        " 'ro\\.product\\.(model|manufacturer|cpu\\.abi)\\]|ro\\.build\\.version\\.(release|sdk)\\]|"
        "ro\\.soc\\.(model|manufacturer)\\]|ro\\.board\\.platform\\]' || true;"
        " echo \"cores: $(\"${ADB[@]}\" shell nproc | tr -d '\\r')\"; echo '--- /proc/cpuinfo';"
        " \"${ADB[@]}\" shell cat /proc/cpuinfo; } > logs/device.txt"),
        "\"${ADB[@]}\" push inputs/*.bin \"$DEV/inputs/\" >/dev/null",
        "header() {  # the tool, the file, its sha256 and size, the eval set: read by report --merge-android",
        (f"  echo \"# edge-albert: tool=$1 model=$2 sha256=$3 size_bytes=$4 threads=$THREADS runs=$RUNS"
        f" seq_len={seq} eval_sha256={eval_sha}\""),
        "}",
        "HAVE_TFLITE=0; HAVE_ORT=0",
        ("if [ -x bin/benchmark_model ]; then \"${ADB[@]}\" push bin/benchmark_model \"$DEV/\" >/dev/null;"
        " \"${ADB[@]}\" shell chmod 755 \"$DEV/benchmark_model\"; HAVE_TFLITE=1;"
        " else echo 'note: bin/benchmark_model missing: skipping the .tflite files' >&2; fi"),
        ("if [ -x bin/onnxruntime_perf_test ]; then \"${ADB[@]}\" push bin/onnxruntime_perf_test \"$DEV/\" >/dev/null;"
        " for so in bin/*.so; do [ -e \"$so\" ] && \"${ADB[@]}\" push \"$so\" \"$DEV/\" >/dev/null; done;"
        " \"${ADB[@]}\" shell chmod 755 \"$DEV/onnxruntime_perf_test\"; HAVE_ORT=1;"
        " else echo 'note: bin/onnxruntime_perf_test missing: skipping the .ort files' >&2; fi"),
    ]
    for name in names:
        meta = conv.files[name]
        tensors = info["files"][name]["inputs"]
        if name.endswith(".tflite"):
            suffix = "i32" if all(t["dtype"] == "int32" for t in tensors) else "i64"
            layers = ",".join(t["tensor"] for t in tensors)
            shapes = ":".join(f"1,{seq}" for _ in tensors)
            values = ",".join(f"{t['tensor'].replace(':', '::')}:$DEV/inputs/{t['key']}.{suffix}.bin"
                              for t in tensors)
            log = f"logs/benchmark_model__{name}.log"
            lines += [
                "if [ $HAVE_TFLITE = 1 ]; then",
                f"  echo 'benchmark_model {name}' >&2",
                f"  \"${{ADB[@]}}\" push {name} \"$DEV/\" >/dev/null",
                (f"  {{ header benchmark_model {name} {meta['sha256']} {meta['size_bytes']};"
                f" \"${{ADB[@]}}\" shell \"$DEV/benchmark_model --graph=$DEV/{name}"
                f" --num_threads=$THREADS --num_runs=$RUNS --warmup_runs=$WARMUP --use_xnnpack=true"
                f" --report_peak_memory_footprint=true --input_layer={layers}"
                f" --input_layer_shape={shapes} --input_layer_value_files={values}\" 2>&1; }}"
                f" > {log} || echo 'warning: benchmark_model failed, see {log}' >&2"),
                "fi",
            ]
        else:
            stem = name.rsplit(".", 1)[0]
            log = f"logs/onnxruntime_perf_test__{name}.log"
            lines += [
                "if [ $HAVE_ORT = 1 ]; then",
                f"  echo 'onnxruntime_perf_test {name}' >&2",
                f"  \"${{ADB[@]}}\" shell \"mkdir -p $DEV/ort/{stem}\"",
                f"  \"${{ADB[@]}}\" push {name} \"$DEV/ort/{stem}/\" >/dev/null",
                f"  \"${{ADB[@]}}\" push inputs/ort/test_data_set_0 \"$DEV/ort/{stem}/\" >/dev/null",
                (f"  {{ header onnxruntime_perf_test {name} {meta['sha256']} {meta['size_bytes']};"
                f" \"${{ADB[@]}}\" shell \"cd $DEV && LD_LIBRARY_PATH=$DEV ./onnxruntime_perf_test"
                f" -e cpu -m times -r $RUNS -x $THREADS -y 1 -s $DEV/ort/{stem}/{name}\" 2>&1; }}"
                f" > {log} || echo 'warning: onnxruntime_perf_test failed, see {log}' >&2"),
                "fi",
            ]
    lines += [("echo \"logs in $HERE/logs; merge: edge-albert report --merge-android"
              " logs/device.txt logs/*.log REPORT_DIR\" >&2"), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the stage
def run_bundle(config: BundleConfig | Target | str, artifacts_dir: str | Path,
               data_file: str | Path, out_dir: str | Path, *, force: bool = False,
               log: Callable[[str], None] | None = None) -> Manifest:
    """Write a bundle for ``config.target``; returns its manifest. ``config`` may also be just
    the target (``"rpi"``, ``"android"``), with every other setting at its default."""
    if not isinstance(config, BundleConfig):
        try:
            config = BundleConfig(target=Target(config))
        except ValueError:
            raise ConfigError(f"unknown bundle target {config!r} (rpi, android)",
                              key="bundle.target") from None
    say = log or (lambda s: None)
    conv = verify(artifacts_dir, stage="convert")
    assert conv.path is not None
    data_file = Path(data_file)
    ds = read_dataset(data_file, text_columns=list(config.text_columns) or None,
                      label_column=config.label_column)
    labels = [str(x) for x in conv.extra.get("labels") or []]
    if not labels and (conv.path / "labels.txt").is_file():
        labels = [x for x in (conv.path / "labels.txt").read_text(encoding="utf-8").splitlines() if x]
    labels = labels or ds.label_names()
    gold = ds.label_ids(labels)
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
        for name in TOKENIZER_FILES + ("labels.txt",):
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
                     "label_column": ds.label_column},
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
            (root / "run.sh").write_text(RUN_SH, encoding="utf-8")
            (root / "run.sh").chmod(0o755)
            (root / "README.txt").write_text(README_RPI, encoding="utf-8")
            extra["code"] = code
            extra["run"] = "bash run.sh   (or: python -m edge_albert.apps.validate .)"
        else:
            info = _android_inputs(conv, names, texts, gold, root)
            if (conv.path / "required_operators.config").is_file():
                shutil.copy2(conv.path / "required_operators.config", root / "required_operators.config")
            (root / "run_android.sh").write_text(_android_script(names, conv, info, eval_sha),
                                                 encoding="utf-8")
            (root / "run_android.sh").chmod(0o755)
            (root / "README.txt").write_text(README_ANDROID, encoding="utf-8")
            extra["android"] = {k: v for k, v in info.items() if k != "files"}
            extra["android"]["input_tensors"] = info["files"]
            extra["run"] = ("put benchmark_model / onnxruntime_perf_test in bin/, then bash"
                            " run_android.sh")
        w.extra = extra
    assert w.manifest is not None
    say(f"wrote {len(w.manifest.files)} files to {out_dir}")
    return w.manifest
