"""The Android half of a bundle: token-id input files for TFLite's ``benchmark_model`` (raw
int32/int64) and ONNX Runtime's ``onnxruntime_perf_test`` (``test_data_set_0/input_N.pb``), and
``run_android.sh``, which pushes the models with adb, runs both tools and pulls their logs
(:mod:`~edge_albert.android_logs` parses them back).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import Manifest


def tensor_proto(name: str, array: np.ndarray) -> bytes:
    """An ONNX ``TensorProto``, as onnxruntime_perf_test reads ``test_data_set_0/input_N.pb``
    (written by onnx's own serialiser; onnx is part of the host toolchain)."""
    from onnx import numpy_helper

    return bytes(numpy_helper.from_array(np.ascontiguousarray(array), name=name)
                 .SerializeToString())


def android_inputs(conv: Manifest, names: list[str], texts: list, labels_ids: list[int],
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


def android_script(names: list[str], conv: Manifest, info: dict[str, Any], eval_sha: str) -> str:
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


__all__ = ["android_inputs", "android_script", "tensor_proto"]
