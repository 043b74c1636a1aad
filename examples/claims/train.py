#!/usr/bin/env python3
"""Train the claims risk model used by the `claims` example (ClaimCreated -> RiskScored).

Run from the repo root:

    .venv/bin/python examples/claims/train.py

Outputs (paths relative to this file):
    model/risk.onnx             GradientBoostingClassifier exported with skl2onnx
    model/risk.golden.json      64 rows of onnxruntime reference outputs (some NaN inputs)
    features/customers.csv      the customers feature store (5,000 rows)
    reference/events.jsonl      200 CloudEvents-shaped ClaimCreated events
    reference/scores.jsonl      expected risk_score for each reference event

Everything is deterministic (fixed seeds). The reference scores are computed
from the exact values written to the CSV / JSON files, parsed back as text ->
f64 -> f32, so a consumer can reproduce the model input bit for bit.
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "model"
FEATURES_DIR = HERE / "features"
REFERENCE_DIR = HERE / "reference"

SEED = 7
N_CUSTOMERS = 5000
N_CLAIMS = 30000
N_REFERENCE = 200
N_GOLDEN = 64
NAN_FRACTION = 0.10
TOLERANCE = 1e-5

EVENT_FEATURES = ["amount", "claim_type_code", "days_since_policy_start", "incident_hour"]
CUSTOMER_FEATURES = [
    "tenure_months",
    "prior_claims",
    "age",
    "policy_premium",
    "num_policies",
    "late_payments",
    "credit_score",
    "region_risk",
]
FEATURES = EVENT_FEATURES + CUSTOMER_FEATURES  # model input column order
INT_CUSTOMER_COLS = {"tenure_months", "prior_claims", "age", "num_policies", "late_payments", "credit_score"}


# --------------------------------------------------------------------------- data


def gen_customers(rng):
    n = N_CUSTOMERS
    age = np.clip(rng.normal(46, 14, n), 18, 90).round()
    tenure = np.minimum(rng.gamma(2.0, 30.0, n), (age - 18) * 12).round()
    num_policies = 1 + rng.poisson(0.8, n)
    prior_claims = rng.poisson(0.3 + 0.01 * tenure / 12 + 0.2 * (num_policies - 1), n)
    credit = np.clip(rng.normal(690, 70, n) + 0.6 * (age - 46), 300, 850).round()
    late = rng.poisson(np.clip((720 - credit) / 60, 0.05, None), n)
    premium = (rng.lognormal(np.log(900), 0.45, n) * (1 + 0.25 * (num_policies - 1))).round(2)
    region_risk = np.clip(rng.beta(2, 5, n), 0, 1).round(2)
    cols = {
        "tenure_months": tenure,
        "prior_claims": prior_claims,
        "age": age,
        "policy_premium": premium,
        "num_policies": num_policies,
        "late_payments": late,
        "credit_score": credit,
        "region_risk": region_risk,
    }
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


def write_customers_csv(path, cust):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["customer_id"] + CUSTOMER_FEATURES)
        for i in range(N_CUSTOMERS):
            row = [f"C{i:05d}"]
            for c in CUSTOMER_FEATURES:
                v = cust[c][i]
                row.append(str(int(v)) if c in INT_CUSTOMER_COLS else f"{v:.2f}")
            w.writerow(row)


def read_customers_csv(path):
    """Read the CSV back exactly as text -> Python float (f64), keyed by customer id."""
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        assert r.fieldnames == ["customer_id"] + CUSTOMER_FEATURES, r.fieldnames
        return {row["customer_id"]: [float(row[c]) for c in CUSTOMER_FEATURES] for row in r}


def gen_claim_events(rng, n, cust_ids):
    """Event-side fields. Values are already in their final (JSON) precision."""
    claim_type = rng.choice(5, size=n, p=[0.35, 0.25, 0.2, 0.12, 0.08])  # 0 auto .. 4 liability
    type_scale = np.array([2500.0, 1200.0, 6000.0, 900.0, 15000.0])[claim_type]
    amount = np.round(rng.lognormal(np.log(type_scale), 0.8), 2)
    days = np.floor(rng.exponential(500, n)).astype(np.int64)
    # mostly daytime, a tail of night-time incidents
    hour = np.where(rng.random(n) < 0.8, rng.normal(14, 3.5, n), rng.uniform(0, 24, n))
    hour = np.mod(np.floor(hour), 24).astype(np.int64)
    cust = rng.choice(cust_ids, size=n)
    return {
        "customer_idx": cust,
        "amount": amount,
        "claim_type_code": claim_type.astype(np.int64),
        "days_since_policy_start": days,
        "incident_hour": hour,
    }


def fraud_logit(X):
    c = {name: X[:, i] for i, name in enumerate(FEATURES)}
    amount_to_premium = c["amount"] / np.maximum(c["policy_premium"], 1.0)
    night = ((c["incident_hour"] >= 23) | (c["incident_hour"] <= 4)).astype(float)
    early = c["days_since_policy_start"] < 60
    z = (
        -3.6
        + 0.9 * np.log1p(amount_to_premium)
        + 1.3 * early
        + 0.6 * early * (c["claim_type_code"] == 4)  # big liability claim right after inception
        + 0.8 * night
        + 0.5 * night * (c["claim_type_code"] == 0)  # night-time auto claims
        + 0.45 * np.minimum(c["prior_claims"], 5)
        + 0.30 * np.minimum(c["late_payments"], 6)
        - 0.008 * (c["credit_score"] - 690)
        + 2.0 * (c["region_risk"] - 0.28)
        - 0.012 * np.minimum(c["tenure_months"], 120)
        - 0.25 * (c["num_policies"] - 1)
        + 0.6 * (c["age"] < 25)
        + 0.4 * np.array([0.0, 0.3, 0.6, -0.2, 0.4])[c["claim_type_code"].astype(int)]
    )
    return z


def assemble(events, cust_rows, idx):
    """Build the [n, 12] f64 feature matrix (values exactly as written to JSON/CSV)."""
    rows = []
    for i in idx:
        cid = f"C{int(events['customer_idx'][i]):05d}"
        rows.append(
            [
                float(events["amount"][i]),
                float(events["claim_type_code"][i]),
                float(events["days_since_policy_start"][i]),
                float(events["incident_hour"][i]),
            ]
            + cust_rows[cid]
        )
    return np.array(rows, dtype=np.float64)


def check_f32_exact(X64):
    """Guard against double rounding: text -> f64 -> f32 must equal text -> f32.

    That can only differ when the f64 value lies exactly halfway between two
    adjacent f32 values; assert that never happens for our data.
    """
    x = X64[np.isfinite(X64)]
    f = x.astype(np.float32)
    lo = np.where(f.astype(np.float64) <= x, f, np.nextafter(f, np.float32(-np.inf)))
    hi = np.nextafter(lo, np.float32(np.inf))
    mid = (lo.astype(np.float64) + hi.astype(np.float64)) / 2
    assert not np.any(mid == x), "a feature value sits on an f32 rounding midpoint"


# --------------------------------------------------------------------------- onnx


def ort_session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def to_json_list(a):
    return [None if math.isnan(v) else float(v) for v in np.asarray(a).ravel().tolist()]


def write_golden(onnx_path, X32):
    sess = ort_session(onnx_path)
    in_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    results = sess.run(None, {in_name: X32})
    outputs = {}
    for name, val in zip(out_names, results):
        val = np.asarray(val)
        if val.dtype.kind != "f":
            continue  # labels are computed by the consumer
        outputs[name] = {"shape": list(val.shape), "data": to_json_list(val)}
    golden = {
        "tolerance": TOLERANCE,
        "inputs": {in_name: {"shape": list(X32.shape), "data": to_json_list(X32)}},
        "outputs": outputs,
    }
    path = onnx_path.with_suffix(".golden.json")
    with open(path, "w") as f:
        json.dump(golden, f)
        f.write("\n")
    return path


def main():
    rng = np.random.default_rng(SEED)

    # customers feature store
    cust = gen_customers(rng)
    csv_path = FEATURES_DIR / "customers.csv"
    write_customers_csv(csv_path, cust)
    cust_rows = read_customers_csv(csv_path)

    # historical claims (training data)
    events = gen_claim_events(rng, N_CLAIMS, np.arange(N_CUSTOMERS))
    X = assemble(events, cust_rows, range(N_CLAIMS))
    p = 1 / (1 + np.exp(-fraud_logit(X)))
    y = (rng.random(N_CLAIMS) < p).astype(np.int64)

    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float32), y, test_size=0.2, random_state=SEED, stratify=y
    )
    clf = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=7)
    clf.fit(X_train, y_train)
    auc_train = roc_auc_score(y_train, clf.predict_proba(X_train)[:, 1])
    auc_test = roc_auc_score(y_test, clf.predict_proba(X_test)[:, 1])

    # export
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    onx = convert_sklearn(
        clf,
        "claims_risk",
        initial_types=[("input", FloatTensorType([None, len(FEATURES)]))],
        options={id(clf): {"zipmap": False}},
    )
    onx.graph.name = "claims_risk"  # deterministic bytes (converters may use a random uuid)
    onx.doc_string = "Claims risk model. input columns: " + ",".join(FEATURES)
    model_path = MODEL_DIR / "risk.onnx"
    onnx.save(onx, str(model_path))

    # golden file: 64 held-out rows with ~10% NaN cells
    g_rng = np.random.default_rng(SEED + 1)
    Xg = X_test[:N_GOLDEN].copy()
    Xg[g_rng.random(Xg.shape) < NAN_FRACTION] = np.nan
    golden_path = write_golden(model_path, Xg)

    # sanity: onnxruntime agrees with sklearn on NaN-free data
    sess = ort_session(model_path)
    ort_p = sess.run(["probabilities"], {"input": X_test})[0][:, 1]
    max_diff = float(np.max(np.abs(ort_p - clf.predict_proba(X_test)[:, 1])))

    # reference events + expected scores
    r_rng = np.random.default_rng(SEED + 2)
    ref = gen_claim_events(r_rng, N_REFERENCE, np.arange(N_CUSTOMERS))
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    ev_lines = []
    for i in range(N_REFERENCE):
        cid = f"C{int(ref['customer_idx'][i]):05d}"
        ev_lines.append(
            {
                "id": f"ref-{i + 1:04d}",
                "source": "/claims/reference",
                "type": "ClaimCreated",
                "subject": cid,
                "data": {
                    "claim_id": f"CL-{i + 1:04d}",
                    "customer_id": cid,
                    "amount": float(ref["amount"][i]),
                    "claim_type_code": int(ref["claim_type_code"][i]),
                    "days_since_policy_start": int(ref["days_since_policy_start"][i]),
                    "incident_hour": int(ref["incident_hour"][i]),
                },
            }
        )
    with open(REFERENCE_DIR / "events.jsonl", "w") as f:
        for ev in ev_lines:
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")

    # re-read the events from disk so the scores use exactly the serialized values
    with open(REFERENCE_DIR / "events.jsonl") as f:
        parsed = [json.loads(line) for line in f]
    Xr64 = np.array(
        [[float(ev["data"][k]) for k in EVENT_FEATURES] + cust_rows[ev["data"]["customer_id"]] for ev in parsed],
        dtype=np.float64,
    )
    check_f32_exact(Xr64)
    check_f32_exact(X)
    Xr = Xr64.astype(np.float32)
    scores = sess.run(["probabilities"], {"input": Xr})[0][:, 1]
    with open(REFERENCE_DIR / "scores.jsonl", "w") as f:
        for ev, s in zip(parsed, scores):
            f.write(json.dumps({"id": ev["id"], "risk_score": float(s)}, separators=(",", ":")) + "\n")

    ops = sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in onx.graph.node})
    print(f"claims: {N_CLAIMS} claims, {N_CUSTOMERS} customers, fraud rate {y.mean():.3f}")
    print(f"GradientBoostingClassifier(100, depth 3): train AUC {auc_train:.4f}, test AUC {auc_test:.4f}")
    print(f"onnxruntime vs sklearn max |dp| on test set: {max_diff:.2e}")
    print(f"model: {model_path.relative_to(HERE)} ({model_path.stat().st_size / 1024:.1f} KiB), ops {ops}")
    print(f"golden: {golden_path.relative_to(HERE)} ({N_GOLDEN} rows, {int(np.isnan(Xg).sum())} NaN cells)")
    print(
        f"reference: {N_REFERENCE} events, risk_score mean {scores.mean():.4f} "
        f"min {scores.min():.4f} max {scores.max():.4f}"
    )


if __name__ == "__main__":
    main()
