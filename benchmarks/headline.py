"""One headline file per CPU class (#18): the default int8 file against the float teacher, the
peer tools and this CPU's int8 limit, measured side by side in one run.

    python benchmarks/headline.py              # the default SST-2 student and its teacher
    python benchmarks/headline.py --quick --out-dir /tmp/h   # tiny random models, seconds (a test)

Writes ``headline-<isa>.json`` and ``.md`` (``<isa>``: ``edge_albert.runtime.cpu``'s class of
this CPU, e.g. ``avx2``, ``avx512vnni``, ``amx``) with exactly these keys:

* ``machine``: CPU, flags, cores, library versions;
* ``speedup_vs_teacher``: the median over batch 1, 8 x 32, 64, 128 tokens (1 thread) of the
  teacher's time in torch fp32 over the fastest default int8 file's time at that shape;
* ``size_ratio``: the teacher's fp32 weights file over the default int8 file;
* ``accuracy_drop_pts``: teacher dev accuracy minus the default int8 file's, in points;
* ``peer_ratios``: per peer tool, its best file's p50 over our default int8 file's p50 at batch
  1 x 64 tokens, 1 thread (above 1: we are faster): Optimum, litert-torch and torch.ao from
  ``benchmarks/peers.py`` run on the same student (its own interleaved run, with this
  headline's artifact passed as ``--project-artifact`` so our default file is timed there too),
  ExecuTorch (the ``.pte`` XNNPACK int8 file) timed here beside our file;
* ``roofline_fraction_int8``: the fastest default int8 file at batch 8 x 128 tokens, 1 thread:
  (weight-GEMM ops / this CPU's int8 GEMM peak + other ops / its fp32 peak) / measured median
  (peaks measured here as in ``benchmarks/roofline.py``, large square shapes).

"The default int8 file" is the fastest of ``run_convert``'s default int8 files (ONNX, .ort and
TFLite, dynamic and static) at batch 1 x 64 tokens. The ``.md`` adds the per-shape times, the
model-shape roofline, the commands, and where the int8 time goes at batch 8 x 128: Linux perf
on the roofline's file by XNNPACK/ORT kernel kind (``_common.perf_profile``; TFLite's Python API
has no op profiler), and ONNX Runtime's profiler on the fastest int8 ONNX file, per op type;
and, for each peer under its 1.3x target, perf on our default file and the peer's best file at
batch 1 x 64 side by side (``peer_gaps``), with the ratio our GEMMs alone would allow.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DATA,
    REPO,
    RESULTS,
    dump_json,
    feeds_at,
    interleaved,
    machine,
    ort_profile,
    perf_profile,
    portable,
    quick_setup,
    stats_ms,
    student_artifact,
    torch_runner,
)
from roofline import count_flops, peaks

INT8_FILES = ("model.int8-dynamic.tflite", "model.int8-static.tflite",
              "model.int8-dynamic.onnx", "model.int8-static.onnx",
              "model.int8-dynamic.ort", "model.int8-static.ort")
SHAPES = [(b, s) for b in (1, 8) for s in (32, 64, 128)]
KEYS = ("machine", "speedup_vs_teacher", "size_ratio", "accuracy_drop_pts", "peer_ratios",
        "roofline_fraction_int8")
PEER_TARGET = 1.3  # #18: peer_ratios >= 1.3 against these tools
TARGET_PEERS = ("optimum", "litert-torch", "executorch")
GEMM_KINDS = ("int8 GEMM (weight matmuls)", "float GEMM (attention Q.K^T and P.V, float fallback)")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sst2 = REPO / "runs" / "sst2"
    ap.add_argument("--student", type=Path, default=sst2 / "student-pruned-f33-trim",
                    help="the default student (README: pruned-f33-trim)")
    ap.add_argument("--teacher", type=Path, default=sst2 / "teacher")
    ap.add_argument("--artifact", type=Path, default=sst2 / "default-convert",
                    help="run_convert's default files of the student (converted when absent)")
    ap.add_argument("--pte", type=Path,
                    default=REPO / "runs" / "bench" / "clients-default" / "model.int8-dynamic.pte",
                    help="the student's int8 ExecuTorch file (benchmarks/clients.py writes it)")
    ap.add_argument("--dev", type=Path, default=DATA / "sst2" / "dev.tsv")
    ap.add_argument("--calibration", type=Path, default=DATA / "sst2" / "train.tsv")
    ap.add_argument("--peers-json", type=Path, default=None,
                    help="use this peers.py result instead of running peers.py")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, default=None, help="--quick: where the tiny model is cached")
    ap.add_argument("--budget", type=float, default=2.0, help="timing seconds per shape")
    ap.add_argument("--quick", action="store_true",
                    help="a tiny random ALBERT as both teacher and student; no peers (a test)")
    return ap.parse_args(argv)


def subjects(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """Student, teacher, default artifact, dev and calibration files (built with --quick)."""
    if args.quick:  # the other quick modes' tiny model and files (shared through --work)
        work = args.work or work
        q = quick_setup(work)
        args.student = args.teacher = q["model"]
        args.dev, args.calibration = q["dev"], q["train"]
        args.artifact = student_artifact(q["model"], q["train"], work / "student", quick=True)
        args.pte = work / "no-pte-in-quick-mode.pte"
    for p in (args.student, args.teacher, args.dev):
        if not p.exists():
            raise SystemExit(f"error: {p} not found (benchmarks/distill.py --task sst2 writes"
                             " the SST-2 student and teacher; or pass --student/--teacher)")
    if not (args.artifact / "manifest.json").is_file():
        from edge_albert.converters.convert import ConvertConfig, run_convert

        run_convert(ConvertConfig(), args.student, args.artifact,
                    calibration=args.calibration, progress=not args.quick)
    return {"student": args.student, "teacher": args.teacher, "artifact": args.artifact}


def accuracy_torch(model_dir: Path, texts: list[str], gold: np.ndarray, max_length: int) -> float:
    import torch
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import load_classifier

    model, tok = load_classifier(model_dir).eval(), TextTokenizer.load(model_dir)
    preds = []
    with torch.inference_mode():
        for i in range(0, len(texts), 32):
            enc = tok.encode(texts[i:i + 32], max_length=max_length)
            feeds = {k: torch.from_numpy(v.astype(np.int64)) for k, v in enc.as_dict().items()}
            preds.append(model(**feeds).logits.argmax(-1).numpy())
    return float((np.concatenate(preds) == gold).mean())


def accuracy_file(artifact: Path, name: str, texts: list[str], gold: np.ndarray) -> float:
    from edge_albert.runtime import Classifier

    clf = Classifier.load(artifact, model=name, threads=1)
    return float((clf.logits(texts, batch_size=32).argmax(-1) == gold).mean())


def time_shapes(teacher: Path, artifact: Path, files: list[str], texts: list[str],
                budget: float) -> list[dict[str, Any]]:
    """Teacher in torch and every int8 file, interleaved at each (batch, seq), 1 thread."""
    import torch
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer

    from edge_albert.modeling import load_classifier

    torch.set_num_threads(1)
    model = load_classifier(teacher).eval()
    t_tok, s_tok = TextTokenizer.load(teacher), TextTokenizer.load(artifact)
    backends = {f: open_backend(artifact / f, threads=1) for f in files}
    rows = []
    for batch, seq in SHAPES:
        runners = {"teacher torch fp32": torch_runner(
            model, feeds_at(t_tok, texts, seq=seq, batch=batch, n_batches=1)[0])}
        feed = feeds_at(s_tok, texts, seq=seq, batch=batch, n_batches=1)[0]
        for f, be in backends.items():
            runners[f] = lambda be=be, feed=feed: be.run(feed)
        samples = interleaved(runners, rounds=5, budget_s=budget)
        p50 = {k: stats_ms(v)["p50_ms"] for k, v in samples.items()}
        best = min(files, key=lambda f: p50[f])
        rows.append({"batch": batch, "seq": seq, "p50_ms": p50, "fastest_int8": best,
                     "speedup": round(p50["teacher torch fp32"] / p50[best], 2)})
        print(f"  b{batch} x {seq}: teacher {p50['teacher torch fp32']:.2f} ms, {best}"
              f" {p50[best]:.3f} ms", file=sys.stderr)
    return rows


def executorch_ratio(pte: Path, artifact: Path, default_file: str, texts: list[str],
                     budget: float) -> dict[str, Any]:
    """ExecuTorch's int8 file beside ours, batch 1 x 64, 1 thread, interleaved."""
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer

    try:
        ours, theirs = open_backend(artifact / default_file, threads=1), open_backend(pte,
                                                                                     threads=1)
    except Exception as exc:  # executorch absent or the file missing: the ratio says why
        return {"ratio": None, "error": str(exc).splitlines()[0][:200]}
    feed = feeds_at(TextTokenizer.load(artifact), texts, seq=64, batch=1, n_batches=1)[0]
    s = interleaved({"ours": lambda: ours.run(feed), "executorch": lambda: theirs.run(feed)},
                    rounds=10, budget_s=budget)
    a, b = stats_ms(s["ours"])["p50_ms"], stats_ms(s["executorch"])["p50_ms"]
    return {"ratio": round(b / a, 3), "ours_p50_ms": a, "executorch_p50_ms": b,
            "file": str(pte)}


def run_peers(args: argparse.Namespace) -> dict[str, Any]:
    """peers.py on the student (its own venvs, its own interleaved timing, batch 1 x 64); its
    result stays in runs/bench/headline-peers for --peers-json."""
    if args.peers_json:
        return json.loads(args.peers_json.read_text())
    out = REPO / "runs" / "bench" / "headline-peers"
    cmd = [sys.executable, str(Path(__file__).with_name("peers.py")), "--model",
           str(args.student), "--out-dir", str(out), "--threads", "1",
           "--project-artifact", str(args.artifact)]
    print("peers: " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    return json.loads((out / "peers.json").read_text())


def ours_in_peers(peers_result: dict[str, Any], art: Path, default_file: str) -> dict | None:
    """The default int8 file's row in the peers run (passed as --project-artifact), so every
    peer ratio is over the file this headline calls the default, timed in the same run."""
    return next((r for r in peers_result.get("rows", []) if r.get("p50_ms")
                 and str(r.get("file", "")).endswith(f"{art.name}/{default_file}")
                 and r.get("source") != "run_convert"), None)


def peer_gaps(peers_result: dict[str, Any], ours: dict | None, art: Path, default_file: str,
              feed: dict[str, np.ndarray], seconds: float) -> list[dict[str, Any]]:
    """Where the time goes for each peer under its target: perf on our default file and on the
    peer's best file at the peer shape (batch 1 x 64), side by side, in ms per call (a kernel
    kind's share of samples x the file's p50 in the peers run). ``ceiling``: the ratio our file
    would reach if every op but its GEMMs (weight and attention matmuls) took no time."""
    if ours is None:
        return []
    best = {t: v.get("best") for t, v in
            peers_result["headline"]["run_convert_defaults"]["peers"].items()}
    mine = perf_profile(art / default_file, feed, seconds)
    if not mine:
        return []
    mine_ms = {p["kind"]: p["share"] * ours["p50_ms"] for p in mine}
    gemm = sum(mine_ms.get(k, 0.0) for k in GEMM_KINDS)
    out = []
    for tool, b in best.items():
        if tool not in TARGET_PEERS or not b or b["p50_ms"] / ours["p50_ms"] >= PEER_TARGET:
            continue
        path = REPO / b["file"]
        theirs = perf_profile(path, feed, seconds) if path.suffix in (".tflite", ".onnx") else []
        theirs_ms = {p["kind"]: p["share"] * b["p50_ms"] for p in theirs}
        out.append({"tool": tool, "file": b["file"], "p50_ms": b["p50_ms"],
                    "ours_p50_ms": ours["p50_ms"],
                    "kinds": [{"kind": k, "ours_ms": round(mine_ms.get(k, 0.0), 4),
                               "theirs_ms": round(theirs_ms.get(k, 0.0), 4)}
                              for k in dict.fromkeys([*mine_ms, *theirs_ms])],
                    "ours_gemm_ms": round(gemm, 4), "ceiling": round(b["p50_ms"] / gemm, 3),
                    "other_ms_allowed": round(b["p50_ms"] / PEER_TARGET - gemm, 4),
                    "other_ms": round(ours["p50_ms"] - gemm, 4)})
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse(argv)
    t0 = time.time()
    from edge_albert.runtime.cpu import cpu_facts

    from edge_albert.data import read_dataset

    with tempfile.TemporaryDirectory(prefix="headline-") as tmp_s:
        tmp = Path(tmp_s)
        subj = subjects(args, tmp / "quick")
        art = subj["artifact"]
        ds = read_dataset(args.dev)
        texts = [str(t) for t in ds.texts]
        names = json.loads((art / "manifest.json").read_text())["extra"]["labels"]
        gold = np.array(ds.label_ids(names))
        from transformers import AutoConfig

        id2label = AutoConfig.from_pretrained(subj["teacher"]).id2label
        if [str(id2label[i]) for i in range(len(id2label))] != names:
            raise SystemExit(f"error: the teacher's labels {id2label} are not the student's"
                             f" {names}")
        files = [f for f in INT8_FILES if (art / f).is_file()]
        budget = 0.1 if args.quick else args.budget
        print("timing teacher and int8 files ...", file=sys.stderr)
        rows = time_shapes(subj["teacher"], art, files, texts[:64], budget)
        b1 = next(r for r in rows if (r["batch"], r["seq"]) == (1, 64))
        default_file = b1["fastest_int8"]
        max_length = max(json.loads((art / "manifest.json").read_text())["config"]["buckets"])
        acc_teacher = accuracy_torch(subj["teacher"], texts, gold, max_length)
        acc_int8 = accuracy_file(art, default_file, texts, gold)
        teacher_bytes = sum(p.stat().st_size for p in subj["teacher"].glob("*.safetensors"))
        default_bytes = (art / default_file).stat().st_size
        # roofline at batch 8 x 128, 1 thread: the fastest int8 file there
        b8 = next(r for r in rows if (r["batch"], r["seq"]) == (8, 128))
        flops = count_flops(subj["student"], batch=8, seq=128)
        cfg = AutoConfig.from_pretrained(subj["student"])
        shapes = {"large square": (256, 256, 256) if args.quick else (1024, 1024, 1024),
                  "model FFN, batch 8": (8 * 128, cfg.hidden_size, cfg.intermediate_size)}
        peak_rows = peaks(shapes, (1,), 0.05 if args.quick else 2.0)

        def fraction(shape: str) -> float:
            p32 = max(r["gops"] for r in peak_rows if "fp32" in r["kernel"]
                      and r["shape"] == shape) * 1e9
            p8 = max(r["gops"] for r in peak_rows if "int8" in r["kernel"]
                     and r["shape"] == shape) * 1e9
            bound = flops["weight_gemm"] / p8 + flops["other"] / p32
            return round(bound / (b8["p50_ms"][b8["fastest_int8"]] / 1000), 4)

        onnx_int8 = min((f for f in files if f.endswith(".onnx")),
                        key=lambda f: b8["p50_ms"][f], default=None)
        from edge_albert.runtime.tokenizer import TextTokenizer

        tok = TextTokenizer.load(art)
        feed8 = feeds_at(tok, texts, seq=128, batch=8, n_batches=1)[0]
        feed1 = feeds_at(tok, texts, seq=64, batch=1, n_batches=1)[0]
        profile = ort_profile(art / onnx_int8, feed8) if onnx_int8 else []
        kernels = perf_profile(art / b8["fastest_int8"], feed8, 2.0 if args.quick else 8.0)
        et = executorch_ratio(args.pte, art, default_file, texts[:64], budget)
        if args.quick:
            peers_result: dict[str, Any] = {"headline": {"run_convert_defaults": {"peers": {}}}}
        else:
            peers_result = run_peers(args)
    peer = peers_result["headline"]["run_convert_defaults"]
    ours = ours_in_peers(peers_result, art, default_file)
    peer_ratios = {tool: round(v["best"]["p50_ms"] / ours["p50_ms"], 3)
                   if v.get("best") and ours else None for tool, v in peer["peers"].items()}
    peer_ratios["executorch"] = et["ratio"]
    gaps = [] if args.quick else peer_gaps(peers_result, ours, art, default_file, feed1, 8.0)
    facts = cpu_facts()
    result = {
        "machine": {**machine(), "isa": facts["isa"]},
        "speedup_vs_teacher": float(np.median([r["speedup"] for r in rows])),
        "size_ratio": round(teacher_bytes / default_bytes, 2),
        "accuracy_drop_pts": round(100 * (acc_teacher - acc_int8), 2),
        "peer_ratios": peer_ratios,
        "roofline_fraction_int8": fraction("large square"),
    }
    assert tuple(result) == KEYS
    details = {"command": " ".join(["python benchmarks/headline.py", *(argv or sys.argv[1:])]),
               "student": str(subj["student"]), "teacher": str(subj["teacher"]),
               "artifact": str(art), "default_int8_file": default_file,
               "accuracy_teacher": acc_teacher, "accuracy_default_int8": acc_int8,
               "teacher_bytes": teacher_bytes, "shapes": rows,
               "roofline_model_shape": fraction("model FFN, batch 8"),
               "roofline_file": b8["fastest_int8"], "peaks": peak_rows,
               "flops_b8x128": {k: v for k, v in flops.items() if k != "by_op"},
               "profile_file": onnx_int8, "ort_profile_b8x128": profile[:12],
               "perf_profile_b8x128": kernels,
               "executorch": et, "peers_default_file": ours,
               "peers_best": {t: v.get("best") for t, v in peer["peers"].items()},
               "peer_gaps_b1x64": gaps,
               "wall_seconds": round(time.time() - t0, 1)}
    stem = f"headline-{facts['isa']}" + (".quick" if args.quick else "")
    dump_json(args.out_dir / f"{stem}.json", result)
    (args.out_dir / f"{stem}.md").write_text(portable(markdown(result, details)))
    print(markdown(result, details))
    return {"result": result, "details": details}


def markdown(r: dict, d: dict) -> str:
    m = r["machine"]
    lines = [f"# Headline on {m['cpu']} ({m['isa']}, {m['cores']} cores)", "",
             f"Flags: {', '.join(m['flags'])}. Command: `{d['command']}` ({d['wall_seconds']} s)."
             f" Student `{d['student']}`, teacher `{d['teacher']}`; the default int8 file is"
             f" `{d['default_int8_file']}` (the fastest of run_convert's default int8 files at"
             " batch 1 x 64 tokens, 1 thread).", "",
             "| key | value | target |", "|---|---:|---:|",
             f"| speedup_vs_teacher | {r['speedup_vs_teacher']:.2f} | >= 10 |",
             f"| size_ratio | {r['size_ratio']:.2f} | >= 10 |",
             f"| accuracy_drop_pts | {r['accuracy_drop_pts']:.2f} (teacher"
             f" {100 * d['accuracy_teacher']:.2f} %, int8 {100 * d['accuracy_default_int8']:.2f} %)"
             " | |",
             f"| roofline_fraction_int8 | {r['roofline_fraction_int8']:.3f} (model-shape peak:"
             f" {d['roofline_model_shape']:.3f}; file {d['roofline_file']}) | >= 0.6 |"]
    for tool, ratio in r["peer_ratios"].items():
        lines.append(f"| peer_ratios.{tool} | {'n/a' if ratio is None else f'{ratio:.2f}'} |"
                     f" {'>= 1.3' if tool != 'torch.ao' else ''} |")
    lines += ["", "Per shape (1 thread, p50 ms, interleaved):", "",
              "| batch x seq | teacher torch fp32 | fastest int8 file | its p50 | speedup |",
              "|---|---:|---|---:|---:|"]
    for row in d["shapes"]:
        f = row["fastest_int8"]
        lines.append(f"| {row['batch']} x {row['seq']} | {row['p50_ms']['teacher torch fp32']:.3f}"
                     f" | {f} | {row['p50_ms'][f]:.3f} | {row['speedup']:.2f} |")
    if d["peers_best"]:
        proj = d["peers_default_file"] or {}
        lines += ["", "Peers (`benchmarks/peers.py` on the same student, its own interleaved run:"
                  " batch 1 x 64 tokens, 1 thread, every file through the same interpreters,"
                  " accuracy row by row; each peer's best = its fastest file within 1 point of"
                  " torch fp32, else its most accurate; the ratios are over our default int8"
                  " file as timed in that run):", "",
                  "| tool | best file | p50 ms | size MB | dev % |", "|---|---|---:|---:|---:|",
                  f"| edge-albert (default int8 file) | {proj.get('short')} |"
                  f" {proj.get('p50_ms', 0):.3f} | {proj.get('size_bytes', 0) / 1e6:.2f} |"
                  f" {proj.get('accuracy', 0):.2f} |"]
        lines += [f"| {t} | {b['recipe']} | {b['p50_ms']:.3f} | {b['size_bytes'] / 1e6:.2f} |"
                  f" {b['accuracy']:.2f} |" for t, b in d["peers_best"].items() if b]
        et = d["executorch"]
        if et.get("ratio") is not None:
            lines.append(f"| executorch (timed here, beside the default file at"
                         f" {et['ours_p50_ms']:.3f} ms) | {Path(et['file']).name} |"
                         f" {et['executorch_p50_ms']:.3f} | | |")
    for g in d.get("peer_gaps_b1x64", []):
        lines += ["", f"Why {g['tool']} stays under {PEER_TARGET}x: Linux perf on both files at"
                  f" batch 1 x 64, 1 thread, in ms per call (a kernel kind's share of samples x"
                  f" the file's p50 in the peers run: ours {g['ours_p50_ms']:.3f} ms,"
                  f" `{Path(g['file']).name}` {g['p50_ms']:.3f} ms):", "",
                  "| kind | ours ms | theirs ms |", "|---|---:|---:|"]
        lines += [f"| {k['kind']} | {k['ours_ms']:.3f} | {k['theirs_ms']:.3f} |"
                  for k in g["kinds"]]
        lines += ["", f"Our file's GEMMs (weight and attention matmuls) alone take"
                  f" {g['ours_gemm_ms']:.3f} ms: with every other op free the ratio would be"
                  f" {g['ceiling']:.2f}x. {PEER_TARGET}x needs the other ops in"
                  f" {g['other_ms_allowed']:.3f} ms; they take {g['other_ms']:.3f} ms."]
    if d["perf_profile_b8x128"]:
        lines += ["", f"Where the time goes: Linux perf sampling `{d['roofline_file']}` (the"
                  " roofline's file) at batch 8 x 128, 1 thread, by kernel kind:", "",
                  "| kind | share of samples | top kernels |", "|---|---:|---|"]
        lines += [f"| {p['kind']} | {p['share']:.1%} | {', '.join(p['top_kernels'])} |"
                  for p in d["perf_profile_b8x128"]]
    if d["ort_profile_b8x128"]:
        lead = "" if d["perf_profile_b8x128"] else "Where the time goes: "
        lines += ["", f"{lead}ONNX Runtime's profiler on `{d['profile_file']}`,"
                  " batch 8 x 128, 1 thread (time per op type, per call):", "",
                  "| op type | ms | share |", "|---|---:|---:|"]
        lines += [f"| {p['op_type']} | {p['ms_per_call']:.3f} | {p['share']:.1%} |"
                  for p in d["ort_profile_b8x128"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
