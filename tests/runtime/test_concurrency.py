"""Many threads predicting at once give exactly the serial results, on every backend.

8 threads x 500 single-text predictions per file: once sharing one fresh ``Classifier`` (its
backend lock serialises the interpreter; tokenization runs concurrently), once with one
``Classifier`` per thread (interpreters running truly in parallel). Each thread walks the texts
in its own order, so different bucket widths interleave. The threads start together on a
classifier that has never run, so first-call initialisation races too.
"""
from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from edge_albert.runtime import Classifier

pytest.importorskip("onnxruntime")

THREADS, CALLS = 8, 500
FILES = ["model.int8-dynamic.onnx", "model.int8-dynamic.tflite"]  # ONNX Runtime, LiteRT


def texts(n: int = 50) -> list[str]:
    rng = random.Random(3)
    words = ["the", "film", "plot", "cast", "is", "a", "charming", "dull", "mess", "joy", "and",
             ",", ".", "ending", "music", "drags"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def run_threads(make, items: list[str], seed: int) -> list[list[tuple[int, np.ndarray]]]:
    """THREADS threads, each making its classifier with ``make(i)`` and predicting CALLS
    single texts in its own order; returns each thread's (text index, logits) and raises the
    first error any thread hit."""
    results: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            clf = make(t)
            order = random.Random(seed + t).choices(range(len(items)), k=CALLS)
            start.wait()
            for i in order:
                results[t].append((i, clf.logits([items[i]])[0]))
        except BaseException as e:
            errors.append(e)
            start.abort()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("name", FILES)
def test_8_threads_x_500_predictions_match_serial(tiny_artifact, name):
    items = texts()
    ref_clf = Classifier.load(tiny_artifact, model=name, threads=1)
    serial = [ref_clf.logits([x])[0] for x in items]
    assert len({a.tobytes() for a in serial}) > 10  # the texts do give different logits

    shared = Classifier.load(tiny_artifact, model=name, threads=1)  # fresh: never ran yet
    for mode, make in (("shared", lambda _t: shared),
                       ("one per thread", lambda _t: Classifier.load(tiny_artifact, model=name,
                                                                    threads=1))):
        results = run_threads(make, items, seed=10 if mode == "shared" else 20)
        assert [len(r) for r in results] == [CALLS] * THREADS, mode
        bad = [(t, i) for t, r in enumerate(results) for i, got in r
               if not np.array_equal(got, serial[i])]
        assert not bad, f"{mode}: {len(bad)} of {THREADS * CALLS} differ, e.g. {bad[:3]}"



def test_one_tokenizer_shared_at_two_lengths(tiny_artifact):
    from edge_albert.runtime.tokenizer import TextTokenizer

    tok = TextTokenizer.load(tiny_artifact)
    # long texts (cut differently at 16 and 32) keep each encode, and the race window, long
    items = [" ".join([x] * 8) for x in texts() if len(tok.tokenize(x)) > 20]
    assert len(items) >= 10
    serial = {m: [tok.encode([x], max_length=m).input_ids for x in items] for m in (16, 32)}

    class Encoder:  # what a Classifier of max_length m does with the tokenizer
        def __init__(self, m: int) -> None:
            self.m = m

        def logits(self, batch):
            return tok.encode(batch, max_length=self.m).input_ids

    results = run_threads(lambda t: Encoder(16 if t % 2 else 32), items, seed=30)
    bad = [(t, i) for t, r in enumerate(results) for i, got in r
           if not np.array_equal(got, serial[16 if t % 2 else 32][i][0])]
    assert not bad, f"{len(bad)} of {THREADS * CALLS} encodings differ"
