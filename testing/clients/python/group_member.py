#!/usr/bin/env python3
"""One consumer-group member driven by a test, with kafka-python 3.0.12.

    $FLOE_PYTHON testing/clients/python/group_member.py --bootstrap 127.0.0.1:9092 \
        --topic T --group G --name m1 --max-seconds 60 \
        [--static-id ID] [--assignor range|roundrobin|cooperative-sticky] [--session-timeout-ms 10000] \
        [--check-order]

Subscribes to T in group G (auto.offset.reset=earliest, auto commit off), polls until SIGTERM /
SIGINT or --max-seconds, and after every poll that returned records commits exactly the consumed
offsets (last offset + 1 per partition) synchronously. Same CLI and stdout protocol as
testing/clients/java/FloeGroupMember.java and testing/clients/node/group_member.js: one compact
JSON object per line, flushed at once:

    {"event":"assigned","name":N,"partitions":[0,3,5]}   after every rebalance: full assignment of T
    {"event":"first","name":N,"partition":p,"offset":o}    first offset received per partition
    {"event":"committed","name":N,"partition":p,"offset":o}  after a successful commit (next offset)
    {"event":"error","name":N,"message":"...","type":"..."}  an error this member survived
    {"event":"closed","name":N}                            after close() (LeaveGroup); exit 0

--assignor roundrobin is kafka-python's round robin under kafkajs' protocol name
("RoundRobinAssigner"), so kafka-python and kafkajs members can share one group.

--check-order: the member checks, per partition, that the offsets it receives are consecutive
within one ownership (from an assignment to the next revocation), and that each ownership starts
at the group's committed offset (read when its first record arrives; starting below it, a
re-delivery, is allowed; above it is a gap), and that the committed offset never goes back or
disappears. Violations are "error" events whose message contains "out of order", "gap",
"went back" or "lost" (offset reset).

Client logs go to stderr (--log-level, default WARNING). Exit 0 after "closed" (a failing close()
is reported as an "error" event first; so does a run in which no broker ever answered: each failed
bootstrap attempt is an "error" event), 2 on bad arguments, 1 on a client configuration error.
"""

import argparse
import json
import logging
import signal
import sys
import threading
import time
import traceback

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka import errors as Errors
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

try:
    from kafka.coordinator.base import MemberState
except ImportError:  # pragma: no cover - older kafka-python
    MemberState = None

POLL_TIMEOUT_MS = 500
COMMIT_TIMEOUT_MS = 10_000
CLOSE_TIMEOUT_MS = 10_000
ERROR_BACKOFF_S = 0.2
BOOTSTRAP_ATTEMPT_MS = 2_000

MAX_ORDER_ERRORS = 20  # a broken partition would otherwise flood stdout

_out_lock = threading.Lock()


class KafkajsRoundRobinAssignor(RoundRobinPartitionAssignor):
    """Round robin under the protocol name kafkajs uses: a group needs one protocol all share."""
    name = "RoundRobinAssigner"


def emit(obj):
    line = json.dumps(obj, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def log(msg):
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    print(f"{stamp} [group_member.py] {msg}", file=sys.stderr, flush=True)


class Member(ConsumerRebalanceListener):
    """Tracks the assignment of the topic from the rebalance callbacks and prints the events."""

    def __init__(self, name, topic, check_order=False):
        self.name = name
        self.topic = topic
        self.check_order = check_order
        self.last = {}  # partition -> last offset received in the current ownership
        self.max_committed = {}  # partition -> highest committed offset known
        self.order_errors = 0
        self.owned = set()  # partitions of topic this member owns, from the callbacks
        self.first_seen = set()
        self.consumer = None
        self.emitted_generation = None  # generation of the last "assigned" event
        self.emitted_once = False
        # rebalance callbacks may run on kafka-python's IO thread: guard the assignment state
        self.lock = threading.RLock()

    # -- output helpers
    def error(self, exc_or_msg):
        if isinstance(exc_or_msg, BaseException):
            typ = type(exc_or_msg).__name__
            text = str(exc_or_msg)
            # kafka-python's errors already start with their class name
            msg = text if text.startswith(typ) else f"{typ}: {text}"
        else:
            msg, typ = str(exc_or_msg), "message"
        emit({"event": "error", "name": self.name, "message": msg, "type": typ})

    def _generation(self):
        try:
            return self.consumer.group_metadata().generation_id
        except Exception:  # noqa: BLE001 - best effort only
            return None

    def _stable(self):
        if MemberState is None:
            return True
        try:
            return self.consumer.group_metadata().state is MemberState.STABLE
        except Exception:  # noqa: BLE001
            return True

    def emit_assigned(self, gen):
        with self.lock:
            self.emitted_generation = gen
            self.emitted_once = True
            partitions = sorted(self.owned)
            emit({"event": "assigned", "name": self.name, "partitions": partitions})

    # -- kafka-python rebalance callbacks (run inside poll()/close())
    def _partitions(self, tps):
        return {tp.partition for tp in tps if tp.topic == self.topic}

    def on_partitions_revoked(self, revoked):
        # EAGER: the whole assignment before each JoinGroup; COOPERATIVE: only what moves away.
        with self.lock:
            self.owned -= self._partitions(revoked)
            self.end_runs(self._partitions(revoked))

    def on_partitions_lost(self, lost):
        with self.lock:
            self.owned -= self._partitions(lost)
            self.end_runs(self._partitions(lost))

    def on_partitions_assigned(self, assigned):
        # EAGER: the whole new assignment (possibly empty); COOPERATIVE: only the added ones, and
        # only when something was added. Rebalances that add nothing are caught by after_poll().
        gen = self._generation()
        with self.lock:
            self.owned |= self._partitions(assigned)
            self.end_runs(self._partitions(assigned))
            self.emit_assigned(gen)

    def after_poll(self):
        """Emit "assigned" for a completed rebalance that did not call on_partitions_assigned
        (kafka-python's cooperative path skips the callback when nothing was added)."""
        # read the coordinator's state outside self.lock (it takes the coordinator's own lock)
        gen = self._generation()
        if gen is None or gen < 0 or not self._stable():
            return
        with self.lock:
            if not self.emitted_once or gen != self.emitted_generation:
                self.emit_assigned(gen)

    # -- order checks (--check-order)
    def end_runs(self, partitions):
        for p in partitions:
            self.last.pop(p, None)

    def order_error(self, msg):
        self.order_errors += 1
        if self.order_errors <= MAX_ORDER_ERRORS:
            self.error(msg)

    def check_start(self, tp, offset):
        """The first record of an ownership must be at the group's committed offset (or below)."""
        p = tp.partition
        try:
            committed = self.consumer.committed(tp, timeout_ms=COMMIT_TIMEOUT_MS)
        except Exception as e:  # noqa: BLE001 - not an order error: the check is skipped
            self.error(f"committed offset of partition {p} unreadable, start not checked: {e!r}")
            return
        known = self.max_committed.get(p)
        if committed is None:
            if known is not None:
                self.order_error(f"committed offset of partition {p} lost (was {known}): reset, "
                                 f"resumed at offset {offset}")
            return
        if known is not None and committed < known:
            self.order_error(f"committed offset of partition {p} went back from {known} to {committed}")
        self.max_committed[p] = max(committed, known or 0)
        if offset > committed:
            self.order_error(f"gap in partition {p}: resumed at offset {offset}, committed {committed}")
        elif offset < committed:
            log(f"partition {p}: re-delivery from {offset}, committed {committed}")

    def check_records(self, tp, records):
        p = tp.partition
        for r in records:
            prev = self.last.get(p)
            if prev is None:
                self.check_start(tp, r.offset)
            elif r.offset <= prev:
                self.order_error(f"out of order in partition {p}: offset {r.offset} after {prev}")
            elif r.offset != prev + 1:
                self.order_error(f"gap in partition {p}: offset {r.offset} after {prev}")
            self.last[p] = r.offset

    # -- records and commits
    def handle_records(self, batches):
        to_commit = {}
        for tp, records in batches.items():
            if not records:
                continue
            if self.check_order:
                self.check_records(tp, records)
            if tp.partition not in self.first_seen:
                self.first_seen.add(tp.partition)
                emit({"event": "first", "name": self.name, "partition": tp.partition,
                      "offset": records[0].offset})
            to_commit[tp] = max(r.offset for r in records) + 1
        if not to_commit:
            return
        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in to_commit.items()}
        try:
            self.consumer.commit(offsets=offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except (Errors.KafkaError, AssertionError, ValueError) as e:
            # CommitFailedError, RebalanceInProgressError, IllegalGenerationError,
            # UnknownMemberIdError, timeouts, ...: survive, the records will be redelivered.
            self.error(e)
            return
        for tp in sorted(to_commit, key=lambda t: t.partition):
            known = self.max_committed.get(tp.partition)
            self.max_committed[tp.partition] = max(to_commit[tp], known or 0)
            emit({"event": "committed", "name": self.name, "partition": tp.partition,
                  "offset": to_commit[tp]})


def parse_args(argv):
    p = argparse.ArgumentParser(description="consumer group member for Floe's tests (kafka-python)")
    p.add_argument("--bootstrap", required=True, help="HOST:PORT")
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--max-seconds", type=float, required=True)
    p.add_argument("--static-id", default=None, help="group.instance.id (static membership)")
    p.add_argument("--assignor", choices=["range", "roundrobin", "cooperative-sticky"], default="range")
    p.add_argument("--check-order", action="store_true", help="report out-of-order records and gaps")
    p.add_argument("--session-timeout-ms", type=int, default=10_000)
    p.add_argument("--heartbeat-interval-ms", type=int, default=1_000)
    p.add_argument("--log-level", default="WARNING", help="kafka-python logging level on stderr")
    args = p.parse_args(argv)
    if args.max_seconds <= 0:
        p.error("--max-seconds must be > 0")
    return args


def main(argv):
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level.upper(), 30),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"signal {signum}: closing")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    deadline = time.monotonic() + args.max_seconds
    member = Member(args.name, args.topic, args.check_order)
    assignor = {"range": RangePartitionAssignor, "roundrobin": KafkajsRoundRobinAssignor,
                "cooperative-sticky": CooperativeStickyAssignor}[args.assignor]
    config = dict(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=f"floe-group-member-{args.name}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        partition_assignment_strategy=[assignor],
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        max_poll_interval_ms=60_000,
        request_timeout_ms=30_000,
    )
    if args.static_id:
        config["group_instance_id"] = args.static_id
    # The constructor bootstraps (ApiVersions + Metadata) and raises when no broker answers in
    # bootstrap_timeout_ms: retry in short attempts, so SIGTERM and --max-seconds stay honoured.
    consumer = None
    while consumer is None and not stop.is_set():
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            break
        config["bootstrap_timeout_ms"] = max(100, min(BOOTSTRAP_ATTEMPT_MS, remaining_ms))
        try:
            consumer = KafkaConsumer(**config)
        except Errors.KafkaConfigurationError as e:
            traceback.print_exc()
            member.error(e)
            return 1
        except Exception as e:  # noqa: BLE001 - NoBrokersAvailable, KafkaTimeoutError, ...
            member.error(e)
            log(f"consumer construction failed: {type(e).__name__}: {e}")
            stop.wait(ERROR_BACKOFF_S)
    if consumer is None:
        log("stopped before the consumer could bootstrap")
        emit({"event": "closed", "name": args.name})
        return 0
    member.consumer = consumer
    consumer.subscribe([args.topic], listener=member)

    while not stop.is_set():
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            log("max-seconds reached: closing")
            break
        try:
            batches = consumer.poll(timeout_ms=min(POLL_TIMEOUT_MS, remaining_ms))
        except Exception as e:  # noqa: BLE001 - survive everything, the test judges
            member.error(e)
            log("poll failed:\n" + traceback.format_exc())
            stop.wait(ERROR_BACKOFF_S)
            continue
        try:
            member.handle_records(batches)
            member.after_poll()
        except Exception as e:  # noqa: BLE001
            member.error(e)
            log("record handling failed:\n" + traceback.format_exc())

    # Ignore further signals while closing: close() sends LeaveGroup (dynamic members).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
    except Exception as e:  # noqa: BLE001
        member.error(e)
        log("close failed:\n" + traceback.format_exc())
    emit({"event": "closed", "name": args.name})
    log("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
