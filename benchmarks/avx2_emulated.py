"""Do the int8 files answer the same on an x86 CPU without VNNI? qemu-user as an AVX2-only CPU.

    python benchmarks/avx2_emulated.py                       # the default SST-2 artifact, 256 rows
    python benchmarks/avx2_emulated.py --artifact DIR --rows 64 --files model.int8-static.onnx

Each file runs on the first ``--rows`` SST-2 dev rows (batches of 8, padded to the batch's
bucket, 1 thread) twice: natively, and under ``qemu-x86_64 -cpu EPYC-Rome`` (AVX2, no AVX-512,
no VNNI), where ONNX Runtime's and XNNPACK's runtime dispatch pick their non-VNNI kernels (they
read CPUID, which qemu emulates). Writes ``benchmarks/results/avx2_emulated.json`` with the
agreement of the two runs' predictions, the largest logit difference and both accuracies.

Why: ONNX Runtime's u8 x s8 kernels without VNNI use ``vpmaddubsw``, whose int16 pair sums
saturate when weights use all 8 bits (ONNX Runtime's quantization docs: ``reduce_range``), so one
file can answer differently on the user's CPU than on the machine it was validated on. This is
how ``convert --target`` (``CpuTarget`` in ``converters/spec.py``) was chosen. Emulated time
means nothing (qemu runs AVX2 code 100-500x slower: ~7 minutes per ONNX file at 256 rows);
agreement does. The worker's CPU features are read with CPUID (numpy's dispatcher), not from
``/proc/cpuinfo``, which qemu-user passes through from the host.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, REPO, RESULTS, dump_json, machine

FILES = ("model.int8-dynamic.onnx", "model.int8-static.onnx", "model.int8-dynamic.tflite",
         "model.int8-static.tflite")
BUCKETS = (32, 64, 128)


def worker(artifact: Path, files: Sequence[str], rows: int, out: Path) -> None:
    """Logits of each file on the first ``rows`` dev rows (runs natively or under qemu)."""
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer
    from numpy._core._multiarray_umath import __cpu_features__ as cpu

    from edge_albert.data import read_dataset

    tok = TextTokenizer.load(artifact)
    texts = [str(t) for t in read_dataset(DATA / "sst2" / "dev.tsv").texts][:rows]
    res: dict[str, np.ndarray] = {}
    seconds = {}
    for name in files:
        t0 = time.perf_counter()
        backend = open_backend(artifact / name, threads=1)
        outs = []
        for i in range(0, len(texts), 8):
            feed = tok.encode(texts[i:i + 8], max_length=BUCKETS[-1], buckets=BUCKETS).as_dict()
            outs.append(backend.run(feed))
        res[name] = np.concatenate(outs)
        seconds[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {seconds[name]} s", file=sys.stderr, flush=True)
    feats = {k: bool(cpu.get(k)) for k in ("AVX2", "AVX512F", "AVX512VNNI")}
    np.savez(out, **{n.replace(".", "_"): v for n, v in res.items()})
    out.with_suffix(".json").write_text(json.dumps({"cpu_features": feats, "seconds": seconds}))


def run_worker(artifact: Path, files: Sequence[str], rows: int, out: Path,
               qemu_cpu: str | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--artifact", str(artifact), "--rows", str(rows),
           "--files", ",".join(files), "--npz", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if qemu_cpu:
        qemu = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
        if qemu is None:
            raise SystemExit("error: qemu-x86_64 not found (apt-get install qemu-user-static)")
        # qemu runs the real interpreter; the venv's packages come through PYTHONPATH
        site = sysconfig.get_paths()["purelib"]
        env["PYTHONPATH"] = os.pathsep.join([site, str(REPO)])
        cmd = [qemu, "-cpu", qemu_cpu, os.path.realpath(sys.executable), *cmd[1:]]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    # qemu warns once per thread about CPUID bits TCG lacks: noise, not news
    for line in proc.stderr.splitlines():
        if "TCG doesn't support requested feature" not in line:
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"error: the {'emulated' if qemu_cpu else 'native'} run failed"
                         f" (exit {proc.returncode})")
    data = np.load(out)
    meta = json.loads(out.with_suffix(".json").read_text())
    return {"logits": {n: data[n.replace(".", "_")] for n in files}, **meta}


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", type=Path, default=REPO / "runs" / "sst2" / "default-convert")
    ap.add_argument("--files", default=",".join(FILES))
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--qemu-cpu", default="EPYC-Rome", help="an AVX2 CPU without VNNI")
    ap.add_argument("--out", type=Path, default=RESULTS / "avx2_emulated.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--npz", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    files = [f for f in args.files.split(",") if f]
    if args.worker:
        worker(args.artifact, files, args.rows, args.npz)
        return {}
    from edge_albert.data import read_dataset

    gold = np.array([int(y) for y in read_dataset(DATA / "sst2" / "dev.tsv").labels])[:args.rows]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        native = run_worker(args.artifact, files, args.rows, Path(tmp) / "native.npz", None)
        emul = run_worker(args.artifact, files, args.rows, Path(tmp) / "emulated.npz",
                          args.qemu_cpu)
    manifest = json.loads((args.artifact / "manifest.json").read_text())
    rows = {}
    for name in files:
        a, b = native["logits"][name], emul["logits"][name]
        rows[name] = {
            "agreement": round(float((a.argmax(1) == b.argmax(1)).mean()), 4),
            "max_abs_logit_diff": round(float(np.abs(a - b).max()), 5),
            "accuracy_native": round(float((a.argmax(1) == gold).mean()), 4),
            "accuracy_emulated": round(float((b.argmax(1) == gold).mean()), 4),
            "weight_bits": (manifest["files"][name].get("recipe") or {}).get("weight_bits"),
            "emulated_seconds": emul["seconds"][name]}
        print(f"{name}: agreement {rows[name]['agreement']:.2%}, max |dlogit|"
              f" {rows[name]['max_abs_logit_diff']:.3g}")
    result = {"benchmark": "avx2_emulated", "command": "python benchmarks/avx2_emulated.py "
              + " ".join(argv if argv is not None else sys.argv[1:]),
              "artifact": str(args.artifact), "target": manifest["config"].get("target"),
              "rows": args.rows, "qemu_cpu": args.qemu_cpu, "host": machine(),
              "cpu_features": {"native": native["cpu_features"],
                               "emulated": emul["cpu_features"]},
              "files": rows, "wall_seconds": round(time.time() - t0, 1),
              "note": "emulated time means nothing; agreement does"}
    dump_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
