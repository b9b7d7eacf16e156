"""Classification metrics in numpy (host and device share them)."""
from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(gold))) if len(gold) else float("nan")


def f1_scores(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> list[float]:
    """Per-class F1."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    out = []
    for c in range(num_labels):
        tp = float(np.sum((pred == c) & (gold == c)))
        fp = float(np.sum((pred == c) & (gold != c)))
        fn = float(np.sum((pred != c) & (gold == c)))
        out.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return out


def f1(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    """F1 of class 1 for binary tasks (GLUE's convention), macro-F1 otherwise."""
    scores = f1_scores(pred, gold, num_labels)
    return scores[1] if num_labels == 2 else float(np.mean(scores))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def mean_kl(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(ref || other) between the softmax distributions of two logit arrays."""
    p, q = softmax(ref_logits), softmax(logits)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=-1)))


def classification_metrics(logits: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    pred = np.asarray(logits).argmax(-1)
    k = np.asarray(logits).shape[-1]
    return {"accuracy": accuracy(pred, gold), "f1": f1(pred, gold, k)}
