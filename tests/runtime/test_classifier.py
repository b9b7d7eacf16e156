"""The device runtime on converted files: every backend, buckets, labels, hashes, threads."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from edge_albert.runtime import Classifier, model_files

from edge_albert.errors import ArtifactError, RuntimeBackendError

TEXTS = ["the film is charming .", "the plot drags , and the cast is dull .", "", "   ",
         "the music " * 200]


def test_every_file_runs_and_agrees_with_fp32(tiny_artifact):
    files = model_files(tiny_artifact)
    assert {f.rsplit(".", 1)[1] for f in files} == {"onnx", "ort", "tflite"}
    ref = Classifier.load(tiny_artifact, model="model.fp32.onnx").logits(TEXTS)
    for name in files:
        clf = Classifier.load(tiny_artifact, model=name, threads=1)
        logits = clf.logits(TEXTS, batch_size=2)
        assert logits.shape == (len(TEXTS), 2) and np.isfinite(logits).all()
        tol = 1e-4 if ".fp32." in name else 5e-2
        assert np.abs(logits - ref).max() < tol, name
        labels, probs = clf.predict(TEXTS[:2])
        assert set(labels) <= {"0", "1"} and np.allclose(probs.sum(-1), 1, atol=1e-5)


def test_buckets_truncation_and_pairs(tiny_artifact):
    clf = Classifier.load(tiny_artifact, model="model.fp32.tflite")
    assert clf.max_length == 32 and clf.buckets == (16, 32)
    assert clf.encode(["short ."]).input_ids.shape[1] == 16
    assert clf.encode(TEXTS[-1:]).input_ids.shape[1] == 32  # truncated to the model's length
    pairs = clf.logits([("the film", "is charming"), ("", "dull")])
    assert pairs.shape == (2, 2)
    assert clf.logits([]).shape[0] == 0


def test_refuses_a_file_that_changed(tiny_artifact, tmp_path):
    d = tmp_path / "a"
    shutil.copytree(tiny_artifact, d)
    with open(d / "model.fp32.onnx", "r+b") as fh:
        fh.seek(200)
        b = fh.read(1)
        fh.seek(200)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ArtifactError, match=r"model.fp32.onnx: sha256"):
        Classifier.load(d, model="model.fp32.onnx")


def test_choosing_files_and_bad_arguments(tiny_artifact, tmp_path):
    with pytest.raises(RuntimeBackendError, match="pick one with model="):
        Classifier.load(tiny_artifact)
    with pytest.raises(RuntimeBackendError, match="threads must be >= 1"):
        Classifier.load(tiny_artifact, model="model.fp32.onnx", threads=0)
    (tmp_path / "x.bin").write_bytes(b"abc")
    with pytest.raises(RuntimeBackendError, match="unknown model format"):
        Classifier.load(tmp_path / "x.bin")


@pytest.mark.parametrize("name", ["model.fp32.onnx", "model.fp32.tflite"])
def test_corrupt_files_give_one_clear_error(tiny_artifact, tmp_path, name):
    """Truncated files: a RuntimeBackendError naming the file, in a subprocess (no segfault)."""
    src = (tiny_artifact / name).read_bytes()
    bad = tmp_path / name
    bad.write_bytes(src[: len(src) // 3])
    shutil.copy(tiny_artifact / "tokenizer.json", tmp_path / "tokenizer.json")
    code = textwrap.dedent(f"""
        from edge_albert.errors import RuntimeBackendError
        from edge_albert.runtime import Classifier
        try:
            Classifier.load({str(bad)!r}).logits(["a"])
        except RuntimeBackendError as e:
            print("ERR", e)
    """)
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.startswith("ERR") and name in r.stdout


def test_many_threads_match_serial(tiny_artifact):
    for name in ("model.int8-dynamic.onnx", "model.int8-dynamic.tflite"):
        clf = Classifier.load(tiny_artifact, model=name)
        serial = clf.logits(TEXTS)
        results: list[np.ndarray] = []
        errors: list[BaseException] = []

        def work(clf=clf, results=results, errors=errors) -> None:
            try:
                for _ in range(20):
                    results.append(clf.logits(TEXTS))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(results) == 160
        assert all(np.array_equal(r, serial) for r in results)


BLOCK_HEAVY = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "tensorflow", "transformers", "keras"):
            raise ImportError(f"{name} is blocked: the device has no " + name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_runtime_and_apps_run_without_torch_tensorflow_transformers(tiny_artifact):
    code = BLOCK_HEAVY + textwrap.dedent(f"""
        import edge_albert.runtime, edge_albert.apps
        from edge_albert.runtime import Classifier
        for name in ("model.int8-dynamic.onnx", "model.int8-dynamic.ort", "model.int8-dynamic.tflite"):
            labels, probs = Classifier.load({str(tiny_artifact)!r}, model=name).predict(["the film is charming ."])
            print(name, labels[0])
        heavy = [m for m in ("torch", "tensorflow", "transformers") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "HEAVY []" in r.stdout and r.stdout.count("model.int8-dynamic") == 3


def test_wrong_input_names_are_a_clear_error(tiny_artifact):
    from edge_albert.runtime.backends import open_backend

    be = open_backend(tiny_artifact / "model.fp32.tflite")
    feeds = {"args_0": np.ones((1, 8), np.int64), "args_1": np.ones((1, 8), np.int64)}
    with pytest.raises(RuntimeBackendError, match="inputs are named"):
        be.run(feeds)


@pytest.mark.parametrize("policy,spins", [(None, "0"), ("PASSIVE", "0"), ("active", "1")])
def test_onnxruntime_threads_wait_passively_unless_told(tiny_artifact, monkeypatch, policy,
                                                        spins):
    """ONNX Runtime's pool spins while it waits unless told: the runtime turns that off (a
    2-thread session ran 2.93x slower beside a busy neighbour with it), except under
    OMP_WAIT_POLICY=ACTIVE, the toolchain's one knob for waiting threads."""
    from edge_albert.runtime.backends import open_backend

    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    be = open_backend(tiny_artifact / "model.int8-dynamic.onnx", threads=2)
    opts = be.session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == spins


def test_tflite_sizes_its_tensors_once_per_shape_and_answers_as_the_signature_runner(
        tiny_artifact):
    """The backend skips the runner's per-call resize and re-allocation when shapes repeat:
    shapes that change back and forth (batch and width) give the public runner's logits."""
    from edge_albert.runtime.backends import open_backend
    from edge_albert.runtime.tokenizer import TextTokenizer

    tok = TextTokenizer.load(tiny_artifact)
    for name in ("model.fp32.tflite", "model.int8-dynamic.tflite"):
        be = open_backend(tiny_artifact / name, threads=1)
        assert be._out_index is not None  # the fast path is the one this interpreter takes
        for texts, width in ((TEXTS[:1], 16), (TEXTS, 32), (TEXTS, 32), (TEXTS[:1], 16),
                             (TEXTS[:2], 32)):
            feeds = tok.encode(texts, pad_to=width).as_dict()
            got = be.run(feeds)
            f = {n: np.asarray(feeds[n], dtype=np.int32) for n in be.input_names}
            want = be.runner(**f)[be._out]
            assert got.shape == (len(texts), 2) and np.array_equal(got, want), (name, width)
            assert be._shapes == {n: (len(texts), width) for n in be.input_names}
