#!/usr/bin/env python3
"""Claims made by the official Python CloudEvents SDK (2.x), as a
third-party producer would make them, published to Kafka with
confluent-kafka. For modelbus's interop tests.

    ce_sdk.py --brokers B --topic T --count N [--seed S]

For each of N rounds it publishes one event in every combination of:
  - mode: `binary` (core API, `to_binary`), `structured` (core API,
    `to_structured`: content-type application/cloudevents+json),
    `structured-v1` (the SDK's v1 API, which sends no content-type), and
    `structured-v1-json` (the v1 API with datacontenttype application/json,
    which it also puts in the content-type header);
  - with and without `time` (the SDK adds one; it is removed);
  - with and without trace context (`traceparent` extension);
  - with and without a record key (the customer id, through a key mapper,
    with no `partitionkey` attribute).
It prints one JSON object per event: {id, source, mode, time, traceparent, key}.
"""
import argparse
import json
import random
import secrets
import sys

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1.http import CloudEvent as CloudEventV1
from cloudevents.v1.kafka import to_structured as to_structured_v1
from confluent_kafka import Producer

SOURCE = "python-sdk"
MODES = ["binary", "structured", "structured-v1", "structured-v1-json"]


def claim_data(rng):
    # Value ranges of the Rust generator (src/example.rs); C00000..C04999 exist.
    return {
        "claim_id": f"CL-{rng.randrange(10**9)}",
        "customer_id": f"C{rng.randrange(5000):05d}",
        "amount": round(rng.uniform(50, 20000), 2),
        "claim_type_code": rng.randrange(5),
        "days_since_policy_start": rng.randrange(3650),
        "incident_hour": rng.randrange(24),
    }


def message(mode, data, with_time, traceparent, keyed):
    attrs = {"type": "ClaimCreated", "source": SOURCE}
    if traceparent:
        attrs["traceparent"] = traceparent
    key = data["customer_id"] if keyed else None
    if mode.startswith("structured-v1"):
        if mode == "structured-v1-json":
            attrs["datacontenttype"] = "application/json"
        event = CloudEventV1(attrs, data)
        if not with_time:
            del event._attributes["time"]
        msg = to_structured_v1(event, key_mapper=lambda e: key)
        return event["id"], event._attributes.get("time"), msg
    event = CloudEvent(attributes=attrs, data=data)
    if not with_time:
        del event._attributes["time"]
    convert = ce_kafka.to_binary if mode == "binary" else ce_kafka.to_structured
    msg = convert(event, JSONFormat(), key_mapper=lambda e: key)
    return event.get_id(), event.get_time(), msg


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    producer = Producer({"bootstrap.servers": a.brokers})
    failed = []
    out = []
    for _ in range(a.count):
        for mode in MODES:
            for with_time in (True, False):
                for traced in (True, False):
                    for keyed in (True, False):
                        tp = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01" if traced else None
                        eid, time, msg = message(mode, claim_data(rng), with_time, tp, keyed)
                        headers = [(k, v) for k, v in (msg.headers or {}).items()]
                        producer.produce(a.topic, value=msg.value, key=msg.key, headers=headers,
                                         on_delivery=lambda err, m: err and failed.append(str(err)))
                        key = msg.key.decode() if isinstance(msg.key, bytes) else msg.key
                        out.append({"id": eid, "source": SOURCE, "mode": mode, "time": str(time) if time else None,
                                    "traceparent": tp, "key": key})
    producer.flush(30)
    for o in out:
        print(json.dumps(o))
    if failed:
        print(f"delivery failed: {failed[:3]}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
