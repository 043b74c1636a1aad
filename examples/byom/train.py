#!/usr/bin/env python3
"""Train the loan default model of the bring-your-own-model walkthrough
(docs/bring-your-own-model.md): LoanApplied -> LoanScored.

Run from the repo root:

    .venv/bin/python examples/byom/train.py

Writes, next to this file:
    model.onnx                   Pipeline(SimpleImputer, GradientBoostingClassifier), skl2onnx, zipmap=False
    features/applicants.csv      the `applicants` feature store: 1,000 applicants, some values missing
    events.jsonl                 five LoanApplied events to publish

The golden file is made afterwards with scripts/make_golden.py. Everything
is synthetic and deterministic (fixed seeds).
"""

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

HERE = Path(__file__).resolve().parent
SEED = 11
N_APPLICANTS = 1000
N_LOANS = 8000

# The model's input columns, in order. The worker's `inputs` list in
# modelbus.toml must name them in exactly this order.
EVENT_FIELDS = ["amount", "term_months", "annual_income"]  # from the LoanApplied event
APPLICANT_FEATURES = ["age", "credit_score", "open_accounts", "delinquencies_2y", "years_employed"]  # from the store
COLUMNS = EVENT_FIELDS + APPLICANT_FEATURES
TERMS = np.array([12, 24, 36, 48, 60])


def make_applicants(rng):
    n = N_APPLICANTS
    age = np.clip(rng.normal(40, 12, n), 18, 80).round()
    credit = np.clip(rng.normal(680, 60, n), 300, 850).round()
    accounts = rng.poisson(4, n)
    delinquencies = rng.poisson(np.clip((700 - credit) / 80, 0.05, None))
    years_employed = np.minimum(rng.gamma(2.0, 3.0, n), age - 18).round(1)
    cols = np.stack([age, credit, accounts, delinquencies, years_employed], axis=1).astype(np.float64)
    # Some applicants have no credit score or no employment record: missing values.
    cols[rng.random(n) < 0.08, 1] = np.nan
    cols[rng.random(n) < 0.05, 4] = np.nan
    return cols


def make_loans(rng, applicants, n):
    who = rng.integers(0, N_APPLICANTS, n)
    income = np.round(rng.lognormal(np.log(52000), 0.5, n), -2)
    amount = np.round(np.clip(rng.lognormal(np.log(12000), 0.7, n), 500, 100000), 2)
    term = rng.choice(TERMS, n)
    income_seen = income.copy()
    income_seen[rng.random(n) < 0.10] = np.nan  # not every applicant states an income
    X = np.column_stack([amount, term, income_seen, applicants[who]])
    a = applicants[who]
    credit = np.where(np.isnan(a[:, 1]), 600.0, a[:, 1])
    years = np.where(np.isnan(a[:, 4]), 0.0, a[:, 4])
    z = (
        -2.2
        + 1.4 * np.log1p(amount / income)
        + 0.012 * (term - 36)
        - 0.011 * (credit - 680)
        + 0.45 * np.minimum(a[:, 3], 5)
        - 0.06 * np.minimum(years, 10)
        + 0.5 * (a[:, 0] < 25)
        + 0.3 * np.isnan(a[:, 1])
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    return who, X, y


def write_applicants(path, applicants):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["applicant_id"] + APPLICANT_FEATURES)  # entity key first, then one column per feature
        for i, row in enumerate(applicants):
            cells = []
            for name, v in zip(APPLICANT_FEATURES, row):
                if np.isnan(v):
                    cells.append("")  # an empty cell is a missing value
                elif name == "years_employed":
                    cells.append(f"{v:.1f}")
                else:
                    cells.append(str(int(v)))
            w.writerow([f"A{i:04d}"] + cells)


def main():
    rng = np.random.default_rng(SEED)
    applicants = make_applicants(rng)
    write_applicants(HERE / "features" / "applicants.csv", applicants)

    who, X, y = make_loans(rng, applicants, N_LOANS)
    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float32), y, test_size=0.25, random_state=SEED, stratify=y
    )
    pipe = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("gb", GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=SEED)),
        ]
    )
    pipe.fit(X_train, y_train)
    auc = roc_auc_score(y_test, pipe.predict_proba(X_test)[:, 1])

    # Export. zipmap=False: the probabilities come out as a float tensor
    # [N, 2] that modelbus can read (`probabilities[1]`), not as a list of
    # {class: probability} dicts (ZipMap), which is not a tensor.
    onx = convert_sklearn(
        pipe,
        "loan_default",
        initial_types=[("input", FloatTensorType([None, len(COLUMNS)]))],
        options={id(pipe[-1]): {"zipmap": False}},  # the classifier, the last step
    )
    onx.graph.name = "loan_default"  # converters name the graph with a random uuid; keep the bytes reproducible
    onx.doc_string = "Loan default model. input columns: " + ",".join(COLUMNS)
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)  # emitted in set order; sort them
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)
    model_path = HERE / "model.onnx"
    onnx.save(onx, str(model_path))

    # onnxruntime must agree with scikit-learn, missing values included.
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    got = sess.run(["probabilities"], {"input": X_test})[0]
    diff = float(np.max(np.abs(got - pipe.predict_proba(X_test))))
    assert diff < 1e-5, f"onnxruntime disagrees with scikit-learn: {diff}"

    # A few events to publish (the walkthrough publishes one of them).
    events = []
    for i in range(5):
        k = int(who[i])
        # The last one states no income: null, a missing value the imputer fills in.
        income = None if i == 4 or np.isnan(X[i, 2]) else float(X[i, 2])
        events.append(
            {
                "type": "LoanApplied",
                "source": "/loans/web",
                "subject": f"A{k:04d}",
                "data": {
                    "application_id": f"L-{i + 1:04d}",
                    "applicant_id": f"A{k:04d}",
                    "amount": float(X[i, 0]),
                    "term_months": int(X[i, 1]),
                    "annual_income": income,
                },
            }
        )
    with open(HERE / "events.jsonl", "w") as f:
        for ev in events:
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")

    ops = sorted({n.op_type for n in onx.graph.node})
    print(f"{N_LOANS} loans, default rate {y.mean():.3f}; test AUC {auc:.3f}; onnxruntime vs scikit-learn {diff:.1e}")
    print(f"model.onnx: {model_path.stat().st_size / 1024:.0f} KiB, ops {', '.join(ops)}")
    print(f"inputs: `input` float[N, {len(COLUMNS)}] = {', '.join(COLUMNS)}")
    print("outputs: " + ", ".join(f"`{o.name}` {o.type}" for o in sess.get_outputs()))


if __name__ == "__main__":
    main()
