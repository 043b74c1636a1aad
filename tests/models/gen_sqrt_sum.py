#!/usr/bin/env python3
"""A tiny hand-built model whose output is NaN for some inputs:
score = sqrt(sum(input)), so a negative sum gives NaN. Used to test that a
NaN model output is dead-lettered at stage `infer`. Writes sqrt_sum.onnx and
its golden file (onnxruntime outputs for non-negative rows)."""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent
x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 6])
y = helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])
axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
graph = helper.make_graph(
    [
        helper.make_node("ReduceSum", ["input", "axes"], ["total"], keepdims=1),
        helper.make_node("Sqrt", ["total"], ["score"]),
    ],
    "sqrt_sum",
    [x],
    [y],
    initializer=[axes],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="modelbus-tests")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, HERE / "sqrt_sum.onnx")
rows = np.random.default_rng(3).uniform(0, 10, size=(16, 6)).astype(np.float32)
out = ort.InferenceSession(str(HERE / "sqrt_sum.onnx")).run(None, {"input": rows})[0]
golden = {
    "tolerance": 1e-5,
    "inputs": {"input": {"shape": [16, 6], "data": [float(v) for v in rows.ravel()]}},
    "outputs": {"score": {"shape": [16, 1], "data": [float(v) for v in out.ravel()]}},
}
(HERE / "sqrt_sum.golden.json").write_text(json.dumps(golden))
print("wrote sqrt_sum.onnx")
