"""Op census of a converted file, read from the graph itself: what runs in int8, what stays float.

For ``.onnx`` and ``.ort`` (onnxruntime's flatbuffer, read with its own schema bindings) and
``.tflite`` (LiteRT's flatbuffer schema), :func:`census` returns

* ``ops``: op type -> count;
* ``int8_ops``: ops that compute on 8-bit tensors (reading an int8/uint8 tensor directly or
  through a DequantizeLinear), not counting the quantize/dequantize ops themselves;
* ``weight_ops``: every MatMul/Gemm (ONNX) or FULLY_CONNECTED/BATCH_MATMUL (TFLite) whose
  weight operand is a stored tensor (directly, or through DequantizeLinear / DEQUANTIZE), and
  every Gather/GATHER from a stored embedding table, with the weight's name, dtype, whether it
  is int8, and the part of the model it belongs to (``embeddings``, ``encoder``, ``pooler``,
  ``classifier``);
* ``stored_weight_bytes``: bytes of all stored constant tensors (what sharing must keep small);
* ``custom_ops`` (TFLite): custom / Flex op codes, which the plain runtime cannot run.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# ONNX TensorProto / ORT TensorDataType codes
_ONNX_8BIT = {2, 3}  # UINT8, INT8
_ONNX_NAMES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16",
               9: "bool", 11: "float64"}
_ONNX_SIZES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QUANTIZE",
              "DEQUANTIZE"}
#: ONNX ops with a weight as their second operand, and which input index holds it
_ONNX_WEIGHT_INPUT = {"MatMul": 1, "Gemm": 1, "FusedGemm": 1, "MatMulInteger": 1,
                      "Attention": 1, "QAttention": 1,  # packed QKV (onnx_fuse.py)
                      "DynamicQuantizeMatMul": 1,
                      "MatMulIntegerToFloat": 1, "FusedMatMul": 1, "QLinearMatMul": 3, "QGemm": 3}
#: TFLite ops with a weight operand, and which input index holds it
_TFLITE_WEIGHT_INPUT = {"FULLY_CONNECTED": 1, "BATCH_MATMUL": 1, "GATHER": 0,
                        "EMBEDDING_LOOKUP": 1}


@dataclass
class WeightOp:
    node: str
    op: str
    weight: str
    dtype: str
    int8: bool
    part: str
    elements: int = 0


@dataclass
class Census:
    ops: dict[str, int]
    int8_ops: int
    weight_ops: list[WeightOp]
    stored_weight_bytes: int
    custom_ops: list[str] = field(default_factory=list)

    def part(self, name: str) -> list[WeightOp]:
        return [w for w in self.weight_ops if w.part == name]

    def summary(self) -> dict[str, Any]:
        """The manifest's compact form: counts per part, and the float weight matmuls by name."""
        parts: dict[str, dict[str, int]] = {}
        for w in self.weight_ops:
            d = parts.setdefault(w.part, {"int8": 0, "float": 0})
            d["int8" if w.int8 else "float"] += 1
        return {
            "ops": dict(sorted(self.ops.items())),
            "int8_ops": self.int8_ops,
            "weight_ops": parts,
            "float_weight_ops": sorted({f"{w.part}:{w.weight}" for w in self.weight_ops
                                            if not w.int8}),
            "stored_weight_bytes": self.stored_weight_bytes,
            "custom_ops": self.custom_ops,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self)}


def part_of(name: str) -> str:
    """Which part of an ALBERT classifier a weight (or op) name belongs to."""
    n = name.lower()
    for key, part in (("classifier", "classifier"), ("pooler", "pooler"),
                      ("embedding_hidden_mapping_in", "encoder"), ("encoder", "encoder"),
                      ("layer_", "encoder"), ("embeddings", "embeddings")):
        if key in n:
            return part
    return "other"


# --------------------------------------------------------------------------- ONNX / ORT graphs
@dataclass
class _Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]


def _onnx_graph(path: Path) -> tuple[list[_Node], dict[str, tuple[int, int]], dict[str, int], int]:
    """nodes, initializer (dtype, elements), value dtypes, stored bytes of an .onnx file."""
    import onnx

    model = onnx.load(str(path))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError):  # contrib ops
        inferred = model
    g = model.graph
    inits = {i.name: (i.data_type, _prod(i.dims)) for i in g.initializer}
    stored = sum(_prod(i.dims) * _ONNX_SIZES.get(i.data_type, 4) for i in g.initializer)
    types: dict[str, int] = {k: v[0] for k, v in inits.items()}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        if vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    nodes = [_Node(n.op_type, n.name, list(n.input), list(n.output)) for n in g.node]
    for n in g.node:  # constants of Constant nodes count as stored weights too
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.t.dims or a.t.raw_data:
                    types[n.output[0]] = a.t.data_type
                    inits.setdefault(n.output[0], (a.t.data_type, _prod(a.t.dims)))
    return nodes, inits, types, stored


def _ort_graph(path: Path) -> tuple[list[_Node], dict[str, tuple[int, int]], dict[str, int], int]:
    """The same for an ORT-format flatbuffer, read with onnxruntime's own bindings."""
    import onnxruntime.tools.ort_format_model  # noqa: F401  (puts ort_flatbuffers_py on sys.path)
    from ort_flatbuffers_py import fbs

    buf = bytearray(Path(path).read_bytes())
    if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
        raise ValueError(f"{path} is not an ORT format model")
    graph = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(buf, 0).Model().Graph()
    inits: dict[str, tuple[int, int]] = {}
    stored = 0
    for j in range(graph.InitializersLength()):
        t = graph.Initializers(j)
        inits[t.Name().decode()] = (t.DataType(), _prod(t.Dims(k) for k in range(t.DimsLength())))
        stored += t.RawDataLength()
    types = {k: v[0] for k, v in inits.items()}
    for j in range(graph.NodeArgsLength()):
        arg = graph.NodeArgs(j)
        info = arg.Type()
        if info is not None and info.ValueType() == fbs.TypeInfoValue.TypeInfoValue.tensor_type:
            tt = fbs.TensorTypeAndShape.TensorTypeAndShape()
            tt.Init(info.Value().Bytes, info.Value().Pos)
            types[arg.Name().decode()] = tt.ElemType()
    nodes = []
    for j in range(graph.NodesLength()):
        n = graph.Nodes(j)
        if n is None:
            continue
        nodes.append(_Node(n.OpType().decode(), (n.Name() or b"").decode(),
                           [n.Inputs(k).decode() for k in range(n.InputsLength())],
                           [n.Outputs(k).decode() for k in range(n.OutputsLength())]))
    return nodes, inits, types, stored


def _prod(dims: Iterable[int]) -> int:
    out = 1
    for d in dims:
        out *= int(d)
    return out


def _onnx_census(nodes: list[_Node], inits: dict[str, tuple[int, int]], types: dict[str, int],
                 stored: int) -> Census:
    producer = {o: n for n in nodes for o in n.outputs}
    # propagate 8-bit-ness for values shape inference could not type
    eight = {v for v, t in types.items() if t in _ONNX_8BIT}
    for n in nodes:
        if n.op in ("QuantizeLinear", "DynamicQuantizeLinear") and n.outputs:
            eight.add(n.outputs[0])

    def through_dq(value: str) -> str:
        p = producer.get(value)
        return p.inputs[0] if p is not None and p.op == "DequantizeLinear" else value

    int8_ops = 0
    for n in nodes:
        if n.op in _QUANT_OPS:
            continue
        if any(x in eight or through_dq(x) in eight for x in n.inputs if x):
            int8_ops += 1
    weights: list[WeightOp] = []
    for n in nodes:
        idx = _ONNX_WEIGHT_INPUT.get(n.op)
        if n.op == "Gather":
            idx = 0
        if idx is None or len(n.inputs) <= idx:
            continue
        w = through_dq(n.inputs[idx])
        if w not in inits:
            continue
        dtype, elements = inits[w]
        weights.append(WeightOp(n.name, n.op, w, _ONNX_NAMES.get(dtype, str(dtype)),
                                dtype in _ONNX_8BIT, part_of(w), elements))
    return Census(dict(Counter(n.op for n in nodes)), int8_ops, weights, stored)


# --------------------------------------------------------------------------- TFLite
@dataclass
class TfliteOp:
    """One operator of a .tflite file, with its weight operand when it has a stored one."""

    op: str
    outputs: list[str]
    reads_int8: bool
    weight: str | None = None
    weight_dtype: str | None = None
    weight_part: str | None = None
    weight_elements: int = 0


def tflite_ops(buf: bytes) -> list[TfliteOp]:
    """Every operator of a TFLite flatbuffer (all subgraphs), read with LiteRT's schema."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(buf, 0)
    codes = _tflite_codes(model, schema)
    tnames = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    eight = (schema.TensorType.INT8, schema.TensorType.UINT8)
    out: list[TfliteOp] = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        tensors = [sg.Tensors(i) for i in range(sg.TensorsLength())]
        producer: dict[int, tuple[str, list[int]]] = {}
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            name = codes[op.OpcodeIndex()]
            ins = [op.Inputs(k) for k in range(op.InputsLength())]
            outs = [op.Outputs(k) for k in range(op.OutputsLength())]
            for o in outs:
                producer[o] = (name, ins)
            rec = TfliteOp(name, [tensors[o].Name().decode() for o in outs],
                           name not in _QUANT_OPS and any(tensors[i].Type() in eight
                                                          for i in ins if i >= 0))
            idx = _TFLITE_WEIGHT_INPUT.get(name)
            if idx is not None and len(ins) > idx and ins[idx] >= 0:
                w = ins[idx]
                p = producer.get(w)
                if p is not None and p[0] == "DEQUANTIZE":
                    w = p[1][0]
                if _tflite_const(model, tensors[w]):
                    t = tensors[w]
                    rec.weight = t.Name().decode()
                    rec.weight_dtype = tnames.get(t.Type(), "?")
                    rec.weight_elements = _prod(t.Shape(k) for k in range(t.ShapeLength()))
                    part = part_of(rec.weight)
                    rec.weight_part = part if part != "other" else part_of(";".join(rec.outputs))
            out.append(rec)
    return out


def _tflite_codes(model, schema) -> list[str]:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        name = names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), "?")
        codes.append((oc.CustomCode() or b"?").decode() if name == "CUSTOM" else name)
    return codes


def _tflite_const(model, tensor) -> bool:
    b = model.Buffers(tensor.Buffer())
    return tensor.Buffer() > 0 and b is not None and (b.DataLength() > 0 or b.Size() > 0)


def _tflite_census(path: Path) -> Census:
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.Model.GetRootAsModel(buf, 0)
    builtin = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")}
    custom = sorted({c for c in _tflite_codes(model, schema) if c not in builtin})
    stored = 0
    seen: set[int] = set()
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for i in range(sg.TensorsLength()):
            t = sg.Tensors(i)
            if _tflite_const(model, t) and t.Buffer() not in seen:
                seen.add(t.Buffer())
                b = model.Buffers(t.Buffer())
                stored += b.DataLength() or b.Size()
    ops = tflite_ops(buf)
    weights = [WeightOp(";".join(o.outputs), o.op, o.weight, o.weight_dtype or "?",
                        o.weight_dtype == "int8", o.weight_part or "other", o.weight_elements)
               for o in ops if o.weight is not None]
    return Census(dict(Counter(o.op for o in ops)), sum(o.reads_int8 for o in ops), weights,
                  stored, custom)


def census(path: str | Path) -> Census:
    """The census of an .onnx, .ort or .tflite file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _onnx_census(*_onnx_graph(path))
    if suffix == ".ort":
        return _onnx_census(*_ort_graph(path))
    if suffix == ".tflite":
        return _tflite_census(path)
    raise ValueError(f"no census for {path.name}: expected .onnx, .ort or .tflite")
