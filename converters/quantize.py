"""The quantize stage: try every int8 recipe on real data and keep the fastest one that stays within
the accuracy budget, per backend.

For each backend (ONNX Runtime, TFLite) the fp32 file is the reference. Every int8 recipe of
:data:`RECIPES` (a table of named recipes: the search is data, not code) is built with the same
building blocks as ``edge-albert convert``, run on the whole dev set through the device runtime's
:class:`~edge_albert.runtime.Classifier` (the real tokenizer and bucket padding), and measured:

* accuracy, and its drop in points below the fp32 file of the same backend;
* agreement: how often its top-1 label equals the fp32 file's;
* latency: median of batch-1 calls at the largest bucket (``measure_latency``);
* file size and the census's count of weight ops stored in int8.

A recipe is ``within budget`` when its drop is at most ``max_drop`` points; the fastest of those
is ``kept`` (written to the artifact as ``model.<precision>.<format>`` with convert's metadata and
a parity check against torch). A recipe that crashes is ``failed: <error>``, one that loses too
much accuracy ``over budget``: both stay in the table (``trials.json``, ``trials.md``). When a
backend keeps nothing, :class:`~.quantize_trials.QuantizeGateError` names it (its ``trials``
hold every row) and no artifact is written. A programming error (``TypeError``,
``AttributeError``, ...) in a trial propagates: it is a bug, not a recipe that fails.

Calibration examples come from the calibration file only (stratified by label and length) and
never include a dev row.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import Manifest, check_new_output, write_artifact
from ..config import to_dict
from ..errors import ConversionError, DataError
from ..runtime.cpu import cpu_facts
from .quantize_recipes import BACKENDS, RECIPES, REFERENCES, QuantizeConfig, Recipe
from .quantize_trials import QuantizeGateError, Trial, TrialStatus, first_line, trials_markdown
from .spec import SEVEN_BIT_TARGETS, Format, OnnxGraph, Precision, host_target, model_filename

TRIALS_JSON = "trials.json"
TRIALS_MD = "trials.md"
LABELS_FILE = "labels.txt"
#: errors that mean a bug in the search itself: they propagate out of a trial
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, AssertionError, ImportError)


class _Search:
    """State shared by the trials of one search."""

    def __init__(self, config: QuantizeConfig, model, tok, labels: list[str], params: int,
                 cal, dev_inputs, gold: np.ndarray, scratch: Path, steps) -> None:
        self.config, self.model, self.tok, self.labels = config, model, tok, labels
        self.params, self.cal, self.dev_inputs, self.gold = params, cal, dev_inputs, gold
        self.scratch, self.steps, self.spec = scratch, steps, config.spec
        self.trials: list[Trial] = []
        self.files: dict[str, tuple[Path, dict]] = {}  # recipe -> (file, quantizer recipe)
        self.ref_logits: dict[Format, np.ndarray] = {}
        self.kept: dict[Format, Trial] = {}
        self.tf_diff: float | None = None
        self._fusion: dict = {}
        # ONNX weights for the CPU the search measures on (7-bit where 8 saturate: CpuTarget)
        self.seven_bit = host_target() in SEVEN_BIT_TARGETS
        width = max(self.spec.buckets)
        first = dev_inputs[0]
        a, b = (first if isinstance(first, tuple) else (first, None))
        self.latency_feed = tok.encode([a], [b] if b is not None else None,
                                       max_length=self.spec.max_length, pad_to=width).as_dict()

    # -- producing files -----------------------------------------------------------------
    def make_file(self, recipe: Recipe, source: Any) -> tuple[Path, dict]:
        """Write one recipe's file into the scratch directory; returns (path, recipe dict)."""
        from . import onnx_quant, tflite_convert
        from .convert_files import check_tflite_storage, export_fp32_onnx

        path = self.scratch / f"{recipe.name}{recipe.format.suffix}"
        if recipe.format is Format.ONNX:
            if recipe.precision is Precision.FP32:
                return path, export_fp32_onnx(self.model, path, self.spec, self.params)
            if recipe.precision is Precision.INT8_DYNAMIC:
                fused = recipe.graph is OnnxGraph.FUSED
                desc = onnx_quant.quantize_dynamic(
                    self.fused_source(source) if fused else source, path,
                    per_channel=recipe.per_channel, fallbacks=recipe.fallbacks,
                    reduce_range=self.seven_bit)
                return path, {**desc, "graph": recipe.graph.value, **(self._fusion if fused else {})}
            return path, onnx_quant.quantize_static(
                source, path, self.cal, method=recipe.method, per_channel=recipe.per_channel,
                fallbacks=recipe.fallbacks, reduce_range=self.seven_bit)
        data, desc = tflite_convert.convert_tflite(
            source, recipe.precision, calibration=self.cal if recipe.needs_calibration else None,
            fallbacks=recipe.fallbacks)
        path.write_bytes(data)
        if recipe.precision is Precision.FP32:
            # the reference is a yardstick here, never shipped: a copied shared weight is
            # convert's gate, the search notes it on the row and goes on
            try:
                check_tflite_storage(path, self.params)
            except ConversionError as exc:
                desc = {**desc, "warning": exc.message}
        return path, desc

    def fused_source(self, plain: Path) -> Path:
        """The fp32 reference with ONNX Runtime's fusions, made once per search (what fused is
        kept in ``_fusion`` for the recipe rows)."""
        from .convert_files import export_fused_onnx

        path = plain.with_name(plain.stem + ".fused.onnx")
        if not path.exists():
            made = export_fused_onnx(self.model, path, self.spec, self.params)
            self._fusion = {k: made[k] for k in ("fused_ops", "rewrites")}
        return path

    # -- measuring -----------------------------------------------------------------------
    def evaluate(self, recipe: Recipe, path: Path, trial: Trial) -> np.ndarray:
        """Fill ``trial`` with accuracy, latency, size and census; returns the dev logits."""
        from ..runtime.backends import open_backend
        from ..runtime.classifier import Classifier
        from ..runtime.metrics import accuracy
        from ..runtime.timing import measure_latency
        from .census import census

        cen = census(path)
        if recipe.format is Format.TFLITE and cen.custom_ops:
            raise ConversionError(f"holds non-builtin op(s) {cen.custom_ops}: the plain TFLite"
                                  " runtime cannot run it", where=path.name)
        c, spec = self.config, self.spec
        backend = open_backend(path, threads=c.threads)
        clf = Classifier(backend=backend, tokenizer=self.tok, labels=self.labels,
                         max_length=spec.max_length, buckets=spec.buckets, path=path)
        logits = clf.logits(self.dev_inputs, batch_size=c.eval_batch_size)
        pred = logits.argmax(-1)
        trial.accuracy = round(accuracy(pred, self.gold), 6)
        ref = self.ref_logits.get(recipe.format)
        trial.agreement = 1.0 if ref is None else round(float(np.mean(pred == ref.argmax(-1))), 6)
        lat = measure_latency(lambda: backend.run(self.latency_feed), warmup=c.latency_warmup,
                              runs=c.latency_runs)
        trial.latency_ms = {k: lat[k] for k in ("p50", "p90", "p99", "mean")}
        trial.p50_ms = lat["p50"]
        trial.size_bytes = path.stat().st_size
        trial.weight_ops = len(cen.weight_ops)
        trial.int8_weights = sum(w.int8 for w in cen.weight_ops)
        trial.int8_ops = cen.int8_ops
        trial.stored_weight_bytes = cen.stored_weight_bytes
        return logits

    def run_trial(self, recipe: Recipe, source: Any) -> Trial:
        """Make, run and judge one recipe; an error is recorded on the row, never raised (except
        for the fp32 reference, without which nothing can be judged)."""
        trial = Trial(recipe.name, recipe.format.value, recipe.precision.value, recipe.settings())
        t0 = time.perf_counter()
        try:
            path, desc = self.make_file(recipe, source)
            trial.note = desc.get("warning")
            logits = self.evaluate(recipe, path, trial)
        except PROGRAMMING_ERRORS:
            raise  # a bug in this code, not a recipe that fails: never a "failed" row
        except Exception as exc:
            if recipe.precision is Precision.FP32:
                raise
            trial.error = first_line(exc)
            trial.status = TrialStatus.FAILED
            trial.accuracy = trial.agreement = trial.p50_ms = trial.latency_ms = None
            trial.size_bytes = trial.weight_ops = trial.int8_weights = trial.int8_ops = None
            trial.stored_weight_bytes = None
        finally:
            trial.seconds = round(time.perf_counter() - t0, 3)
        self.trials.append(trial)
        if trial.ok:
            if recipe.precision is Precision.FP32:
                self.ref_logits[recipe.format] = logits
                trial.drop, trial.status = 0.0, TrialStatus.REFERENCE
            else:
                self.judge(recipe, trial, path, desc)
        return trial

    def judge(self, recipe: Recipe, trial: Trial, path: Path, desc: dict) -> None:
        """Budget status, and the running choice of the fastest file within it."""
        ref = next(t for t in self.trials if t.recipe == REFERENCES[recipe.format].name)
        assert ref.accuracy is not None and trial.accuracy is not None
        trial.drop = round(100 * (ref.accuracy - trial.accuracy), 4)
        if trial.drop > self.config.max_drop + 1e-9:
            trial.status = TrialStatus.OVER
            path.unlink(missing_ok=True)
            return
        trial.status = TrialStatus.WITHIN
        best = self.kept.get(recipe.format)
        if best is None or _faster(trial, best):
            if best is not None:
                self.files.pop(best.recipe)[0].unlink(missing_ok=True)
            self.kept[recipe.format] = trial
            self.files[recipe.name] = (path, desc)
        else:
            path.unlink(missing_ok=True)

    # -- per backend ---------------------------------------------------------------------
    def onnx(self, recipes: list[Recipe]) -> None:
        ref = REFERENCES[Format.ONNX]
        self.steps.run(ref.name, lambda: self.run_trial(ref, None))
        fp32 = self.scratch / f"{ref.name}.onnx"
        for r in recipes:
            self.steps.run(r.name, lambda r=r: self.run_trial(r, fp32))

    def tflite(self, recipes: list[Recipe], feeds) -> None:
        from .convert_files import tf_graph

        module, self.tf_diff = self.steps.run("tensorflow graph", lambda: tf_graph(
            self.model, self.spec, feeds))
        for r in [REFERENCES[Format.TFLITE], *recipes]:
            self.steps.run(r.name, lambda r=r: self.run_trial(r, module))


def _faster(a: Trial, b: Trial) -> bool:
    """Is ``a`` a better pick than ``b``: faster; on a tie, more accurate, then smaller."""
    ka = (a.p50_ms, -(a.accuracy or 0.0), a.size_bytes)
    kb = (b.p50_ms, -(b.accuracy or 0.0), b.size_bytes)
    return ka < kb


def _gate_error(search: _Search, plan: dict[Format, list[Recipe]], max_drop: float) -> None:
    """One AccuracyGateError naming every backend that kept no recipe."""
    bad = []
    for fmt, recipes in plan.items():
        if fmt in search.kept:
            continue
        rows = [t for t in search.trials if t.backend == fmt.value and t.precision != "fp32"]
        measured = [t for t in rows if t.ok]
        if not recipes:
            bad.append(f"{fmt.value}: no recipe to try")
        elif not measured:
            bad.append(f"{fmt.value}: all {len(rows)} recipe(s) failed")
        else:
            best = min(measured, key=lambda t: t.drop if t.drop is not None else math.inf)
            bad.append(f"{fmt.value}: the best of {len(rows)} recipe(s), {best.recipe}, drops"
                       f" {best.drop:.2f} points")
    if bad:
        raise QuantizeGateError(
            f"no int8 recipe within the budget of {max_drop:g} accuracy point(s) for "
            + "; ".join(bad), trials=search.trials,
            hint="raise --max-drop, try recipes with more float fallbacks (the '-wide' ones),"
                 " or leave that backend out with --backends")


def _without_dev_rows(cal_ds, dev_ds):
    """The calibration rows that are not dev rows, and how many were dropped."""
    dev = set(zip(dev_ds.texts, dev_ds.pairs or [None] * len(dev_ds)))
    keys = zip(cal_ds.texts, cal_ds.pairs or [None] * len(cal_ds))
    keep = [i for i, k in enumerate(keys) if k not in dev]
    if not keep:
        raise DataError("every calibration row is also a dev row: calibration must not see the"
                        " dev set", where=cal_ds.path,
                        hint="pass a training split as --calibration and keep --dev for judging")
    return (cal_ds if len(keep) == len(cal_ds) else cal_ds.subset(keep)), len(cal_ds) - len(keep)


def run_quantize(config: QuantizeConfig, model_dir: str | Path, out_dir: str | Path, *,
               calibration: str | Path, dev: str | Path, force: bool = False,
               progress: bool | None = None) -> Manifest:
    """Try the recipes of ``config`` on the classifier in ``model_dir``; write the kept file of
    each backend, the trial table and the tokenizer into ``out_dir`` (see the module docstring).

    ``calibration`` and ``dev`` are labelled data files of the task: the first calibrates the
    int8-static recipes and gives the inputs of the parity check, the second judges accuracy.
    """
    from ..data import label_mapping, read_calibration, read_dataset
    from ..modeling import copy_tokenizer_files
    from .calibration import build_calibration, parity_feeds
    from .convert import load_source
    from .convert_files import Steps, describe_file
    from .parity import gate, torch_logits

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_new_output(out_dir, force)
    plan = config.plan()
    spec = config.spec
    model, tok, labels, params = load_source(model_dir, spec, formats=tuple(plan))
    cfg = model.config
    dev_ds = read_dataset(dev)
    mapping = label_mapping(dev_ds.labels, labels, config.label_map, where=dev)
    if set(mapping.values()) - set(labels):
        read_dataset(dev, label_names=labels)  # names the first line with a label the model lacks
    cal_ds = read_calibration(calibration)
    if cal_ds.is_pair != dev_ds.is_pair:
        raise DataError(f"the calibration file is a {'pair' if cal_ds.is_pair else 'single'}-text"
                        f" task but the dev file a {'pair' if dev_ds.is_pair else 'single'}-text"
                        " one", where=cal_ds.path)
    cal_ds, overlap = _without_dev_rows(cal_ds, dev_ds)
    cal = build_calibration(cal_ds, tok, spec=spec, size=config.calibration_size, seed=config.seed)
    batches = parity_feeds(cal_ds, tok, spec=spec, n=config.parity_examples, seed=config.seed + 1)
    ref = torch_logits(model, batches)
    if not all(np.isfinite(r).all() for r in ref):
        raise ConversionError("the torch model itself returns non-finite logits", where=model_dir)
    gold = np.asarray(dev_ds.label_ids(labels, mapping))

    names: list[str] = []
    for fmt, recipes in plan.items():
        names += (["tensorflow graph"] if fmt is Format.TFLITE else [])
        names += [REFERENCES[fmt].name] + [r.name for r in recipes]
    steps = Steps(names, progress is not False, desc="quantize search")
    record = {**to_dict(config), "calibration": str(calibration), "dev": str(dev),
              "model": str(model_dir)}
    inputs = [model_dir] if (model_dir / "manifest.json").is_file() else []
    try:
        with tempfile.TemporaryDirectory(prefix="edge-albert-search-") as tmp:
            search = _Search(config, model, tok, labels, params, cal, dev_ds.inputs(), gold,
                             Path(tmp), steps)
            for fmt, recipes in plan.items():
                if fmt is Format.ONNX:
                    search.onnx(recipes)
                else:
                    search.tflite(recipes, batches[0])
            for fmt, t in search.kept.items():
                t.status = TrialStatus.KEPT
                ref_t = next(r for r in search.trials if r.recipe == REFERENCES[fmt].name)
                if ref_t.p50_ms is not None and t.p50_ms is not None and ref_t.p50_ms < t.p50_ms:
                    t.note = (f"the fp32 file is faster on this machine ({ref_t.p50_ms:.3f} vs"
                              f" {t.p50_ms:.3f} ms p50): int8 needs VNNI (x86) or dot-product"
                              " instructions (ARM) to pay off")
            steps.close()
            _gate_error(search, plan, config.max_drop)
            # the winner is the winner on this CPU class: int8's payoff depends on its ISA
            facts = cpu_facts()
            measured_on = {k: facts[k] for k in ("cpu", "isa", "flags", "int8_dot_product")}
            with write_artifact(out_dir, stage="quantize", config=record, inputs=inputs,
                                force=force) as w:
                parities, kept_files = {}, {}
                for fmt, t in search.kept.items():
                    src, desc = search.files[t.recipe]
                    recipe = RECIPES[t.recipe]
                    name = model_filename(fmt, recipe.precision)
                    shutil.copyfile(src, w.path / name)
                    meta, par = describe_file(
                        w.path / name, fmt, recipe.precision,
                        {**desc, "search_recipe": t.recipe, "settings": t.settings},
                        spec=spec, batches=batches, ref=ref, params=params, threads=config.threads)
                    meta["search"] = {k: getattr(t, k) for k in (
                        "accuracy", "drop", "agreement", "latency_ms", "int8_weights",
                        "weight_ops")}
                    w.describe(name, **meta)
                    parities[name], kept_files[fmt.value] = par, name
                rows = [t.to_dict() for t in search.trials]
                refs = {t.backend: {"recipe": t.recipe, "accuracy": t.accuracy,
                                    "p50_ms": t.p50_ms, "size_bytes": t.size_bytes}
                        for t in search.trials if t.status is TrialStatus.REFERENCE}
                summary = {"max_drop": config.max_drop, "dev": {"source": str(dev),
                                                                "rows": len(dev_ds)},
                           "latency": {"batch": 1, "seq_len": max(spec.buckets),
                                       "threads": config.threads, "runs": config.latency_runs,
                                       "measured_on": measured_on},
                           "references": refs,
                           "kept": {f.value: t.recipe for f, t in search.kept.items()},
                           "recipes": {t.recipe: (RECIPES.get(t.recipe) or REFERENCES[
                               Format(t.backend)]).to_dict() for t in search.trials},
                           "trials": rows}
                (w.path / TRIALS_JSON).write_text(json.dumps(summary, indent=2) + "\n",
                                                  encoding="utf-8")
                (w.path / TRIALS_MD).write_text(trials_markdown(search.trials, config, dev_ds,
                                                                measured_on),
                                                encoding="utf-8")
                w.describe(TRIALS_JSON, kind="quantize trials")
                w.describe(TRIALS_MD, kind="quantize trials (Markdown)")
                copy_tokenizer_files(model_dir, w.path)
                (w.path / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
                w.describe(LABELS_FILE, kind="labels", labels=labels)
                w.extra.update(
                    parameters=params, labels=labels, model_type=cfg.model_type,
                    vocab_size=int(cfg.vocab_size), export_spec=spec.to_dict(),
                    calibration={**cal.describe(), "dev_rows_excluded": overlap},
                    dev={"source": str(dev), "rows": len(dev_ds)}, max_drop=config.max_drop,
                    references=refs, kept=kept_files,
                    trials=[{k: r[k] for k in ("recipe", "backend", "accuracy", "drop",
                                               "agreement", "p50_ms", "status")} for r in rows],
                    parity_inputs={"source": str(calibration),
                                   "n": int(sum(len(b["input_ids"]) for b in batches))},
                    tf_vs_torch_max_abs_diff=search.tf_diff, seconds=steps.seconds,
                    measured_on=measured_on)
                gate(parities)
    finally:
        steps.close()
    assert w.manifest is not None
    return w.manifest


__all__ = [
    "BACKENDS",
    "RECIPES",
    "REFERENCES",
    "QuantizeConfig",
    "QuantizeGateError",
    "Recipe",
    "Trial",
    "TrialStatus",
    "run_quantize",
]
