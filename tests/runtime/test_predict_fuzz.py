"""Fuzzing ``Classifier.predict`` on converted files: any texts in, one label per text out.

Random unicode, empty and whitespace-only texts, 100k-character texts, 10k-text lists, pairs with
one side empty, a bare string. Labels come from the model's label set, probabilities are finite
and sum to 1, and padding a text into a bigger batch (another bucket) does not change its logits.
Malformed batches raise the project's own error. The extreme inputs are also run on every file
(ONNX, ORT, TFLite) in a child process, so an interpreter crash shows as an exit status.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from edge_albert.runtime import Classifier, model_files
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_albert.errors import EdgeAlbertError, RuntimeBackendError

# FUZZ_EXAMPLES=2000 for a deeper run; the default keeps this file to a few seconds
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
LABELS = {"0", "1"}
NASTY = st.sampled_from(["", " ", "\t\n", "\x00", "\u200f", "\u202e", "\u2028", "\ufeff", "😀",
                         "👩‍👩‍👧", "שלום", "مرحبا", "e\u0301", "[SEP]", "<pad>", "[MASK]",
                         "the film is charming .", "the plot drags ."])
TEXT = st.one_of(st.lists(st.one_of(NASTY, st.text(max_size=8)), max_size=8).map("".join),
                 st.text(max_size=60))


@pytest.fixture(scope="module")
def fp32(tiny_artifact):
    return Classifier.load(tiny_artifact, model="model.fp32.onnx", threads=1)


@pytest.fixture(scope="module")
def tflite(tiny_artifact):
    return Classifier.load(tiny_artifact, model="model.int8-dynamic.tflite", threads=1)


def check(clf, texts, labels, probs):
    n = 1 if isinstance(texts, str) else len(texts)
    assert len(labels) == n and set(labels) <= LABELS
    assert probs.shape == (n, 2) and probs.dtype == np.float32 and np.isfinite(probs).all()
    assert np.allclose(probs.sum(-1), 1, atol=1e-5)
    if n:
        assert labels == [clf.labels[i] for i in probs.argmax(-1)]


@FUZZ
@given(texts=st.lists(TEXT, max_size=8), batch_size=st.integers(1, 9))
@example(texts=["", " ", "\n\t ", "\x00"], batch_size=8)
def test_any_texts(fp32, texts, batch_size):
    labels, probs = fp32.predict(texts, batch_size=batch_size)
    check(fp32, texts, labels, probs)
    # each text alone (its own, often smaller, bucket) gives the same logits as in the batch
    if texts:
        together = fp32.logits(texts, batch_size=batch_size)
        alone = np.concatenate([fp32.logits([t]) for t in texts])
        assert np.abs(together - alone).max() < 1e-4


@FUZZ
@given(rows=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=6))
@example(rows=[("", "the plot drags ."), ("the film is charming .", ""), ("", ""), (" ", "\n")])
def test_any_pairs(fp32, tflite, rows):
    for clf in (fp32, tflite):
        labels, probs = clf.predict(rows)
        check(clf, rows, labels, probs)
    # a list of 2-lists is the same batch as a list of tuples
    assert np.array_equal(fp32.logits([list(r) for r in rows]), fp32.logits(rows))


@FUZZ
@given(texts=st.lists(TEXT, min_size=1, max_size=5))
def test_tflite_int8_agrees_with_fp32_labels_shape(fp32, tflite, texts):
    labels, probs = tflite.predict(texts)
    check(tflite, texts, labels, probs)
    assert np.abs(tflite.logits(texts) - fp32.logits(texts)).max() < 0.1


@pytest.mark.parametrize("text", ["", "   ", "\n\r\t\u3000", "the film is charming . " * 4500,
                                  "x" * 100_000, "😀" * 100_000])
def test_extreme_single_texts(fp32, text):
    labels, probs = fp32.predict([text])
    check(fp32, [text], labels, probs)
    assert fp32.encode([text]).input_ids.shape[1] <= fp32.max_length


def test_a_bare_string_is_one_text(fp32):
    labels, probs = fp32.predict("the film is charming .")
    assert len(labels) == 1 and probs.shape == (1, 2)
    assert np.array_equal(probs, fp32.predict(["the film is charming ."])[1])
    assert fp32.predict("")[1].shape == (1, 2)  # not zero rows


def test_ten_thousand_texts(fp32):
    texts = [f"the film is charming . {i}" if i % 3 else "" for i in range(10_000)]
    labels, probs = fp32.predict(texts, batch_size=64)
    check(fp32, texts, labels, probs)
    assert np.allclose(probs[:64], fp32.predict(texts[:64], batch_size=8)[1], atol=1e-5)


@pytest.mark.parametrize("batch", [
    [("the film", "is charming"), "the plot drags ."],   # a pair, then a single text
    ["the plot drags .", ("the film", "is charming")],   # a single text, then a pair
    [("the film", "is", "charming")],                    # a triple
    [("only one",)],                                     # a 1-tuple
    [("the film", "is charming"), ""],                   # an empty single text among pairs
])
def test_mixed_batches_are_refused(fp32, batch):
    with pytest.raises(RuntimeBackendError, match="expected a \\(text, pair\\) tuple") as e:
        fp32.predict(batch)
    assert isinstance(e.value, EdgeAlbertError) and e.value.where == str(fp32.path)
    assert "\n" not in str(e.value)


_CHILD = r"""
import json, sys
import numpy as np
from edge_albert.runtime import Classifier
directory, names = sys.argv[1], sys.argv[2:]
batches = [[""], ["   "], ["\x00" * 1000], ["the film is charming . " * 4500], ["😀" * 100_000],
           [("", "the plot drags .")], [("the film", "")], [("", "")],
           ["a"] * 2000, [("x" * 50_000, "y" * 50_000)]]
out = {}
for name in names:
    print("running", name, file=sys.stderr, flush=True)  # the last one named is the one that died
    clf = Classifier.load(directory, model=name, threads=1)
    for b in batches:
        labels, probs = clf.predict(b, batch_size=64)
        assert len(labels) == len(b) and np.isfinite(probs).all(), (name, b[:1])
        out.setdefault(name, []).extend(labels[:1])
print(json.dumps(out))
"""


def test_extreme_inputs_on_every_file_in_a_subprocess(tiny_artifact):
    """No file's interpreter crashes (a signal) on the extreme inputs: the child exits 0."""
    names = model_files(tiny_artifact)
    assert {n.rsplit(".", 1)[1] for n in names} == {"onnx", "ort", "tflite"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tiny_artifact), *names],
                          check=False, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    out = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(out) == sorted(names)
    assert all(len(v) == 10 and set(v) <= LABELS for v in out.values())
