#!/usr/bin/env python3
"""End-to-end check of a Kafka-compatible broker with kafka-python 3.0.12.

    $FLOE_PYTHON testing/clients/python/kafka_python_check.py \
        --bootstrap 127.0.0.1:9092 --topic t1 --count 1000 --partitions 3 --compression lz4

Creates the topic (KafkaAdminClient, P partitions, RF 1; TOPIC_ALREADY_EXISTS is fine), checks its
DescribeConfigs has retention.ms, produces N records with acks=all (kafka-python's default
idempotent producer) waiting on every future, then reads them back with a group-less consumer
(assign + seek_to_beginning) and checks every acked (partition, offset) returns the same key and
value, with no duplicates and strictly increasing offsets per partition. Records of an existing
topic below this run's first acked offset of their partition are counted, not compared.

Prints one JSON summary line on stdout. Exit 0 on success, 1 on failure (reason on stderr and in
the JSON), 0 with "skipped" when the requested codec's Python library is missing.
"""

import argparse
import json
import sys
import time
import traceback

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import codec as kafka_codec
from kafka import errors as Errors
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

CONSUME_DEADLINE_S = 60.0
METADATA_WAIT_S = 10.0

summary = {"client": "kafka-python"}
step = "start"


def log(msg):
    print(f"[kafka_python_check] {msg}", file=sys.stderr, flush=True)


class CheckFailed(Exception):
    pass


def key_of(i):
    return f"k{i}".encode()


def value_of(i, topic):
    """`v{i}-{topic}`; every 10th record also carries a few KB so batches span sizes."""
    v = f"v{i}-{topic}"
    if i % 10 == 7:
        pad = 2048 + (i * 37) % 4096
        v += "-" + "".join(chr(ord("a") + (i + j) % 26) for j in range(pad))
    return v.encode()


def abbreviate(b):
    if b is None:
        return "None"
    s = b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
    return s if len(s) <= 80 else f"{s[:80]}...({len(s)} chars)"


def codec_available(compression):
    return {
        "none": lambda: True,
        "gzip": lambda: True,
        "snappy": kafka_codec.has_snappy,
        "lz4": kafka_codec.has_lz4,
        "zstd": kafka_codec.has_zstd,
    }[compression]()


def wait_for(what, fetch, ok):
    """Kafka metadata is eventually consistent: retry (bounded) until ok(result)."""
    deadline = time.monotonic() + METADATA_WAIT_S
    attempt = 0
    while True:
        attempt += 1
        last_err = None
        try:
            result = fetch()
            if ok(result):
                if attempt > 1:
                    log(f"{what}: true after {attempt} attempts")
                return result
        except Errors.KafkaError as e:
            last_err = e
            result = None
        if time.monotonic() > deadline:
            if last_err is not None:
                raise last_err
            raise CheckFailed(f"timed out waiting until {what}; last result: {result!r}")
        time.sleep(0.2)


def admin_steps(args):
    global step
    step = "admin connect"
    admin = KafkaAdminClient(
        bootstrap_servers=args.bootstrap,
        client_id="floe-kafka-python-check-admin",
        request_timeout_ms=20000,
    )
    try:
        step = "create_topics"
        try:
            admin.create_topics(
                {args.topic: {"num_partitions": args.partitions, "replication_factor": 1}},
                timeout_ms=20000,
            )
            summary["created"] = True
        except Errors.TopicAlreadyExistsError:
            log(f"topic {args.topic} already exists")
            summary["created"] = False

        step = "describe_topics"

        def describe():
            topics = admin.describe_topics([args.topic])
            return next((t for t in topics if t.get("name") == args.topic), None)

        desc = wait_for(
            f"metadata shows {args.topic} with {args.partitions} partitions",
            describe,
            lambda d: d is not None and d.get("error_code", 0) == 0
            and len(d.get("partitions", [])) >= args.partitions,
        )
        summary["partitions_seen"] = len(desc["partitions"])

        step = "describe_configs(topic)"
        res = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, args.topic)], config_filter="all"
        )
        configs = res.get("topic", {}).get(args.topic)
        if configs is None:
            raise CheckFailed(f"DescribeConfigs returned no result for topic {args.topic}: {res!r}")
        if "retention.ms" not in configs:
            raise CheckFailed(
                f"DescribeConfigs for topic {args.topic} has no retention.ms; keys: {sorted(configs)}"
            )
        summary["topic_configs"] = len(configs)
        summary["retention_ms"] = configs["retention.ms"].get("value")
    finally:
        admin.close()
    return summary["partitions_seen"]


def produce(args):
    global step
    step = "produce"
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        client_id="floe-kafka-python-check-producer",
        acks="all",
        compression_type=None if args.compression == "none" else args.compression,
        linger_ms=5,
        request_timeout_ms=20000,
        delivery_timeout_ms=60000,
        max_block_ms=30000,
    )
    produced = {}  # (partition, offset) -> i
    t0 = time.monotonic()
    try:
        futures = [
            producer.send(args.topic, key=key_of(i), value=value_of(i, args.topic))
            for i in range(args.count)
        ]
        producer.flush(timeout=90)
        for i, fut in enumerate(futures):
            md = fut.get(timeout=90)
            if md.offset is None or md.offset < 0:
                raise CheckFailed(f"record {i} acked without an offset: {md!r}")
            where = (md.partition, md.offset)
            if where in produced:
                raise CheckFailed(f"records {produced[where]} and {i} both acked at {where}")
            produced[where] = i
    finally:
        producer.close(timeout=10)
    elapsed = time.monotonic() - t0
    per_partition = {}
    for p, _ in produced:
        per_partition[str(p)] = per_partition.get(str(p), 0) + 1
    summary["produce_ms"] = int(elapsed * 1000)
    summary["produced_per_partition"] = dict(sorted(per_partition.items(), key=lambda kv: int(kv[0])))
    log(f"produced {args.count} records in {elapsed:.2f}s: {summary['produced_per_partition']}")
    return produced


def consume_and_verify(args, produced):
    global step
    step = "consume"
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        client_id="floe-kafka-python-check-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=20000,
    )
    seen = set()
    last_offset = {}
    consumed = 0  # records of this run
    preexisting = 0  # records below this run's first acked offset of their partition
    # A topic that already existed may hold older records: those below the first offset acked
    # in this run are counted, not compared.
    first_acked = {}
    for p, o in produced:
        first_acked[p] = min(o, first_acked.get(p, o))
    t0 = time.monotonic()
    deadline = t0 + CONSUME_DEADLINE_S
    try:
        parts = wait_for(
            f"consumer metadata has partitions of {args.topic}",
            lambda: consumer.partitions_for_topic(args.topic),
            lambda ps: bool(ps),
        )
        tps = [TopicPartition(args.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        extra_poll_done = False
        while True:
            if consumed >= args.count:
                # One more short poll: anything beyond N is a duplicate or a stray record.
                if extra_poll_done:
                    break
                extra_poll_done = True
            if time.monotonic() > deadline:
                positions = {tp.partition: consumer.position(tp) for tp in tps}
                raise CheckFailed(
                    f"consumed only {consumed} of {args.count} records within "
                    f"{CONSUME_DEADLINE_S:.0f}s; positions {positions}"
                )
            batches = consumer.poll(timeout_ms=1000 if consumed >= args.count else 500)
            for tp, records in batches.items():
                for r in records:
                    where = (r.partition, r.offset)
                    if where in seen:
                        raise CheckFailed(f"duplicate record {where}")
                    seen.add(where)
                    last = last_offset.get(r.partition)
                    if last is not None and r.offset <= last:
                        raise CheckFailed(
                            f"offsets not increasing on partition {r.partition}: {last} then {r.offset}"
                        )
                    last_offset[r.partition] = r.offset
                    if r.offset < first_acked.get(r.partition, float("inf")):
                        preexisting += 1
                        continue
                    i = produced.get(where)
                    if i is None:
                        raise CheckFailed(f"consumed a record that was never acked: {where} key={r.key!r}")
                    if r.key != key_of(i):
                        raise CheckFailed(f"key mismatch at {where}: want {key_of(i)!r} got {r.key!r}")
                    want = value_of(i, args.topic)
                    if r.value != want:
                        raise CheckFailed(
                            f"value mismatch at {where}: want {abbreviate(want)} got {abbreviate(r.value)}"
                        )
                    consumed += 1
    finally:
        consumer.close()
    step = "verify"
    if consumed != args.count:
        raise CheckFailed(f"consumed {consumed} records, produced {args.count}")
    missing = sorted(set(produced) - seen)
    if missing:
        raise CheckFailed(f"{len(missing)} acked records were not consumed, first {missing[:5]}")
    elapsed = time.monotonic() - t0
    summary["consumed"] = consumed
    if preexisting:
        summary["preexisting_records"] = preexisting
    summary["consume_ms"] = int(elapsed * 1000)
    log(f"consumed and verified {consumed} records in {elapsed:.2f}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    args = ap.parse_args()
    if args.count < 1 or args.partitions < 1:
        ap.error("--count and --partitions must be >= 1")

    import kafka

    summary.update(
        client=f"kafka-python {kafka.__version__}",
        topic=args.topic,
        count=args.count,
        partitions=args.partitions,
        compression=args.compression,
    )
    t0 = time.monotonic()
    if not codec_available(args.compression):
        summary.update(ok=True, skipped=f"no Python library for {args.compression} is installed")
        log(f"SKIPPED: {summary['skipped']}")
        print(json.dumps(summary), flush=True)
        return 0
    try:
        admin_steps(args)
        produced = produce(args)
        consume_and_verify(args, produced)
        summary["ok"] = True
        rc = 0
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        summary.update(ok=False, failed_step=step, error=f"{type(e).__name__}: {e}")
        log(f"FAILED at step '{step}': {type(e).__name__}: {e}")
        if not isinstance(e, CheckFailed):
            traceback.print_exc(file=sys.stderr)
        rc = 1
    summary["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
    print(json.dumps(summary), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
