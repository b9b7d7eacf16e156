"""Damaged artifacts: every model format truncated and bit-flipped, broken manifests, a tokenizer
missing a piece, a damaged model.safetensors.

Loading must raise the project's error naming the file (with a manifest: its sha256/size check
refuses first), or, for a bit flip the file format itself cannot notice, load and run; never a
stray exception and never a crash. The native parsers (onnxruntime, LiteRT, sentencepiece,
safetensors) run in subprocesses that loop over many seeded damages each and print one JSON line
per case; the parent asserts the exit status and every line.
"""
from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_albert.errors import ArtifactError, EdgeAlbertError, RuntimeBackendError

pytest.importorskip("onnxruntime")

MODEL_FILES = ["model.fp32.onnx", "model.int8-dynamic.onnx", "model.fp32.ort",
               "model.int8-dynamic.ort", "model.fp32.tflite", "model.int8-dynamic.tflite"]
# the tokenizer files the tiny SentencePiece artifact holds (runtime.tokenizer.TOKENIZER_FILES
# names every file a tokenizer directory may hold)
TOKENIZER_FILES = ["spiece.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json"]
TEXTS = ["the film is charming .", "the plot drags , and the cast is dull ."]

# One case: {"id", "manifest": bool, "file": the file damaged, "kind": trunc|flip|delete,
# "at": byte offset, "bit": 0-7, "load": what to load}. Damage is applied to a fresh copy of
# the artifact per case (a new inode: an interpreter may still map the previous one).
WORKER = r"""
import json, os, shutil, sys, tempfile
from pathlib import Path
import numpy as np
from edge_albert.errors import EdgeAlbertError

spec = json.loads(Path(sys.argv[1]).read_text())
src, keep, texts = Path(spec["src"]), spec["keep"], spec["texts"]

def load(d, what):
    if what == "model":  # a Hugging Face model directory, as the toolchain loads it
        import torch
        from edge_albert.modeling import load_classifier
        m = load_classifier(d)
        with torch.no_grad():
            return m(input_ids=torch.tensor([[2, 5, 6, 7, 3]])).logits.numpy()
    from edge_albert.runtime import Classifier
    return Classifier.load(d / what, threads=1).logits(texts)

ref = {w: load(src, w) for w in {c["load"] for c in spec["cases"]}}
work = Path(tempfile.mkdtemp(prefix="corrupt-"))
for i, case in enumerate(spec["cases"]):
    d = work / str(i)
    d.mkdir()
    for f in keep if case["manifest"] else [k for k in keep if k != "manifest.json"]:
        shutil.copyfile(src / f, d / f)
    target = d / case["file"]
    data = bytearray(target.read_bytes())
    if case["kind"] == "trunc":
        data = data[:case["at"]]
    elif case["kind"] == "flip":
        data[case["at"]] ^= 1 << case["bit"]
    if case["kind"] == "delete":
        target.unlink()
    else:
        target.unlink()
        target.write_bytes(bytes(data))
    print("case", json.dumps(case), file=sys.stderr, flush=True)  # names a crashing case
    out = {"id": case["id"], "dir": str(d)}
    try:
        logits = load(d, case["load"])
        out.update(outcome="ran", finite=bool(np.isfinite(logits).all()),
                   same=bool(np.allclose(logits, ref[case["load"]], atol=1e-5)))
    except EdgeAlbertError as e:
        out.update(outcome="error", type=type(e).__name__, where=e.where, msg=str(e))
    except BaseException as e:
        out.update(outcome="stray", type=type(e).__name__, msg=str(e)[:500])
    print(json.dumps(out), flush=True)
shutil.rmtree(work, ignore_errors=True)
"""


def run_cases(tmp_path: Path, src: Path, keep: list[str], cases: list[dict]) -> dict[str, dict]:
    """Run the cases in one subprocess; exit status 0, one JSON line per case, nothing else."""
    spec = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.json"
    spec.write_text(json.dumps({"src": str(src), "keep": keep, "texts": TEXTS, "cases": cases}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run([sys.executable, "-c", WORKER, str(spec)], capture_output=True, text=True,
                       timeout=300, env=env, check=False)
    last = [x for x in r.stderr.splitlines() if x.startswith("case ")][-1:]
    assert r.returncode == 0, f"exit {r.returncode} (a crash?) at {last}: {r.stderr[-1500:]}"
    lines = r.stdout.splitlines()
    # stdout holds the JSON lines only: no interpreter banner leaks into an app's output
    rows = [json.loads(x) for x in lines]
    assert [x["id"] for x in rows] == [c["id"] for c in cases]
    stray = [x for x in rows if x["outcome"] == "stray"]
    assert not stray, stray[:3]
    return {x["id"]: x | {"case": c} for x, c in zip(rows, cases)}


def damage_cases(path: Path, *, n_trunc: int, n_flip: int, manifest: bool, load: str,
                 seed: int, flip_range: tuple[int, int] | None = None) -> list[dict]:
    size = path.stat().st_size
    rng = random.Random(f"{path.name}-{seed}-{manifest}")
    offsets = sorted({0, 1, 8, size - 1, *rng.sample(range(2, size - 1), n_trunc)})
    lo, hi = flip_range or (0, size)
    cases = [{"kind": "trunc", "at": o} for o in offsets]
    cases += [{"kind": "flip", "at": p, "bit": rng.randrange(8)}
              for p in rng.sample(range(lo, hi), n_flip)]
    tag = "m" if manifest else "n"
    return [{"id": f"{path.name}:{tag}:{c['kind']}:{c['at']}", "manifest": manifest,
             "file": path.name, "load": load, **c} for c in cases]


def summary(rows: dict[str, dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows.values():
        key = f"{r['case']['kind']} {r['outcome']}" + (f" {r['type']}" if "type" in r else "")
        out[key] = out.get(key, 0) + 1
    return out


@pytest.mark.parametrize("name", MODEL_FILES)
def test_damaged_model_file_is_refused_or_runs_without_crashing(tiny_artifact, tmp_path, name):
    keep = ["manifest.json", name, "labels.txt", *TOKENIZER_FILES]
    path = tiny_artifact / name
    size = path.stat().st_size
    cases = (damage_cases(path, n_trunc=3, n_flip=4, manifest=True, load=name, seed=0)
             + damage_cases(path, n_trunc=12, n_flip=24, manifest=False, load=name, seed=1))
    rows = run_cases(tmp_path, tiny_artifact, keep, cases)
    for r in rows.values():
        c, bad = r["case"], str(Path(r["dir"]) / name)
        if c["manifest"]:
            # the manifest's size / sha256 check refuses before any interpreter sees the file
            assert r["outcome"] == "error" and r["type"] == "ArtifactError", r
            assert r["where"] == bad, r
            assert ("size" if c["kind"] == "trunc" else "sha256") in r["msg"], r
        elif r["outcome"] == "error":
            assert r["type"] == "RuntimeBackendError" and r["where"] == bad, r
            assert r["msg"].startswith(bad + ": "), r
        else:
            # no manifest: only the format's own checks remain. A truncation must fail (the last
            # bytes of a flatbuffer may be padding); a flipped weight may load and run.
            assert c["kind"] == "flip" or c["at"] >= size - 16, r
            assert r["finite"], r  # non-finite logits raise RuntimeBackendError instead
    counts = summary(rows)
    print(name, json.dumps(counts))
    assert counts.get("trunc error RuntimeBackendError", 0) >= 13  # every early truncation


def test_damaged_tokenizer_pieces(tiny_artifact, tmp_path):
    name = "model.int8-dynamic.tflite"
    keep = ["manifest.json", name, "labels.txt", *TOKENIZER_FILES]
    base = {"manifest": True, "load": name, "at": 0, "bit": 0}
    cases = [dict(base, id=f"m:delete:{f}", kind="delete", file=f) for f in TOKENIZER_FILES]
    cases += [dict(base, id=f"m:trunc:{f}", kind="trunc", file=f, at=40) for f in TOKENIZER_FILES]
    cases += [dict(base, id=f"m:flip:{f}", kind="flip", file=f, at=30, bit=1)
              for f in TOKENIZER_FILES]
    # without a manifest: the tokenizer's own parsing must fail cleanly
    spm = tiny_artifact / "spiece.model"
    nom = {"manifest": False, "load": name, "bit": 0, "at": 0}
    cases += [dict(nom, id="n:delete:tokenizer.json", kind="delete", file="tokenizer.json")]
    cases += [dict(nom, id=f"n:trunc:tokenizer.json:{o}", kind="trunc", file="tokenizer.json", at=o)
              for o in (0, 1, 100, 3000, (tiny_artifact / "tokenizer.json").stat().st_size - 2)]
    cases += [dict(nom, id=f"n:trunc:tokenizer_config.json:{o}", kind="trunc",
                   file="tokenizer_config.json", at=o) for o in (1, 50)]
    rows_a = run_cases(tmp_path, tiny_artifact, keep, cases)
    # spiece.model alone (no tokenizer.json), truncated and bit-flipped: sentencepiece parses it
    no_json = tmp_path / "spm-only"
    no_json.mkdir()
    for f in [name, "labels.txt", "spiece.model", "tokenizer_config.json"]:
        shutil.copyfile(tiny_artifact / f, no_json / f)
    spm_cases = [dict(c, id="spm:" + c["id"]) for c in damage_cases(
        spm, n_trunc=16, n_flip=40, manifest=False, load=name, seed=2)]
    both = [dict(nom, id="n:delete:spiece.model+tokenizer.json", kind="delete",
                 file="spiece.model")]
    rows_b = run_cases(tmp_path, no_json, [name, "labels.txt", "spiece.model",
                                           "tokenizer_config.json"], spm_cases + both)
    for r in rows_a.values():
        c, d = r["case"], Path(r["dir"])
        if c["manifest"] and c["file"] == "special_tokens_map.json":
            assert r["outcome"] == "ran" and r["same"], r  # listed, but the runtime never reads it
        elif c["manifest"]:
            assert r["outcome"] == "error" and r["type"] == "ArtifactError", r
            assert r["where"] == str(d / c["file"]), r
            want = {"delete": "missing", "trunc": "size", "flip": "sha256"}[c["kind"]]
            assert want in r["msg"], r
        elif c["id"] == "n:delete:tokenizer.json":
            assert r["outcome"] == "ran" and r["same"], r  # spiece.model builds the same tokenizer
        elif c["file"] == "tokenizer_config.json":
            assert r["type"] == "TokenizerError" and r["where"] == str(d / c["file"]), r
        else:
            # the parse error names the damaged tokenizer file
            assert r["outcome"] == "error" and r["type"] == "TokenizerError", r
            assert r["where"] == str(d / c["file"]) and "cannot load the tokenizer" in r["msg"], r
    for r in rows_b.values():
        c, d = r["case"], Path(r["dir"])
        if c["id"].startswith("n:delete"):
            assert r["type"] == "TokenizerError" and "no tokenizer here" in r["msg"], r
            assert r["where"] == str(d), r
        elif r["outcome"] == "error":
            assert r["type"] in ("TokenizerError", "RuntimeBackendError"), r
            assert r["where"] in (str(d / "spiece.model"), str(d)), r
        else:
            # a protobuf cut at a field boundary still parses: a tokenizer with fewer pieces
            # (only the manifest's hash notices that; see the manifest cases above)
            assert r["finite"], r
    counts = summary(rows_b)
    cut_ran = [r["case"]["at"] for r in rows_b.values()
               if r["outcome"] == "ran" and r["case"]["kind"] == "trunc"]
    print("spiece.model", json.dumps(counts), "truncations that loaded:", cut_ran)
    assert counts.get("trunc error TokenizerError", 0) >= 10


def test_damaged_safetensors_of_a_model_dir(tiny_model, tmp_path):
    pytest.importorskip("torch")
    path = tiny_model / "model.safetensors"
    header = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    keep = sorted(p.name for p in tiny_model.iterdir() if p.is_file())
    assert "manifest.json" in keep
    cases = (damage_cases(path, n_trunc=3, n_flip=3, manifest=True, load="model", seed=0)
             + damage_cases(path, n_trunc=6, n_flip=12, manifest=False, load="model", seed=1,
                            flip_range=(0, header))  # the JSON header: parsing can notice
             + damage_cases(path, n_trunc=0, n_flip=4, manifest=False, load="model", seed=2,
                            flip_range=(header, path.stat().st_size))[4:])  # weights only
    rows = run_cases(tmp_path, tiny_model, keep, cases)
    for r in rows.values():
        c, bad = r["case"], str(Path(r["dir"]) / "model.safetensors")
        if c["manifest"]:
            assert r["outcome"] == "error" and r["type"] == "ArtifactError", r
            assert r["where"] == bad, r
            assert ("size" if c["kind"] == "trunc" else "sha256") in r["msg"], r
        elif c["kind"] == "trunc":
            assert r["outcome"] == "error" and r["type"] == "ModelError", r
            assert r["where"] == bad and "weights file is damaged" in r["msg"], r
        elif r["outcome"] == "error":
            assert r["type"] == "ModelError" and r["where"] == bad, r
        elif c["at"] < header:
            # a flipped tensor name used to load with that tensor randomly initialised
            assert r["same"], r
        else:
            assert r["finite"], r  # a flipped weight: nothing but a hash can notice
    counts = summary(rows)
    print("model.safetensors", json.dumps(counts))
    assert counts.get("trunc error ModelError", 0) >= 9
    assert counts.get("flip error ModelError", 0) >= 10  # most of the 12 header flips


def test_damaged_weights_through_the_cli(tiny_model, tmp_path):
    """What the user sees: one error line naming the file, exit code 4 (ModelError) or 8."""
    from click.testing import CliRunner

    from edge_albert.cli import cli

    d = tmp_path / "m"
    shutil.copytree(tiny_model, d)
    data = (d / "model.safetensors").read_bytes()
    (d / "manifest.json").rename(tmp_path / "manifest.json")
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    r = CliRunner().invoke(cli, ["model", "inspect", str(d)])
    assert r.exit_code == 4 and isinstance(r.exception, SystemExit), r.output
    lines = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert lines[0].startswith(f"error: {d / 'model.safetensors'}: the weights file is damaged (")
    (tmp_path / "manifest.json").rename(d / "manifest.json")
    r = CliRunner().invoke(cli, ["model", "inspect", str(d)])
    assert r.exit_code == 8 and f"error: {d / 'model.safetensors'}: size " in r.output, r.output


# -- manifests ---------------------------------------------------------------------------------
def _set(path: list[str], value):
    def f(m):
        cur = m
        for k in path[:-1]:
            cur = cur[k]
        if value is KeyError:
            del cur[path[-1]]
        else:
            cur[path[-1]] = value
        return m
    return f


F = "model.fp32.onnx"
BROKEN_MANIFESTS = {
    "missing files": (_set(["files"], KeyError), "manifest.json", "lacks key(s) files"),
    "missing schema": (_set(["schema"], KeyError), "manifest.json", "lacks key(s) schema"),
    "missing stage+config": (lambda m: {k: v for k, v in m.items() if k not in ("stage", "config")},
                             "manifest.json", "lacks key(s) stage, config"),
    "schema v2": (_set(["schema"], "edge-albert/manifest/v2"), "manifest.json",
                  "schema is 'edge-albert/manifest/v2', expected 'edge-albert/manifest/v1'"),
    "schema number": (_set(["schema"], 1), "manifest.json", "schema is 1"),
    "wrong sha256": (_set(["files", F, "sha256"], "0" * 64), F, "sha256 "),
    "wrong size": (_set(["files", F, "size_bytes"], 12), F, "size "),
    "size as text": (_set(["files", F, "size_bytes"], "12"), "manifest.json", "'files' must map"),
    "sha256 as number": (_set(["files", F, "sha256"], 5), "manifest.json", "'files' must map"),
    "entry without sha256": (_set(["files", F, "sha256"], KeyError), "manifest.json",
                             "'files' must map"),
    "files as list": (_set(["files"], []), "manifest.json", "'files' must map"),
    "file not listed": (_set(["files", F], KeyError), F, "not listed"),
    "extra as text": (_set(["extra"], "x"), "manifest.json", "'extra' must be a JSON object"),
    "inputs as number": (_set(["inputs"], 3), "manifest.json", "'inputs' must be a JSON array"),
    "libraries as list": (_set(["libraries"], [1]), "manifest.json", "'libraries' must be"),
    "labels as text": (_set(["extra", "labels"], "ab"), "manifest.json", "malformed value"),
    "seq_len as text": (_set(["files", F, "seq_len"], "long"), "manifest.json", "malformed value"),
    "buckets as number": (_set(["files", F, "buckets"], 16), "manifest.json", "malformed value"),
    "vocab_size as text": (_set(["extra", "vocab_size"], "many"), "manifest.json",
                           "malformed value"),
    "tokenizer sha256": (_set(["files", "tokenizer.json", "sha256"], "f" * 64), "tokenizer.json",
                         "sha256 "),
    "a list": (lambda m: [m], "manifest.json", "must be a JSON object"),
    "not JSON": (None, "manifest.json", "not valid JSON"),
}


@pytest.fixture()
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    d = tmp_path / "a"
    d.mkdir()
    for f in ["manifest.json", F, "labels.txt", *TOKENIZER_FILES]:
        shutil.copyfile(tiny_artifact / f, d / f)
    return d


@pytest.mark.parametrize("what", list(BROKEN_MANIFESTS))
def test_broken_manifest_is_an_artifact_error_naming_the_file(artifact_copy, what):
    from edge_albert.runtime import Classifier

    fix, names, says = BROKEN_MANIFESTS[what]
    mpath = artifact_copy / "manifest.json"
    if fix is None:
        mpath.write_text(mpath.read_text()[:500])
    else:
        mpath.write_text(json.dumps(fix(json.loads(mpath.read_text()))))
    with pytest.raises(ArtifactError) as e:
        Classifier.load(artifact_copy, model=F)
    assert e.value.where == str(artifact_copy / names)
    assert says in str(e.value)
    assert str(e.value).startswith(f"{artifact_copy / names}")


def test_random_bit_flips_in_the_manifest(artifact_copy, tiny_artifact):
    """A flipped byte anywhere in manifest.json: refused naming a file of the artifact, or a
    harmless change (a census count, a timestamp) that loads and predicts as before."""
    from edge_albert.runtime import Classifier

    ref = Classifier.load(tiny_artifact, model=F).logits(TEXTS)
    mpath = artifact_copy / "manifest.json"
    raw = mpath.read_bytes()
    rng = random.Random(7)
    outcomes = {"ran": 0, "refused": 0}
    for _ in range(150):
        b = bytearray(raw)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        mpath.write_bytes(bytes(b))
        try:
            clf = Classifier.load(artifact_copy, model=F)
            logits = clf.logits(TEXTS)
        except (ArtifactError, RuntimeBackendError) as e:
            assert e.where and Path(e.where).is_relative_to(artifact_copy), e
            outcomes["refused"] += 1
            continue
        except EdgeAlbertError as e:  # e.g. a flipped seq_len below the tokenizer's minimum
            assert e.where and Path(e.where).is_relative_to(artifact_copy), e
            outcomes["refused"] += 1
            continue
        # a harmless change (a census count, a timestamp, a label name, a bucket width)
        assert np.allclose(logits, ref, atol=1e-4)
        outcomes["ran"] += 1
    assert outcomes["refused"] > 30 and outcomes["ran"] > 10, outcomes


def test_verify_command_names_the_damaged_file(tiny_artifact, tmp_path):
    from click.testing import CliRunner

    from edge_albert.cli import cli

    d = tmp_path / "a"
    shutil.copytree(tiny_artifact, d)
    with open(d / "model.int8-dynamic.ort", "r+b") as fh:
        fh.seek(1000)
        b = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([b[0] ^ 4]))
    r = CliRunner().invoke(cli, ["artifact", "verify", str(d)])
    assert r.exit_code == 8 and isinstance(r.exception, SystemExit)
    assert f"error: {d / 'model.int8-dynamic.ort'}: sha256 " in r.output
    m = json.loads((d / "manifest.json").read_text())
    m2 = copy.deepcopy(m)
    del m2["created"]
    (d / "manifest.json").write_text(json.dumps(m2))
    r = CliRunner().invoke(cli, ["artifact", "verify", str(d)])
    assert r.exit_code == 8 and "lacks key(s) created" in r.output
