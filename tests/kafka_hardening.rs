//! Hostile input on Kafka: a record too large to dead-letter whole, a dead
//! letter whose write keeps failing while the worker stops, a header name
//! that is not UTF-8, and one oversized record in a published batch.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::kafka::{self, header};
use modelbus::bus::Bus;
use modelbus::event::Record;
use modelbus::example::Generator;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The offsets group `group` has committed on `topic`'s partitions (-1: none).
fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka::brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

/// Claims keyed by one customer, so that they share a partition with a
/// record of the same key published before them.
fn claims_keyed(seed: u64, k: usize, key: &str, ids: &mut HashSet<String>) -> Vec<Record> {
    let mut g = Generator::new(seed, 0.0);
    (0..k)
        .map(|_| {
            let e = g.claim(chrono::Utc::now());
            ids.insert(e.id.clone());
            let mut r = e.to_record();
            r.key = Some(key.as_bytes().to_vec());
            r
        })
        .collect()
}

async fn stop(mut w: std::process::Child) {
    common::signal(&w, libc::SIGTERM);
    assert!(w.wait().unwrap().success(), "the worker exits cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_record_is_dead_lettered_cut_to_fit_and_the_partition_moves_on() {
    let n = kafka::names("oversized");
    let c = kafka::claims(&n, "");
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let log = c.dir.path().join("w.log");
    let w = common::spawn_worker(&c.config_path, &log);
    assert!(common::wait_for_log(&log, "rebalance", Duration::from_secs(60)).await, "worker did not join");

    // Garbage just under message.max.bytes: over the payload limit, and its
    // dead letter (the record plus about 1 KB of attributes) over the broker's.
    let garbage: Vec<u8> = (0..999_850u32).map(|i| (i % 251) as u8).collect();
    bus.publish(&n.input, vec![common::raw(&garbage, "C00042")]).await.unwrap();
    let mut ids = HashSet::new();
    bus.publish(&n.input, claims_keyed(21, 20, "C00042", &mut ids)).await.unwrap();

    let cause = |d: &modelbus::bus::Delivery| header(d, "ce_causationid");
    let results = kafka::read_covering(&bus, &n.results, &ids, cause, Duration::from_secs(60)).await;
    assert_eq!(results.iter().filter_map(cause).collect::<HashSet<_>>(), ids, "the events behind it are scored");
    let dls = kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(dls.len(), 1, "the oversized record is dead-lettered");
    let dl = modelbus::dead_letter::DeadLetter::from_record(dls[0].record.clone(), 0, 0).unwrap();
    assert_eq!((dl.attr("dlstage"), dl.attr("dlcode")), ("validate", "payload_too_large"));
    assert!(dl.truncated(), "cut to fit the broker");
    assert_eq!(dl.attr("dloriginalsize"), "999850");
    use sha2::{Digest, Sha256};
    assert_eq!(dl.attr("dlsha256"), hex::encode(Sha256::digest(&garbage)));
    assert!(garbage.starts_with(&dl.record.value), "what is kept is the original's start");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(w).await;
    let offsets = committed(&n.group, &n.input, 4);
    assert_eq!(
        offsets.iter().filter(|o| **o > 0).map(|o| *o as usize).sum::<usize>(),
        21,
        "committed past all: {offsets:?}"
    );

    // It cannot be replayed: its original is gone.
    let out = common::modelbus().args(["dlq", "replay", "--config"]).arg(&c.config_path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("0 replayed") && text.contains("cut to fit"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_failed_to_write_is_never_skipped() {
    let n = kafka::names("dlwrite");
    let c = kafka::claims(&n, "");
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    let log = c.dir.path().join("w1.log");
    // Every commit that carries a dead letter fails, as if the dead-letter
    // topic were unwritable, while the events behind the poison succeed.
    let w = common::spawn_worker_with(&c.config_path, &log, &[("MODELBUS_FAULTS", "dead_letter.write=transient")]);
    assert!(common::wait_for_log(&log, "rebalance", Duration::from_secs(60)).await, "worker did not join");
    bus.publish(&n.input, vec![common::raw(b"not json", "C00042")]).await.unwrap();
    let mut ids = HashSet::new();
    bus.publish(&n.input, claims_keyed(22, 30, "C00042", &mut ids)).await.unwrap();
    let cause = |d: &modelbus::bus::Delivery| header(d, "ce_causationid");
    kafka::read_covering(&bus, &n.results, &ids, cause, Duration::from_secs(60)).await;
    // Results are out, the dead letter is not: stopping commits (on
    // revocation too) must stay behind the poison.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop(w).await;
    let l1 = std::fs::read_to_string(&log).unwrap();
    assert!(l1.contains("commit failed"), "the dead letter's write failed: {l1}");
    let offsets = committed(&n.group, &n.input, 4);
    assert!(offsets.iter().all(|o| *o <= 0), "nothing committed past the unwritten dead letter: {offsets:?}");
    assert!(kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(3)).await.is_empty());

    // Restarted without the fault, the poison is read again and dead-lettered.
    let log2 = c.dir.path().join("w2.log");
    let w2 = common::spawn_worker(&c.config_path, &log2);
    let dls = kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(60)).await;
    assert_eq!(dls.len(), 1, "the dead letter exists after all");
    stop(w2).await;
    let dl = modelbus::dead_letter::DeadLetter::from_record(dls[0].record.clone(), 0, 0).unwrap();
    assert_eq!((dl.attr("dlstage"), dl.record.value.as_slice()), ("decode", &b"not json"[..]));
}

/// Publishes a record whose one header name is the given (non-UTF-8)
/// bytes, through librdkafka directly: rdkafka's API takes names as `&str`.
fn produce_with_raw_header_name(topic: &str, key: &str, name: &[u8], value: &[u8]) {
    let p: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", kafka::brokers()).create().unwrap();
    let headers =
        rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header { key: "ce_ok", value: Some("1") });
    let raw =
        headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders as *mut rdkafka::bindings::rd_kafka_headers_t;
    // SAFETY: `raw` is the header list `headers` owns; the name and value
    // are copied by librdkafka.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_header_add(
            raw,
            name.as_ptr() as *const libc::c_char,
            name.len() as isize,
            value.as_ptr() as *const libc::c_void,
            value.len() as isize,
        )
    };
    assert_eq!(err, rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    p.send(BaseRecord::<str, [u8]>::to(topic).key(key).payload(&b"{}"[..]).headers(headers))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_is_dead_lettered_and_the_worker_lives() {
    let n = kafka::names("hdrname");
    let c = kafka::claims(&n, "");
    let bus = Bus::open(&c.config).unwrap();
    bus.ensure_topic(&n.input, true).await.unwrap();
    produce_with_raw_header_name(&n.input, "C00042", b"bad\xff\xfename", b"v");
    let mut ids = HashSet::new();
    bus.publish(&n.input, claims_keyed(23, 10, "C00042", &mut ids)).await.unwrap();
    let log = c.dir.path().join("w.log");
    let w = common::spawn_worker(&c.config_path, &log);
    let cause = |d: &modelbus::bus::Delivery| header(d, "ce_causationid");
    let results = kafka::read_covering(&bus, &n.results, &ids, cause, Duration::from_secs(60)).await;
    assert_eq!(results.iter().filter_map(cause).collect::<HashSet<_>>(), ids, "the worker went on past it");
    let dls = kafka::read_n(&bus, &n.dlq, 1, Duration::from_secs(30)).await;
    stop(w).await;
    assert_eq!(dls.len(), 1);
    let dl = modelbus::dead_letter::DeadLetter::from_record(dls[0].record.clone(), 0, 0).unwrap();
    assert_eq!((dl.attr("dlstage"), dl.attr("dlcode")), ("decode", "invalid_header_name"));
    assert_eq!(
        dl.record.header_str(modelbus::event::INVALID_HEADER_NAME),
        Some(hex::encode(b"bad\xff\xfename").as_str())
    );
    assert_eq!(dl.record.header_str("bad\u{fffd}\u{fffd}name"), Some("v"), "the name, repaired");
    let offsets = committed(&n.group, &n.input, 4);
    assert_eq!(offsets.iter().filter(|o| **o > 0).sum::<i64>(), 11, "committed past it: {offsets:?}");

    // The tools read it without panicking, and show it.
    let cfg = c.config_path.to_str().unwrap();
    let tail = common::modelbus()
        .args(["tail", &n.input, "--from-beginning", "--count", "1", "--config", cfg])
        .output()
        .unwrap();
    assert!(tail.status.success(), "{}", String::from_utf8_lossy(&tail.stderr));
    let list = common::modelbus().args(["dlq", "list", "--config", cfg]).output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && text.contains("invalid_header_name"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_over_the_limit_fails_alone_and_the_rest_are_written_once() {
    let n = kafka::names("perrecord");
    let c = kafka::claims(&n, "");
    let bus = Bus::open(&c.config).unwrap();
    let topic = format!("{}-out", n.input);
    bus.ensure_topic(&topic, true).await.unwrap();
    let small = |i: u32| Record {
        key: Some(format!("k{i}").into_bytes()),
        headers: Default::default(),
        value: vec![b'a'; 100],
    };
    let mut batch: Vec<Record> = (0..5).map(small).collect();
    batch.insert(2, Record { key: Some(b"big".to_vec()), headers: Default::default(), value: vec![b'b'; 1_200_000] });
    let outcomes = bus.publish_each(&topic, batch).await.expect("the batch as a whole is not refused");
    assert_eq!(outcomes.len(), 6);
    for (i, o) in outcomes.iter().enumerate() {
        match (i, o) {
            (2, Err(e)) => {
                assert!(e.refuses_record(), "{e}");
                assert_eq!(modelbus::error::Classify::class(e), modelbus::error::ErrorClass::Permanent);
            }
            (2, Ok(_)) => panic!("the oversized record was accepted"),
            (_, o) => assert!(o.is_ok(), "record {i}: {o:?}"),
        }
    }
    let got = kafka::read_n(&bus, &topic, 6, Duration::from_secs(10)).await;
    let keys: Vec<Vec<u8>> = got.iter().map(|d| d.record.key.clone().unwrap()).collect();
    assert_eq!(keys.len(), 5, "each small record once, the big one never");
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 5);
}
