"""The device runtime: numpy, sentencepiece, tokenizers and one interpreter; no torch, no tensorflow.

    from edge_albert.runtime import Classifier
    clf = Classifier.load("model.int8-dynamic.tflite", threads=2)
    labels, probs = clf.predict(["a charming and affecting journey"])
"""
from .backends import Backend, OnnxRuntimeBackend, TFLiteBackend, open_backend
from .classifier import Classifier, model_files
from .tokenizer import Encoded, TextTokenizer, pick_bucket

__all__ = ["Backend", "Classifier", "Encoded", "OnnxRuntimeBackend", "TFLiteBackend",
           "TextTokenizer", "model_files", "open_backend", "pick_bucket"]
