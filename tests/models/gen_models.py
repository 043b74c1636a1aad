#!/usr/bin/env python3
"""Generate one small ONNX model per export family, plus onnxruntime golden outputs.

Run from the repo root:

    .venv/bin/python tests/models/gen_models.py

For every model `<name>` this writes, next to this file:
    <name>.onnx          input `input` float32 [None, 6]
    <name>.golden.json   64 rows, onnxruntime (CPUExecutionProvider) outputs
and finally README.md summarising families, converters, op types and outputs.

Tree models get ~10% NaN cells in their golden inputs; linear/MLP models none.
"""

import json
import math
import sys
import warnings
from pathlib import Path

import lightgbm
import numpy as np
import onnx
import onnxmltools
import onnxruntime as ort
import skl2onnx
import sklearn
import xgboost
from onnxmltools.convert.common.data_types import FloatTensorType as MLFloatTensorType
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore", message="X does not have valid feature names")

HERE = Path(__file__).resolve().parent
SEED = 42
N_ROWS = 2000
N_FEATURES = 6
N_GOLDEN = 64
NAN_FRACTION = 0.10
TOLERANCE = 1e-5
ONNX_OPSET_MLTOOLS = 15  # onnxmltools refuses target_opset > 15 (it picks ai.onnx.ml 1 itself)


# --------------------------------------------------------------------------- data


def make_data():
    rng = np.random.default_rng(SEED)
    n, f = N_ROWS, N_FEATURES
    # heterogeneous scales so the scaler actually matters
    scale = np.array([1.0, 10.0, 0.1, 100.0, 1.0, 5.0])
    shift = np.array([0.0, 50.0, -1.0, 1000.0, 3.0, 0.0])
    Z = rng.normal(size=(n, f))
    X = Z * scale + shift
    logit = 1.2 * Z[:, 0] - 0.8 * Z[:, 1] + 0.6 * Z[:, 2] * Z[:, 3] + 0.9 * np.sin(2 * Z[:, 4]) + 0.3 * Z[:, 5]
    y_bin = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    y_reg = 3.0 * Z[:, 0] + 2.0 * np.abs(Z[:, 1]) - 1.5 * Z[:, 2] * Z[:, 4] + np.tanh(Z[:, 3]) + 0.2 * rng.normal(size=n)
    s = logit + 0.5 * rng.normal(size=n)
    y_multi = np.digitize(s, np.quantile(s, [1 / 3, 2 / 3])).astype(np.int64)
    # training copy with ~5% missing values, for models that learn a missing-value direction
    X_nan = X.copy()
    X_nan[rng.random(X.shape) < 0.05] = np.nan
    # golden inputs: fresh rows from the same distribution
    Xg = (rng.normal(size=(N_GOLDEN, f)) * scale + shift).astype(np.float32)
    Xg_nan = Xg.copy()
    Xg_nan[rng.random(Xg.shape) < NAN_FRACTION] = np.nan
    return {
        "X": X.astype(np.float32),
        "X_nan": X_nan.astype(np.float32),
        "y_bin": y_bin,
        "y_reg": y_reg,
        "y_multi": y_multi,
        "Xg": Xg,
        "Xg_nan": Xg_nan,
    }


# --------------------------------------------------------------------------- converters


def skl(model):
    opts = {id(model): {"zipmap": False}} if hasattr(model, "classes_") else None
    return convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        options=opts,
    )


def skl_pipeline(pipe):
    clf = pipe.steps[-1][1]
    return convert_sklearn(
        pipe,
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        options={id(clf): {"zipmap": False}},
    )


def _patch_skl2onnx_hgb_bool():
    """skl2onnx 1.20 passes a Python bool (`missing = False` for leaves) into the
    integer-list attribute `nodes_missing_value_tracks_true` when converting
    HistGradientBoosting*, which onnx.helper rejects ("Expected an int, got a
    boolean"). Wrap its `add_node` helper so that value is coerced to int."""
    from skl2onnx.common import tree_ensemble

    if getattr(tree_ensemble.add_node, "_modelbus_patched", False):
        return
    orig = tree_ensemble.add_node

    def add_node(*args, **kwargs):
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return orig(*args, **kwargs)

    add_node._modelbus_patched = True
    tree_ensemble.add_node = add_node


_patch_skl2onnx_hgb_bool()


def tidy(onx):
    """Normalise converter quirks so every model looks alike to a strict loader:
    - drop duplicated opset_import entries (skl2onnx HGB emits ('', 22) twice)
      and sort them (onnxmltools emits them in set order);
    - make the batch dimension of every graph output dynamic (onnxmltools'
      LightGBM converter declares `label` as int64[1] although it is [N])."""
    seen, keep = set(), []
    for o in onx.opset_import:
        if o.domain not in seen:
            seen.add(o.domain)
            keep.append((o.domain, o.version))
    del onx.opset_import[:]
    for dom, ver in sorted(keep):
        onx.opset_import.add(domain=dom, version=ver)
    for out in onx.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value"):
            dims[0].Clear()
    return onx


def mltools_lgbm(model):
    return onnxmltools.convert_lightgbm(
        model,
        initial_types=[("input", MLFloatTensorType([None, N_FEATURES]))],
        target_opset=ONNX_OPSET_MLTOOLS,
        zipmap=False,
    )


def mltools_xgb(model):
    return onnxmltools.convert_xgboost(
        model,
        initial_types=[("input", MLFloatTensorType([None, N_FEATURES]))],
        target_opset=ONNX_OPSET_MLTOOLS,
    )


# --------------------------------------------------------------------------- golden


def to_json_list(a):
    return [None if math.isnan(v) else float(v) for v in np.asarray(a).ravel().tolist()]


def run_ort(path, X):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "input", inp.name
    names = [o.name for o in sess.get_outputs()]
    return names, sess.run(None, {"input": X})


def write_golden(path, X):
    names, results = run_ort(path, X)
    outputs = {}
    for name, val in zip(names, results):
        val = np.asarray(val)
        if val.dtype.kind != "f":
            continue
        assert np.all(np.isfinite(val)), f"{path.name}: non-finite output {name}"
        outputs[name] = {"shape": list(val.shape), "data": to_json_list(val)}
    assert outputs, f"{path.name}: no float outputs"
    golden = {
        "tolerance": TOLERANCE,
        "inputs": {"input": {"shape": list(X.shape), "data": to_json_list(X)}},
        "outputs": outputs,
    }
    with open(path.with_suffix(".golden.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")


def describe(onx, path):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ops = []
    for n in onx.graph.node:
        op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        if op not in ops:
            ops.append(op)
    opsets = {(o.domain or "ai.onnx"): o.version for o in onx.opset_import}

    def fmt(io):
        shape = ",".join("N" if not isinstance(d, int) else str(d) for d in io.shape)
        t = io.type.replace("tensor(", "").rstrip(")")
        return f"`{io.name}` {t}[{shape}]"

    return {
        "ops": ops,
        "opsets": opsets,
        "inputs": [fmt(i) for i in sess.get_inputs()],
        "outputs": [fmt(o) for o in sess.get_outputs()],
    }


# --------------------------------------------------------------------------- main


def main():
    d = make_data()
    X, Xn = d["X"], d["X_nan"]
    yb, yr, ym = d["y_bin"], d["y_reg"], d["y_multi"]

    # (name, family, converter, model, train X, target, convert fn, golden uses NaN)
    specs = [
        ("logreg", "LogisticRegression", "skl2onnx", LogisticRegression(max_iter=1000), X, yb, skl, False),
        (
            "logreg_scaled",
            "Pipeline(StandardScaler, LogisticRegression)",
            "skl2onnx",
            Pipeline([("scaler", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]),
            X,
            yb,
            skl_pipeline,
            False,
        ),
        (
            "gb_clf",
            "GradientBoostingClassifier(30 trees, depth 3)",
            "skl2onnx",
            GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=SEED),
            X,
            yb,
            skl,
            True,
        ),
        (
            "gb_reg",
            "GradientBoostingRegressor(30 trees, depth 3)",
            "skl2onnx",
            GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=SEED),
            X,
            yr,
            skl,
            True,
        ),
        (
            "rf_clf",
            "RandomForestClassifier(20 trees, depth 5)",
            "skl2onnx",
            RandomForestClassifier(n_estimators=20, max_depth=5, random_state=SEED),
            X,
            yb,
            skl,
            True,
        ),
        (
            "rf_reg",
            "RandomForestRegressor(20 trees, depth 5)",
            "skl2onnx",
            RandomForestRegressor(n_estimators=20, max_depth=5, random_state=SEED),
            X,
            yr,
            skl,
            True,
        ),
        (
            "hgb_clf",
            "HistGradientBoostingClassifier(max_iter=30), trained with NaN",
            "skl2onnx",
            HistGradientBoostingClassifier(max_iter=30, random_state=SEED),
            Xn,
            yb,
            skl,
            True,
        ),
        (
            "mlp_clf",
            "MLPClassifier(hidden=(16,), relu)",
            "skl2onnx",
            MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=SEED),
            X,
            yb,
            skl,
            False,
        ),
        (
            "lgbm_clf",
            "LightGBM LGBMClassifier(30 trees), trained with NaN",
            "onnxmltools",
            lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, random_state=SEED, verbose=-1),
            Xn,
            yb,
            mltools_lgbm,
            True,
        ),
        (
            "xgb_clf",
            "XGBoost XGBClassifier(30 trees, depth 3), trained with NaN",
            "onnxmltools",
            xgboost.XGBClassifier(n_estimators=30, max_depth=3, random_state=SEED, n_jobs=1),
            Xn,
            yb,
            mltools_xgb,
            True,
        ),
        (
            "xgb_reg",
            "XGBoost XGBRegressor(30 trees, depth 3), trained with NaN",
            "onnxmltools",
            xgboost.XGBRegressor(n_estimators=30, max_depth=3, random_state=SEED, n_jobs=1),
            Xn,
            yr,
            mltools_xgb,
            True,
        ),
        (
            "gb_multi",
            "GradientBoostingClassifier(30 trees, depth 3), 3 classes",
            "skl2onnx",
            GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=SEED),
            X,
            ym,
            skl,
            True,
        ),
    ]

    only = set(sys.argv[1:])
    rows = []
    for name, family, converter, model, Xtr, y, convert, use_nan in specs:
        if only and name not in only:
            continue
        model.fit(Xtr, y)
        onx = tidy(convert(model))
        onx.doc_string = f"modelbus test model {name}: {family}"
        onx.graph.name = name  # converters default to a random uuid; keep the bytes reproducible
        onnx.checker.check_model(onx)
        path = HERE / f"{name}.onnx"
        onnx.save(onx, str(path))

        # sanity: onnxruntime agrees with the source model on clean inputs
        Xc = d["Xg"]
        _, res = run_ort(path, Xc)
        if hasattr(model, "predict_proba"):
            ref = model.predict_proba(Xc)
            got = [r for r in res if np.asarray(r).dtype.kind == "f"][0]
        else:
            ref = model.predict(Xc).reshape(-1, 1)
            got = res[0]
        diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - ref)))
        scale = max(1.0, float(np.max(np.abs(ref))))
        assert diff / scale < 1e-4, f"{name}: onnxruntime disagrees with source model ({diff})"

        if Xtr is Xn:
            # trained with NaN: the source model defines the missing-value semantics; check them too
            Xcn = d["Xg_nan"]
            _, res = run_ort(path, Xcn)
            if hasattr(model, "predict_proba"):
                ref = model.predict_proba(Xcn)
                got = [r for r in res if np.asarray(r).dtype.kind == "f"][0]
            else:
                ref = model.predict(Xcn).reshape(-1, 1)
                got = res[0]
            diff_nan = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - ref)))
            assert diff_nan / scale < 1e-4, f"{name}: onnxruntime disagrees with source model on NaN ({diff_nan})"

        Xg = d["Xg_nan"] if use_nan else d["Xg"]
        write_golden(path, Xg)
        info = describe(onx, path)
        size = path.stat().st_size
        assert size < 300 * 1024, f"{name}.onnx too large ({size} bytes)"
        print(f"{name:14s} {size / 1024:7.1f} KiB  max|ort-src|={diff:.1e}  ops={info['ops']}  out={info['outputs']}")
        rows.append((name, family, converter, info, use_nan))

    if not only:
        write_readme(rows)


def write_readme(rows):
    lines = [
        "# Test models",
        "",
        "Generated by `gen_models.py` (run from the repo root: `.venv/bin/python tests/models/gen_models.py`).",
        f"Each `<name>.onnx` has one input `input` float32[N,{N_FEATURES}]; `<name>.golden.json` holds "
        f"{N_GOLDEN} input rows and the float outputs produced by onnxruntime {ort.__version__} "
        f"(CPUExecutionProvider), tolerance {TOLERANCE:g}. Tree models have ~{int(NAN_FRACTION * 100)}% NaN "
        "cells (`null` in JSON) in their golden inputs; linear/MLP models have none. Integer `label` outputs "
        "are not in the golden files.",
        "",
        f"Versions: scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
        f"onnxmltools {onnxmltools.__version__}, lightgbm {lightgbm.__version__}, xgboost {xgboost.__version__}, "
        f"onnx {onnx.__version__}.",
        "",
    ]
    for name, family, converter, info, use_nan in rows:
        opsets = ", ".join(f"{k} {v}" for k, v in sorted(info["opsets"].items()))
        lines.append(
            f"- **{name}** — {family}; {converter} (opsets: {opsets}); ops: {', '.join(info['ops'])}; "
            f"outputs: {', '.join(info['outputs'])}; golden NaN: {'yes' if use_nan else 'no'}"
        )
    lines.append("")
    (HERE / "README.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
