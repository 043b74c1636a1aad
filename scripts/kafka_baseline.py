#!/usr/bin/env python3
"""The benchmark baseline: the claims worker written the way a competent
Python team writes it today, with confluent-kafka and onnxruntime.

    kafka_baseline.py --brokers B --topic claims --result-topic risk-scored
        --group G --count N --model examples/claims/model/risk.onnx
        --features examples/claims/features/customers.csv --batch 256

It does the same work per event as a modelbus worker: decode a binary-mode
CloudEvent, join the customer's features, score a batch with one model call,
emit a RiskScored CloudEvent with a deterministic id and a child trace span,
wait for the broker's acks, then commit (at-least-once). It leaves out what a
team would add later (schema validation, dead letters, retries), so if
anything the comparison flatters the baseline.

After N events it prints one JSON line: events, wall_s, events_per_s, cpu_s,
cpu_us_per_event, inference_cpu_us_per_event, cpu_us_per_event_excl_inference.
Timing runs from the first event received to the last commit, so start-up and
the consumer-group join are not counted.
"""
import argparse
import csv
import datetime
import hashlib
import json
import sys
import time
import tomllib
import uuid
from pathlib import Path

import numpy as np
import onnxruntime as ort
from confluent_kafka import Consumer, Producer, TopicPartition


def load_worker(config_path):
    """The claims worker's settings from modelbus.toml, so the baseline uses
    the same input column order, names and model version as modelbus."""
    config = tomllib.loads(Path(config_path).read_text())
    worker = config["workers"][0]
    model = config["models"][worker["model"]]
    return {
        "name": worker["name"],
        "model_name": worker["model"],
        "model_version": model["version"],
        "result_type": worker["result_type"],
        "result_source": worker.get("result_source", f"modelbus/{worker['name']}"),
        "entity_key": worker["entity_key"].removeprefix("data."),
        "inputs": worker["inputs"]["input"],
    }


def load_features(path, names):
    """customer_id -> the listed feature columns as floats (blank -> NaN)."""
    with open(path, newline="") as f:
        return {
            row["customer_id"]: [float(row[n]) if row[n] != "" else np.nan for n in names]
            for row in csv.DictReader(f)
        }


def stable_id(*parts):
    """modelbus's result id (src/event.rs `stable_id`): SHA-256 of the
    length-prefixed parts, shaped as a version-8 UUID. Using the same scheme
    makes a redelivery yield the same id, and the outputs comparable."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode()
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    d = bytearray(h.digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x80
    d[8] = (d[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(d)))


def child_traceparent(parent, seed):
    """Same trace, a new span derived from the result id: deterministic, like
    the result id itself."""
    version, trace_id, _, flags = parent.split("-")
    span = hashlib.sha256(seed.encode()).hexdigest()[:16]
    return f"{version}-{trace_id}-{span}-{flags}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--result-topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--count", type=int, required=True, help="stop after this many events")
    ap.add_argument("--model", required=True)
    ap.add_argument("--features", required=True)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--config", default=Path(__file__).resolve().parent.parent / "examples/claims/modelbus.toml",
                    help="where the worker's input columns, names and model version come from")
    ap.add_argument("--fetch-wait-ms", type=int, default=10,
                    help="the consumer's fetch.wait.max.ms (modelbus bench --kafka --paced sets both workers' alike)")
    ap.add_argument("--idle-timeout", type=float, default=60.0,
                    help="give up (exit 1) after this many seconds without an event")
    args = ap.parse_args()

    worker = load_worker(args.config)
    data_cols = [c.removeprefix("data.") for c in worker["inputs"] if c.startswith("data.")]
    feature_cols = [c.removeprefix("features.") for c in worker["inputs"] if c.startswith("features.")]
    # The matrix is built as data columns then feature columns; that must be
    # the config's order, which it is for the claims example.
    if worker["inputs"] != [f"data.{c}" for c in data_cols] + [f"features.{c}" for c in feature_cols]:
        sys.exit("input columns must list data.* before features.*")
    customers = load_features(args.features, feature_cols)
    missing_features = [np.nan] * len(feature_cols)

    opts = ort.SessionOptions()
    # One core, like one modelbus worker.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # The test broker (tansu) needs both: its group join takes about half
        # the session timeout, and its fetch long-poll never returns early.
        "session.timeout.ms": 6000,
        "fetch.wait.max.ms": args.fetch_wait_ms,
    })
    producer = Producer({
        "bootstrap.servers": args.brokers,
        "enable.idempotence": True,
        "acks": "all",
        # Kafka's Java default, which modelbus uses too: a result lands on
        # the partition modelbus would have put it on.
        "partitioner": "murmur2_random",
    })
    delivery_errors = []

    def on_delivery(err, _msg):
        if err is not None:
            delivery_errors.append(err)

    consumer.subscribe([args.topic])
    processed = 0
    inference_cpu = 0.0
    wall_start = cpu_start = None
    last_event = time.monotonic()
    try:
        while processed < args.count:
            msgs = consumer.consume(num_messages=min(args.batch, args.count - processed), timeout=0.5)
            for m in msgs:
                if m.error() is not None:
                    print(f"consumer: {m.error()}", file=sys.stderr)
            msgs = [m for m in msgs if m.error() is None]
            if not msgs:
                if time.monotonic() - last_event > args.idle_timeout:
                    sys.exit(f"no event for {args.idle_timeout}s; processed {processed} of {args.count}")
                continue
            last_event = time.monotonic()
            if wall_start is None:
                wall_start, cpu_start = time.perf_counter(), time.process_time()

            # Binary content mode: attributes in ce_* headers, data in the value.
            events, rows = [], []
            for m in msgs:
                attrs = {k[3:]: v.decode() for k, v in m.headers() or [] if k.startswith("ce_")}
                data = json.loads(m.value())
                features = customers.get(data.get(worker["entity_key"]), missing_features)
                # A missing or null field becomes NaN in the float32 matrix.
                rows.append([data.get(c) for c in data_cols] + features)
                events.append((m, attrs, data))
            matrix = np.array(rows, dtype=np.float32)

            # One model call per batch. thread_time, not process_time: the
            # session runs on this thread, while librdkafka's threads keep
            # working in the background.
            before = time.thread_time()
            _, probabilities = session.run(["label", "probabilities"], {input_name: matrix})
            inference_cpu += time.thread_time() - before
            scores = probabilities[:, 1].tolist()
            labels = probabilities.argmax(axis=1).tolist()

            # One timestamp per batch: the results are made together.
            now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
            for (m, attrs, data), score, label in zip(events, scores, labels):
                result_id = stable_id(attrs["source"], attrs["id"], worker["name"], worker["model_version"])
                headers = [
                    ("ce_specversion", "1.0"),
                    ("ce_id", result_id),
                    ("ce_source", worker["result_source"]),
                    ("ce_type", worker["result_type"]),
                    ("ce_time", now),
                    ("ce_traceparent", child_traceparent(attrs["traceparent"], result_id)),
                    ("ce_causationid", attrs["id"]),
                    ("ce_correlationid", attrs.get("correlationid", attrs["id"])),
                    ("ce_modelname", worker["model_name"]),
                    ("ce_modelversion", worker["model_version"]),
                    ("ce_worker", worker["name"]),
                    ("content-type", "application/json"),
                ]
                if "subject" in attrs:
                    headers.append(("ce_subject", attrs["subject"]))
                value = json.dumps({"risk_score": score, "risk_label": label,
                                    "claim_id": data.get("claim_id"), "customer_id": data.get("customer_id")})
                producer.produce(args.result_topic, key=m.key(), value=value, headers=headers,
                                 on_delivery=on_delivery)

            # At-least-once: only once every result is acknowledged, commit
            # past the batch (next offset = last offset read + 1 per partition).
            producer.flush()
            if delivery_errors:
                sys.exit(f"delivery failed: {delivery_errors[0]}")
            next_offsets = {(m.topic(), m.partition()): m.offset() + 1 for m in msgs}
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
                            asynchronous=False)
            processed += len(msgs)
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
    finally:
        consumer.close()

    print(json.dumps({
        "events": processed,
        "wall_s": round(wall, 3),
        "events_per_s": round(processed / wall, 1),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_event": round(cpu * 1e6 / processed, 2),
        "inference_cpu_us_per_event": round(inference_cpu * 1e6 / processed, 2),
        "cpu_us_per_event_excl_inference": round((cpu - inference_cpu) * 1e6 / processed, 2),
    }))


if __name__ == "__main__":
    main()
