#!/usr/bin/env python3
"""A third-party CloudEvents client for Kafka, for modelbus's interop tests.

It shares no code with modelbus: it speaks the wire contract (DESIGN.md,
"The wire contract") through confluent-kafka, the way an outside team would,
so the Rust tests can check that modelbus reads what others write and writes
what others read.

    ce_client.py produce --brokers B --topic T --mode binary|structured
        --count N [--seed S] [--bad-customer]
    ce_client.py consume --brokers B --topic T --count N --timeout SECONDS [--group G]

Both print one JSON object per line on stdout (see each command's help); the
exit status is 0 only if every event was delivered / all N records were read.
"""
import argparse
import datetime
import json
import random
import secrets
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

SOURCE = "python-interop"
EVENT_TYPE = "ClaimCreated"
# Mirrors src/example.rs: ids C00000..C04999 all exist in customers.csv, and
# C99999 is the one it uses for "unknown customer".
CUSTOMERS = 5000
UNKNOWN_CUSTOMER = "C99999"

# The test broker (tansu) takes about session.timeout.ms / 2 to complete a
# group join, and its long-poll fetch never returns early, so both are kept
# short or every poll would stall for librdkafka's 500 ms default.
CONSUMER_TUNING = {"session.timeout.ms": 6000, "fetch.wait.max.ms": 10}


def rfc3339_now():
    # Microseconds and "Z", the same shape modelbus writes.
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_traceparent():
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def claim(rng, seq, bad_customer):
    """One ClaimCreated event as a structured-mode dict, with the value
    ranges of the Rust generator (src/example.rs)."""
    customer = f"C{rng.randrange(CUSTOMERS):05d}"
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": EVENT_TYPE,
        "time": rfc3339_now(),
        # Like the Rust generator's UnknownCustomer case, only data.customer_id
        # is spoiled: the subject (and so the record key) stays a real customer.
        "subject": customer,
        "datacontenttype": "application/json",
        "traceparent": new_traceparent(),
        "data": {
            "claim_id": f"CL-{seq}",
            "customer_id": UNKNOWN_CUSTOMER if bad_customer else customer,
            "amount": round(rng.uniform(50.0, 20000.0), 2),
            "claim_type_code": rng.randrange(5),
            "days_since_policy_start": rng.randrange(3000),
            "incident_hour": rng.randrange(24),
        },
    }


def to_binary(event):
    """Binary content mode: attributes as ce_* headers, value = data. The data
    content type travels as the plain `content-type` header, not as ce_."""
    headers = [(f"ce_{k}", v) for k, v in event.items() if k not in ("data", "datacontenttype")]
    headers.append(("content-type", event["datacontenttype"]))
    return json.dumps(event["data"]).encode(), headers


def to_structured(event):
    return json.dumps(event).encode(), [("content-type", "application/cloudevents+json")]


def produce(args):
    producer = Producer({
        "bootstrap.servers": args.brokers,
        "enable.idempotence": True,
        "acks": "all",
        # Kafka's Java default; modelbus hashes keys the same way on every bus.
        "partitioner": "murmur2_random",
        # Fail within the test's patience rather than librdkafka's 5 minutes.
        "message.timeout.ms": 30000,
    })
    encode = to_binary if args.mode == "binary" else to_structured
    rng = random.Random(args.seed)
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")

    events = []
    for seq in range(1, args.count + 1):
        event = claim(rng, seq, args.bad_customer)
        value, headers = encode(event)
        while True:
            try:
                producer.produce(args.topic, key=event["subject"].encode(), value=value,
                                 headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                # Local queue full: let deliveries drain, then retry this one.
                producer.poll(0.1)
        producer.poll(0)
        events.append(event)

    undelivered = producer.flush(60)
    if errors or undelivered:
        for e in errors[:10]:
            print(f"delivery failed: {e}", file=sys.stderr)
        print(f"{len(errors)} delivery errors, {undelivered} still queued", file=sys.stderr)
        return 1
    # Printed only once everything is acknowledged, in production order.
    for event in events:
        print(json.dumps({"id": event["id"], "traceparent": event["traceparent"],
                          "source": event["source"], "key": event["subject"]}))
    return 0


def text(b):
    # Dead letters may carry bytes that are not UTF-8; show them, don't crash.
    return None if b is None else b.decode("utf-8", errors="replace")


def consume(args):
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        # Never committing means every run, even with a named group, reads
        # from the beginning: a test can look at a topic as often as it likes.
        "group.id": args.group or f"ce-client-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # The topic may not exist yet when a test starts us; notice it soon.
        "topic.metadata.refresh.interval.ms": 1000,
        **CONSUMER_TUNING,
    })
    consumer.subscribe([args.topic])
    # Never wait for "end of topic": this broker's high watermark is wrong, so
    # the only reliable stop conditions are the expected count and the clock.
    deadline = time.monotonic() + args.timeout
    read = 0
    try:
        while read < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for msg in consumer.consume(num_messages=args.count - read, timeout=min(left, 1.0)):
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaException(err)
                    # e.g. the topic not existing yet: keep waiting.
                    if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        print(f"consumer: {err}", file=sys.stderr)
                    continue
                print(json.dumps({
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": text(msg.key()),
                    "headers": {k: text(v) for k, v in (msg.headers() or [])},
                    "value": text(msg.value()),
                }), flush=True)
                read += 1
    finally:
        consumer.close()
    if read < args.count:
        print(f"read {read} of {args.count} records from {args.topic} in {args.timeout}s", file=sys.stderr)
        return 1
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("produce", help="produce N ClaimCreated events; prints "
                       '{"id","traceparent","source","key"} per event')
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--mode", choices=["binary", "structured"], required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seed", type=int, default=None, help="seed for the claim data (ids are always fresh)")
    p.add_argument("--bad-customer", action="store_true",
                   help=f"set data.customer_id to {UNKNOWN_CUSTOMER}, unknown to the feature store")
    p.set_defaults(run=produce)

    c = sub.add_parser("consume", help="read N records from the beginning; prints "
                       '{"topic","partition","offset","key","headers","value"} per record')
    c.add_argument("--brokers", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--timeout", type=float, required=True, help="seconds")
    c.add_argument("--group", help="consumer group (default: a fresh one)")
    c.set_defaults(run=consume)

    args = parser.parse_args()
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
