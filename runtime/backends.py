"""Interpreters behind one small interface: ONNX Runtime (.onnx, .ort), TFLite (.tflite) and,
on a host with the toolchain, ExecuTorch (.pte).

Each backend takes numpy feeds named ``input_ids``, ``attention_mask``, ``token_type_ids`` and
returns float32 logits; a text-in file (``.e2e.onnx``, the tokenizer inside as
onnxruntime-extensions ops) takes ``{"text": [item, ...]}`` instead (``takes_text``), each item
a string or a (text, pair) tuple. A missing interpreter is a RuntimeBackendError naming the extra to
install; a file the interpreter refuses is a RuntimeBackendError naming the file. Interpreters are
not thread-safe, so each backend serialises its calls with a lock: one ``Classifier`` may be
shared by many threads (calls then run one at a time; use one per thread for parallel speed).

Over 400 lines on purpose: one small class per interpreter on one base (its lock, input
checks and error wording), and ``open_backend`` choosing among them; split by file, each class
would import the base and the dispatcher would import them all, for no reader's gain.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import RuntimeBackendError

FORMATS = {".onnx": "onnx", ".ort": "ort", ".tflite": "tflite", ".pte": "pte"}
E2E_SUFFIX = ".e2e.onnx"
MEDIAPIPE_SUFFIX = ".mediapipe.tflite"


def spinning_allowed() -> bool:
    """Whether ONNX Runtime's waiting threads may spin: only with ``OMP_WAIT_POLICY=ACTIVE`` (the
    toolchain's one knob for waiting threads; unset by default). Why: beside one busy neighbour
    a 2-thread session of the default student's int8 file ran 2.73-2.93x slower with ONNX
    Runtime's default spinning and 1.45-1.60x with it off (19-27 % slower alone;
    benchmarks/neighbours.py, 2-core Xeon), and phones and boards always have neighbours."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "ACTIVE"


def ort_session_options(ort: Any, threads: int | None = None) -> Any:
    """``ort.SessionOptions`` as every session of the toolchain's is run, the converters' parity
    checks included: ``threads`` intra-op threads and one inter-op, warnings only, waiting
    threads asleep unless :func:`spinning_allowed` (which says why)."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning",
                                  "1" if spinning_allowed() else "0")
    return opts


def extensions_library() -> str:
    """The path of onnxruntime-extensions' custom-op library, loaded so that it binds to its
    own symbols first. Why: TensorFlow (and MediaPipe) load their protobuf into the process's
    global symbol scope; the extensions library, linked against a protobuf of its own, then
    called theirs while parsing a ``SentencepieceTokenizer``'s model and crashed the process
    (a segmentation fault creating the session, seen with tensorflow imported first). Loading
    it with ``RTLD_DEEPBIND`` before its Python package is imported keeps its calls inside it;
    once the package is imported without it, nothing can change that (on Linux; elsewhere the
    plain load).

    Found by file name, not by importing the package: where ``onnx`` is installed the package's
    import pulls in transformers and torch (2.4 s of a 2.8 s cold start, measured), none of
    which ONNX Runtime needs to register the ops."""
    import importlib.machinery
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime_extensions")  # finds; imports nothing
    if spec is None or not spec.origin:
        raise RuntimeBackendError("onnxruntime-extensions is not installed (a text-in .e2e.onnx"
                                  " file needs its custom ops)",
                                  hint="pip install 'edge-albert[onnx-e2e]'")
    names = (f"_extensions_pydll{s}" for s in importlib.machinery.EXTENSION_SUFFIXES)
    lib = next((p for p in (Path(spec.origin).parent / n for n in names) if p.is_file()), None)
    if lib is None:  # a package layout this code does not know: ask the package
        from onnxruntime_extensions import get_library_path

        return str(get_library_path())
    if "onnxruntime_extensions" not in sys.modules and hasattr(os, "RTLD_DEEPBIND"):
        import ctypes

        ctypes.CDLL(str(lib), mode=os.RTLD_NOW | os.RTLD_LOCAL | os.RTLD_DEEPBIND)
    return str(lib)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:240]


class Backend:
    """Base: ``run(feeds) -> logits``; ``input_names``; ``fixed_length`` (None when dynamic)."""

    name = "backend"
    format = ""
    takes_text = False  # True: feeds are {"text": items}, the file tokenizes
    log_probabilities = False  # True: run() returns log-probabilities, not raw logits

    def __init__(self, path: Path) -> None:
        self.path = path
        self.input_names: list[str] = []
        self.fixed_length: int | None = None
        self.fixed_batch: int | None = None  # set when the file pins its batch size
        self._lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            return self._run(feeds)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime's CPU execution provider, or XNNPACK / NNAPI by name when the build has them."""

    name = "onnxruntime"
    PROVIDERS: ClassVar[dict[str, str]] = {"cpu": "CPUExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
                 "nnapi": "NnapiExecutionProvider"}

    def __init__(self, path: Path, *, threads: int | None = None,
                 providers: Sequence[str] = ("cpu",)) -> None:
        super().__init__(path)
        self.format = FORMATS[path.suffix]
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeBackendError("onnxruntime is not installed", where=path,
                                      hint="pip install 'edge-albert[onnx]'") from None
        self._ort = ort
        opts = self._options(ort, threads)
        available = set(ort.get_available_providers())
        wanted = []
        for p in providers:
            full = self.PROVIDERS.get(p.lower(), p)
            if full not in available:
                raise RuntimeBackendError(
                    f"execution provider {p!r} is not in this onnxruntime build"
                    f" (available: {', '.join(sorted(available))})", where=path)
            wanted.append(full)
        if "CPUExecutionProvider" not in wanted:
            wanted.append("CPUExecutionProvider")
        try:
            # enable_fallback=0: on a load error onnxruntime would otherwise print an "EP Error"
            # banner to stdout (into an app's output) and retry, and at run time silently drop
            # a requested provider for the CPU.
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted,
                                                enable_fallback=0)
        except Exception as exc:
            raise RuntimeBackendError(f"onnxruntime cannot load this file ({_first_line(exc)})",
                                      where=path) from None
        ins = self.session.get_inputs()
        self.input_names = [i.name for i in ins]
        self._dtypes = {i.name: (np.int32 if "int32" in i.type else np.int64) for i in ins}
        seq = ins[0].shape[1] if len(ins[0].shape) > 1 else None
        self.fixed_length = seq if isinstance(seq, int) else None
        self.fixed_batch = ins[0].shape[0] if isinstance(ins[0].shape[0], int) else None
        self._out = self.session.get_outputs()[0].name

    def _options(self, ort: Any, threads: int | None) -> Any:
        return ort_session_options(ort, threads)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        f = {n: np.ascontiguousarray(feeds[n], dtype=self._dtypes[n]) for n in self.input_names}
        try:
            return np.asarray(self.session.run([self._out], f)[0], dtype=np.float32)
        except Exception as exc:
            raise RuntimeBackendError(f"onnxruntime failed to run ({_first_line(exc)})",
                                      where=self.path) from None

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": self._ort.__version__}


class TextOnnxBackend(OnnxRuntimeBackend):
    """A text-in ``.e2e.onnx`` file: ONNX Runtime with onnxruntime-extensions' custom ops. It
    takes one text (or one pair) per call, so a batch runs item by item."""

    name = "onnxruntime+extensions"
    takes_text = True

    def _options(self, ort: Any, threads: int | None) -> Any:
        try:
            library = extensions_library()
        except RuntimeBackendError as exc:
            raise RuntimeBackendError(exc.message, where=self.path, hint=exc.hint) from None
        opts = ort_session_options(ort, threads)
        opts.register_custom_ops_library(library)
        return opts

    def _run(self, feeds: dict[str, Any]) -> np.ndarray:
        if "text" not in feeds:
            raise RuntimeBackendError("a text-in file takes {'text': [...]}, not token ids",
                                      where=self.path)
        rows = []
        for item in feeds["text"]:
            texts = [str(x) for x in item] if isinstance(item, (tuple, list)) else [str(item)]
            try:
                out = self.session.run([self._out], {"text": np.array(texts, dtype=object)})[0]
            except Exception as exc:
                raise RuntimeBackendError(f"onnxruntime failed to run ({_first_line(exc)})",
                                          where=self.path) from None
            rows.append(np.asarray(out, dtype=np.float32).reshape(1, -1))
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def versions(self) -> dict[str, str]:
        from importlib import metadata

        try:
            ext = metadata.version("onnxruntime-extensions")
        except metadata.PackageNotFoundError:  # pragma: no cover - imported above
            ext = "?"
        return {"onnxruntime": self._ort.__version__, "onnxruntime-extensions": ext}


def _tflite_interpreter_module() -> tuple[Any, str, str]:
    """ai_edge_litert, then tflite_runtime, then tensorflow.lite: (module, name, version)."""
    try:
        from importlib import metadata

        from ai_edge_litert import interpreter as mod  # type: ignore[import-not-found]
        try:
            version = metadata.version("ai-edge-litert")
        except metadata.PackageNotFoundError:
            version = "?"
        return mod, "ai-edge-litert", version
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod  # type: ignore[import-not-found]

        return mod, "tflite-runtime", getattr(mod, "__version__", "?")
    except ImportError:
        pass
    try:
        import tensorflow as tf

        return tf.lite, "tensorflow", tf.__version__
    except ImportError:
        raise RuntimeBackendError(
            "no TFLite interpreter: install ai-edge-litert (or tflite-runtime on older boards)",
            hint="pip install 'edge-albert[tflite]'") from None


class TFLiteBackend(Backend):
    """The TFLite / LiteRT interpreter, called through the file's signature."""

    name = "tflite"
    format = "tflite"

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        super().__init__(path)
        mod, self._lib, self._version = _tflite_interpreter_module()
        try:
            self.interpreter = mod.Interpreter(model_path=str(path), num_threads=threads or None)
            sigs = self.interpreter.get_signature_list()
        except Exception as exc:
            raise RuntimeBackendError(f"{self._lib} cannot load this file ({_first_line(exc)})",
                                      where=path) from None
        if not sigs:
            raise RuntimeBackendError("the .tflite file has no signature", where=path)
        self._sig_key = next(iter(sigs))
        self.runner = self.interpreter.get_signature_runner(self._sig_key)
        details = self.runner.get_input_details()
        self.input_names = list(details)
        self._dtypes = {n: d["dtype"] for n, d in details.items()}
        sig = details[self.input_names[0]].get("shape_signature")
        self.fixed_length = None if sig is None or int(sig[1]) == -1 else int(sig[1])
        out_details = self.runner.get_output_details()
        self._out = next(iter(out_details))
        # an integer output (a file quantized by another tool) is dequantized with its own scale
        scale, zero = out_details[self._out].get("quantization", (0.0, 0))
        int_out = np.dtype(out_details[self._out]["dtype"]).kind in "iu" and scale > 0
        self._dequant = (float(scale), int(zero)) if int_out else None
        self._shapes: dict[str, tuple[int, ...]] = {}  # input shapes the tensors are sized for
        self._out_index = dict(getattr(self.runner, "_outputs", {})).get(self._out)

    def _invoke(self, f: dict[str, np.ndarray]) -> np.ndarray:
        """The signature runner's steps, resizing and re-allocating only when a shape changed.

        ``SignatureRunner.__call__`` resizes every input and calls ``AllocateTensors`` on each
        call; with the converter's runtime-computed shapes the graph has dynamic tensors, so that
        re-plans the arena every time: 4 % of batch 1 x 64 and 9 % of batch 8 x 128 on the default
        int8 file (Xeon AMX, 1 thread). Uses the runner's wrapper (ai-edge-litert, tflite-runtime
        and tf.lite share it); a build without it takes the public call.
        """
        r = self.runner
        w = getattr(r, "_interpreter_wrapper", None)
        if w is None or self._out_index is None or not hasattr(r, "_subgraph_index"):
            return np.asarray(r(**f)[self._out])
        sg = r._subgraph_index
        shapes = {n: v.shape for n, v in f.items()}
        if shapes != self._shapes:
            self._shapes = {}  # a failed resize must not leave a half-sized state marked valid
            for n, v in f.items():
                w.ResizeInputTensor(r._inputs[n], np.array(v.shape, dtype=np.int32), False, sg)
            w.AllocateTensors(sg)
            self._shapes = shapes
        for n, v in f.items():
            w.SetTensor(r._inputs[n], v, sg)
        w.Invoke(sg)
        return np.asarray(w.GetTensor(self._out_index, sg))

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise RuntimeBackendError(
                f"the file's inputs are named {self.input_names}, not {sorted(feeds)}",
                where=self.path, hint="convert with edge-albert convert (inputs input_ids,"
                " attention_mask, token_type_ids)")
        f = {n: np.ascontiguousarray(feeds[n], dtype=self._dtypes[n]) for n in self.input_names}
        try:
            out = self._invoke(f)  # an ndarray already
            if self._dequant is not None:
                return ((out.astype(np.float32) - self._dequant[1]) * self._dequant[0]).astype(
                    np.float32)
            return out.astype(np.float32, copy=False)
        except Exception as exc:
            raise RuntimeBackendError(f"{self._lib} failed to run ({_first_line(exc)})",
                                      where=self.path) from None

    def versions(self) -> dict[str, str]:
        return {self._lib: self._version}


class PteBackend(Backend):
    """An ExecuTorch ``.pte`` program in ExecuTorch's Python runtime. That runtime takes torch
    tensors, so this backend is for checking a ``.pte`` on a host (validate, benchmarks); on a
    phone ExecuTorch's own runtime (Android AAR, iOS framework) loads the same file."""

    name = "executorch"
    format = "pte"

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        super().__init__(path)
        import warnings

        try:
            with warnings.catch_warnings():  # ExecuTorch's imports warn about its own internals
                warnings.simplefilter("ignore")
                import torch
                from executorch.extension.pybindings import portable_lib
                from executorch.runtime import Runtime
        except ImportError:
            raise RuntimeBackendError("ExecuTorch is not installed (a .pte file needs its"
                                      " runtime, which needs torch)", where=path,
                                      hint="pip install 'edge-albert[executorch]'") from None
        self._torch = torch
        if threads:  # XNNPACK's threadpool is one per process
            portable_lib._unsafe_reset_threadpool(int(threads))
        try:
            self.method = Runtime.get().load_program(str(path)).load_method("forward")
        except Exception as exc:
            raise RuntimeBackendError(f"ExecuTorch cannot load this file ({_first_line(exc)})",
                                      where=path) from None
        self.input_names = ["input_ids", "attention_mask", "token_type_ids"]

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n], dtype=np.int64))
                for n in self.input_names]
        try:
            out = self.method.execute(args)[0]
        except Exception as exc:
            raise RuntimeBackendError(f"ExecuTorch failed to run ({_first_line(exc)})",
                                      where=self.path) from None
        return np.asarray(out.detach().numpy(), dtype=np.float32)

    def versions(self) -> dict[str, str]:
        from importlib import metadata

        return {"executorch": metadata.version("executorch")}


#: MediaPipe tasks not closed yet. A TextClassifier closes itself in ``__del__`` by waiting on
#: its dispatcher thread; run by the garbage collector in the middle of other work, that wait
#: deadlocked (seen: a test run hung inside torch.export). So every task is kept alive until
#: its backend is closed, and the rest are closed at exit, before interpreter teardown.
_OPEN_TASKS: set[Any] = set()


def _close_open_tasks() -> None:
    for task in list(_OPEN_TASKS):
        with contextlib.suppress(Exception):  # at exit: report nothing, free what we can
            task.close()
    _OPEN_TASKS.clear()


@contextlib.contextmanager
def _without_tensorflow() -> Iterator[None]:
    """Hide TensorFlow while MediaPipe Tasks imports: its ``optional_dependencies`` imports it
    (about 4 s) only for a documentation decorator and falls back when it is missing. A phone or
    a Pi has no TensorFlow, so a cold start measured on a host that has it is then the device's."""
    if "tensorflow" in sys.modules:  # already paid for (e.g. convert ran in this process)
        yield
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]  # import -> ModuleNotFoundError
    try:
        yield
    finally:
        if sys.modules.get("tensorflow", False) is None:
            del sys.modules["tensorflow"]


def _keep_until_closed(task: Any) -> None:
    if not _OPEN_TASKS:
        # before the interpreter joins threads: MediaPipe's dispatcher refuses work after that
        # (atexit handlers run too late), and concurrent.futures registers the same way
        threading._register_atexit(_close_open_tasks)  # type: ignore[attr-defined]
    _OPEN_TASKS.add(task)


class MediaPipeBackend(Backend):
    """A ``.mediapipe.tflite`` file in MediaPipe's own ``TextClassifier``: text in (MediaPipe
    tokenizes with the tokenizer in the file's metadata), one text a call. The file returns
    probabilities, so ``run`` returns their logarithm: logits up to a constant per row (the
    same softmax, the same argmax)."""

    name = "mediapipe"
    format = "mediapipe"
    takes_text = True
    log_probabilities = True

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        super().__init__(path)
        del threads  # MediaPipe's Python TextClassifier takes no thread count
        try:
            with _without_tensorflow():
                from mediapipe.tasks.python.core.base_options import BaseOptions
                from mediapipe.tasks.python.text import text_classifier as tc
        except ImportError:
            raise RuntimeBackendError("mediapipe is not installed (a .mediapipe.tflite file"
                                      " runs in MediaPipe's TextClassifier)", where=path,
                                      hint="pip install 'edge-albert[mediapipe]'") from None
        try:
            self.task = tc.TextClassifier.create_from_options(tc.TextClassifierOptions(
                base_options=BaseOptions(model_asset_path=str(path)), max_results=-1))
        except Exception as exc:
            raise RuntimeBackendError(f"MediaPipe cannot load this file ({_first_line(exc)})",
                                      where=path) from None
        self.input_names = ["text"]
        _keep_until_closed(self.task)

    def _run(self, feeds: dict[str, Any]) -> np.ndarray:
        if "text" not in feeds:
            raise RuntimeBackendError("a MediaPipe file takes {'text': [...]}, not token ids",
                                      where=self.path)
        rows = []
        for item in feeds["text"]:
            if isinstance(item, (tuple, list)):
                raise RuntimeBackendError("MediaPipe's TextClassifier takes one text, not a"
                                          " pair", where=self.path)
            p = self.scores(str(item)).astype(np.float64)
            rows.append(np.log(np.maximum(p, 1e-30)).astype(np.float32)[None, :])
        return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def scores(self, text: str) -> np.ndarray:
        """MediaPipe's scores for one text, by output index (the file's probabilities)."""
        try:
            cats = self.task.classify(text).classifications[0].categories
        except Exception as exc:
            raise RuntimeBackendError(f"MediaPipe failed to run ({_first_line(exc)})",
                                      where=self.path) from None
        out = np.zeros(len(cats), dtype=np.float32)
        for c in cats:
            out[c.index] = c.score
        return out

    def close(self) -> None:
        self.task.close()
        _OPEN_TASKS.discard(self.task)

    def versions(self) -> dict[str, str]:
        from importlib import metadata

        return {"mediapipe": metadata.version("mediapipe")}


def open_backend(path: str | Path, *, threads: int | None = None, backend: str | None = None,
                 providers: Sequence[str] = ("cpu",)) -> Backend:
    """Open a model file with the backend its suffix (or ``backend``) names."""
    path = Path(path)
    if not path.is_file():
        raise RuntimeBackendError("model file does not exist", where=path)
    kind = backend or FORMATS.get(path.suffix)
    if kind == "onnx" and path.name.endswith(E2E_SUFFIX):
        return TextOnnxBackend(path, threads=threads, providers=providers)
    if kind in ("onnx", "ort", "onnxruntime"):
        return OnnxRuntimeBackend(path, threads=threads, providers=providers)
    if kind == "tflite" and path.name.endswith(MEDIAPIPE_SUFFIX) and backend is None:
        return MediaPipeBackend(path, threads=threads)
    if kind in ("tflite", "litert"):
        return TFLiteBackend(path, threads=threads)
    if kind in ("pte", "executorch"):
        return PteBackend(path, threads=threads)
    raise RuntimeBackendError(f"unknown model format {path.suffix!r} (expected .onnx, .ort,"
                              " .tflite or .pte)", where=path)
