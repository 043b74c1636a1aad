#!/usr/bin/env python3
"""Write a golden file (`<model>.golden.json`) for any ONNX model.

    .venv/bin/python scripts/make_golden.py MODEL.onnx [--rows 64] [--inputs CSV_OR_NPY]
        [--seed N] [--tolerance 1e-5] [--nan-fraction 0] [--range LOW HIGH] [--out PATH]

modelbus runs the golden inputs through the model when it loads it and
compares every golden output with what its runtime computes; a difference
larger than `tolerance` refuses to start (see docs/golden-files.md). This
script makes such a file with onnxruntime as the reference:

1. It reads the model's inputs with onnxruntime: names, shapes, element
   types. modelbus feeds 2-D inputs `[batch, features]` of float, double,
   int64 or int32; anything else is refused here, as modelbus would.
2. It makes rows:
   - with `--inputs FILE`: from a CSV (one column per input feature, in the
     model's input order; several inputs take their columns one after the
     other; an optional header row; an empty cell, `nan`, `NA` or `null` is a
     missing value) or a `.npy` array `[rows, features]`;
   - otherwise at random (`--seed`), in a range read from the graph where it
     can: for tree ensembles, a little beyond each feature's smallest and
     largest split threshold, so rows fall on both sides of the splits; for a
     `Scaler`, offset +- 3 / scale; else a standard normal. `--range LOW HIGH`
     overrides that with a uniform range for every feature.
   `--nan-fraction F` then blanks that fraction of float cells (NaN, written
   as `null`): use it for models that route missing values (trees, or a
   pipeline with an imputer). Integer inputs never get NaN.
   Values are rounded to float32 first, because modelbus reads golden inputs
   as float32 (and widens them for a double input), so onnxruntime sees
   exactly what modelbus will.
3. It runs onnxruntime (CPUExecutionProvider) and writes every float output.
   Non-numeric outputs (ZipMap's list of dicts, string labels) and integer
   outputs (class labels: modelbus computes labels itself, with
   `argmax(probabilities)`) are skipped, with a note on stderr.

The file is written beside the model as `<model>.golden.json` (where
modelbus looks for it by default) unless `--out` says otherwise.
"""

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

SUPPORTED = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}
MISSING = {"", "nan", "NaN", "NAN", "NA", "N/A", "null", "None"}
# Integers beyond this are not exact in float32, which is how modelbus reads golden inputs.
F32_EXACT_INT = 2**24


def note(msg):
    print(f"make_golden: {msg}", file=sys.stderr)


def die(msg):
    note(f"error: {msg}")
    sys.exit(2)


# --------------------------------------------------------------------------- the model's inputs


class Input:
    def __init__(self, meta):
        self.name = meta.name
        self.type = meta.type
        if meta.type not in SUPPORTED:
            die(
                f"input `{meta.name}` is {meta.type}; modelbus feeds float, double, int64 or int32 inputs only"
            )
        self.dtype = SUPPORTED[meta.type]
        shape = list(meta.shape)
        if len(shape) != 2:
            die(f"input `{meta.name}` has shape {shape}; modelbus needs 2-D inputs [batch, features]")
        if not isinstance(shape[1], int) or shape[1] <= 0:
            die(f"input `{meta.name}` has shape {shape}; modelbus needs a fixed feature width (the second dimension)")
        self.width = shape[1]
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

    @property
    def is_float(self):
        return self.dtype in (np.float32, np.float64)


# --------------------------------------------------------------------------- ranges from the graph


def graph_hints(model_path, inputs):
    """Per input, per feature: ('split', lo, hi) from tree thresholds, ('scaled', lo, hi) from a
    Scaler, or None. Follows each input through column-preserving ops (Identity, Cast, Imputer,
    Where as an imputer, Scaler) to the tree ensembles that read it."""
    hints = {i.name: [None] * i.width for i in inputs}
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        return hints
    try:
        graph = onnx.load(str(model_path)).graph
    except Exception as e:  # the file loaded in onnxruntime; a hint is only a hint
        note(f"cannot read the graph for value ranges ({e}); using a standard normal")
        return hints

    # tensor name -> (source input, a, b): tensor = a * x + b, column-wise
    affine = {i.name: (i.name, np.ones(i.width), np.zeros(i.width)) for i in inputs}
    splits = {i.name: [[] for _ in range(i.width)] for i in inputs}

    def attr(node, name):
        for a in node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                return numpy_helper.to_array(v).tolist() if isinstance(v, onnx.TensorProto) else v
        return None

    for node in graph.node:
        op = node.op_type
        if op == "Where" and len(node.input) == 3 and node.input[2] in affine:
            affine[node.output[0]] = affine[node.input[2]]  # Where(IsNaN(x), fill, x): an imputer
            continue
        if not node.input or node.input[0] not in affine:
            continue
        src, a, b = affine[node.input[0]]
        if op in ("Identity", "Cast", "Imputer"):
            affine[node.output[0]] = (src, a, b)
        elif op == "Scaler":
            off = np.broadcast_to(np.asarray(attr(node, "offset") or [0.0], dtype=float), a.shape)
            scale = np.broadcast_to(np.asarray(attr(node, "scale") or [1.0], dtype=float), a.shape)
            affine[node.output[0]] = (src, a * scale, (b - off) * scale)
        elif op.startswith("TreeEnsemble"):
            feats = attr(node, "nodes_featureids")
            values = attr(node, "nodes_values") or attr(node, "nodes_values_as_tensor") or attr(node, "nodes_splits")
            modes = attr(node, "nodes_modes")
            if feats is None or values is None:
                continue
            modes = modes if modes is not None else [None] * len(feats)
            for f, v, m in zip(feats, values, modes):
                if m in (b"LEAF", "LEAF") or not 0 <= f < len(a) or a[f] == 0 or not math.isfinite(v):
                    continue
                splits[src][f].append((v - b[f]) / a[f])

    for i in inputs:
        for f in range(i.width):
            t = splits[i.name][f]
            if t:
                lo, hi = min(t), max(t)
                pad = 0.1 * (hi - lo) if hi > lo else max(1.0, abs(lo) * 0.1)
                hints[i.name][f] = ("split", lo - pad, hi + pad)
        # a Scaler on the way (and no splits for the feature): the range it standardises
        for name, (src, a, b) in affine.items():
            if src != i.name or (np.all(a == 1) and np.all(b == 0)):
                continue
            for f in range(i.width):
                if hints[i.name][f] is None and a[f] != 0:
                    lo, hi = sorted(((-3 - b[f]) / a[f], (3 - b[f]) / a[f]))
                    hints[i.name][f] = ("scaled", lo, hi)
    return hints


# --------------------------------------------------------------------------- rows


def random_rows(inputs, rows, rng, hints, value_range):
    data = {}
    for i in inputs:
        cols = []
        for f in range(i.width):
            h = hints[i.name][f]
            if value_range is not None:
                lo, hi = value_range
            elif h is not None:
                lo, hi = h[1], h[2]
            else:
                lo = hi = None
            if i.is_float:
                col = rng.uniform(lo, hi, rows) if lo is not None else rng.standard_normal(rows)
            else:
                lo_i, hi_i = (math.floor(lo), math.ceil(hi)) if lo is not None else (0, 10)
                lo_i, hi_i = max(lo_i, -F32_EXACT_INT), min(hi_i, F32_EXACT_INT)
                col = rng.integers(lo_i, hi_i, rows, endpoint=True)
            cols.append(col)
        data[i.name] = np.stack(cols, axis=1).astype(np.float64)
    return data


def parse_cell(cell):
    cell = cell.strip()
    if cell in MISSING:
        return math.nan
    return float(cell)


def file_rows(inputs, path):
    path = Path(path)
    total = sum(i.width for i in inputs)
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float64)
        if arr.ndim == 1 and total == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            die(f"{path}: expected a 2-D array [rows, features], got shape {list(arr.shape)}")
    else:
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
        if rows:
            try:
                [parse_cell(c) for c in rows[0]]
            except ValueError:
                rows = rows[1:]  # a header row
        parsed = []
        for n, r in enumerate(rows, start=1):
            try:
                parsed.append([parse_cell(c) for c in r])
            except ValueError as e:
                die(f"{path}: data row {n}: {e}")
            if len(r) != total:
                die(f"{path}: data row {n} has {len(r)} columns, the model takes {total}")
        arr = np.array(parsed, dtype=np.float64).reshape(-1, total)
    if arr.shape[1] != total:
        widths = ", ".join(f"`{i.name}` {i.width}" for i in inputs)
        die(f"{path}: {arr.shape[1]} columns, but the model's inputs take {total} ({widths}), in that order")
    if len(arr) == 0:
        die(f"{path}: no rows")
    data, at = {}, 0
    for i in inputs:
        block = arr[:, at : at + i.width]
        at += i.width
        if not i.is_float:
            if not np.all(np.isfinite(block)):
                die(f"{path}: input `{i.name}` is {i.type} and cannot take a missing value")
            if np.any(block != np.round(block)) or np.any(np.abs(block) > F32_EXACT_INT):
                die(f"{path}: input `{i.name}` is {i.type}: values must be integers below 2^24 in magnitude")
        data[i.name] = block.copy()
    return data


# --------------------------------------------------------------------------- golden


def to_json_list(a):
    return [None if math.isnan(v) else float(v) for v in np.asarray(a, dtype=np.float64).ravel().tolist()]


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Write <model>.golden.json for an ONNX model: inputs and onnxruntime's float outputs.",
    )
    p.add_argument("model", type=Path, help="the .onnx file")
    p.add_argument("--rows", type=int, default=None, help="rows (default 64; with --inputs: the first N, default all)")
    p.add_argument("--inputs", type=Path, help="rows from a CSV or .npy file, one column per input feature in order")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--tolerance", type=float, default=1e-5, help="largest absolute difference allowed (default 1e-5)")
    p.add_argument("--nan-fraction", type=float, default=0.0, help="fraction of float cells made missing (default 0)")
    p.add_argument("--range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="uniform random values in this range")
    p.add_argument("--out", type=Path, help="where to write (default: beside the model, <model>.golden.json)")
    args = p.parse_args(argv)

    if not args.model.is_file():
        die(f"{args.model}: no such file")
    if not 0.0 <= args.nan_fraction < 1.0:
        die("--nan-fraction must be in [0, 1)")
    if not args.tolerance > 0 or not math.isfinite(args.tolerance):
        die("--tolerance must be a positive number")
    if args.rows is not None and args.rows <= 0:
        die("--rows must be positive")

    try:
        sess = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    except Exception as e:
        die(f"onnxruntime cannot load {args.model}: {e}")
    inputs = [Input(m) for m in sess.get_inputs()]
    rng = np.random.default_rng(args.seed)

    if args.inputs is not None:
        data = file_rows(inputs, args.inputs)
        if args.rows is not None:
            data = {k: v[: args.rows] for k, v in data.items()}
        rows = len(next(iter(data.values())))
        origin = str(args.inputs)
    else:
        rows = args.rows or 64
        fixed = {i.fixed_batch for i in inputs if i.fixed_batch}
        if fixed:
            rows = fixed.pop()
            note(f"the model's batch dimension is fixed at {rows}: writing {rows} rows")
        hints = graph_hints(args.model, inputs)
        data = random_rows(inputs, rows, rng, hints, args.range)
        kinds = [h[0] if h else ("normal" if i.is_float else "integer 0..10") for i in inputs for h in hints[i.name]]
        if args.range:
            origin = f"random, uniform in [{args.range[0]}, {args.range[1]}]"
        else:
            origin = "random: " + ", ".join(f"{kinds.count(k)} {k}" for k in ("split", "scaled", "normal", "integer 0..10") if kinds.count(k))

    nan_cells = 0
    for i in inputs:
        x = data[i.name]
        if i.is_float and args.nan_fraction > 0:
            x[rng.random(x.shape) < args.nan_fraction] = np.nan
        # modelbus reads golden inputs as float32; make onnxruntime see the same values.
        x = x.astype(np.float32).astype(np.float64)
        nan_cells += int(np.isnan(x).sum())
        data[i.name] = x

    feed = {i.name: data[i.name].astype(i.dtype) for i in inputs}
    try:
        results = sess.run(None, feed)
    except Exception as e:
        die(f"onnxruntime failed on the rows: {e}")

    outputs = {}
    for meta, val in zip(sess.get_outputs(), results):
        if not meta.type.startswith("tensor("):
            note(f"skipping output `{meta.name}` ({meta.type}): not a tensor (a ZipMap? export with zipmap=False)")
            continue
        val = np.asarray(val)
        if val.dtype.kind != "f":
            why = "integer (a class label? modelbus computes labels with argmax)" if val.dtype.kind in "iub" else "not numeric"
            note(f"skipping output `{meta.name}` ({meta.type}): {why}")
            continue
        if np.any(np.isinf(val)):
            die(f"output `{meta.name}` has infinite values, which a golden file cannot hold")
        if np.any(np.isnan(val)):
            hint = (
                "; the model does not route missing values, modelbus keeps them from it by default"
                " (allow_nan = false without tree ensembles), and tract may not give NaN for NaN:"
                " use --nan-fraction 0"
                if nan_cells
                else ""
            )
            note(f"output `{meta.name}` has {int(np.isnan(val).sum())} NaN values, written as null{hint}")
        outputs[meta.name] = {"shape": list(val.shape), "data": to_json_list(val)}
    if not outputs:
        die("the model has no float outputs to check")

    golden = {
        "tolerance": args.tolerance,
        "inputs": {i.name: {"shape": list(data[i.name].shape), "data": to_json_list(data[i.name])} for i in inputs},
        "outputs": outputs,
    }
    out = args.out or args.model.with_suffix(".golden.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(golden, f, allow_nan=False)
        f.write("\n")
    ins = ", ".join(f"`{i.name}` {i.type[7:-1]}[{rows},{i.width}]" for i in inputs)
    outs = ", ".join(f"`{k}` {v['shape']}" for k, v in outputs.items())
    note(f"{out}: {rows} rows ({origin}; {nan_cells} NaN cells); inputs {ins}; outputs {outs}; tolerance {args.tolerance:g}")


if __name__ == "__main__":
    main()
