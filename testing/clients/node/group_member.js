#!/usr/bin/env node
// One consumer-group member driven by a test, with kafkajs 2.2.4.
//
//   NODE_PATH=$FLOE_NODE_MODULES node testing/clients/node/group_member.js \
//       --bootstrap 127.0.0.1:9092 --topic T --group G --name m1 --max-seconds 60 \
//       [--static-id ID] [--assignor range|roundrobin|cooperative-sticky] [--session-timeout-ms 10000] \
//       [--log-level nothing|error|warn|info|debug] [--check-order]
//
// Same CLI and stdout protocol as testing/clients/python/group_member.py and
// testing/clients/java/FloeGroupMember.java: one compact JSON object per line:
//
//   {"event":"assigned","name":N,"partitions":[0,3,5]}      after every rebalance (full assignment)
//   {"event":"first","name":N,"partition":p,"offset":o}       first offset received per partition
//   {"event":"committed","name":N,"partition":p,"offset":o}   after a successful commit (next offset)
//   {"event":"error","name":N,"message":"...","type":"..."}   an error this member survived
//   {"event":"closed","name":N}                               after disconnect() (LeaveGroup); exit 0
//
// kafkajs specifics: it only does eager rebalancing with its own round-robin assignor (protocol
// name "RoundRobinAssigner"), so --assignor is accepted and ignored; it has no group.instance.id,
// so --static-id is accepted and ignored (both noted on stderr). It consumes per partition batch
// (eachBatch): "a poll that returned records" is one batch, committed with the batch's
// commitOffsetsIfNecessary(offsets).
// --bootstrap may list several HOST:PORT, comma-separated.
//
// --check-order (a flag without value): per partition, the offsets received must be consecutive
// within one ownership (from one GROUP_JOIN to the next), each ownership must start at the
// group's committed offset (read with an admin client when its first batch arrives; starting
// below it, a re-delivery, is allowed; above it is a gap), and the committed offset must never go
// back or disappear. Violations are "error" events whose message contains "out of order", "gap",
// "went back" or "lost" (offset reset); same checks as group_member.py --check-order.
// Client logs go to stderr (kafkajs' default logger would write to stdout). Exit 2 on bad arguments.
'use strict';

let kafkajs;
try {
  kafkajs = require('kafkajs');
} catch (e) {
  process.stderr.write(
    `[group_member.js] cannot load kafkajs (${e.message}); run with NODE_PATH=$FLOE_NODE_MODULES\n`);
  process.exit(1);
}
const { Kafka, logLevel: LogLevel } = kafkajs;

// kafkajs 2.2.4 rebuilds its fetchers when the broker set changes; if that happens while the
// consumer stops, the new fetchers loop on a fetch that returns at once ("consumer not running")
// and starve the event loop (100% CPU, no timer fires, disconnect() never returns): make that
// fetch yield to timers so the close timeout below still fires.
const Runner = require('kafkajs/src/consumer/runner');
const runnerFetch = Runner.prototype.fetch;
Runner.prototype.fetch = async function fetch(nodeId) {
  if (!this.running) await new Promise((r) => setTimeout(r, 100));
  return runnerFetch.call(this, nodeId);
};

const CLOSE_TIMEOUT_MS = 15000;

function usage(why) {
  process.stderr.write(`group_member.js: ${why}\n` +
    'usage: group_member.js --bootstrap HOST:PORT --topic T --group G --name NAME --max-seconds S' +
    ' [--static-id ID] [--assignor range|cooperative-sticky] [--session-timeout-ms MS]' +
    ' [--heartbeat-interval-ms MS] [--log-level nothing|error|warn|info|debug]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = {
    bootstrap: null, topic: null, group: null, name: null, maxSeconds: null, staticId: null,
    assignor: 'range', sessionTimeoutMs: 10000, heartbeatIntervalMs: 1000, logLevel: 'warn',
    checkOrder: false,
  };
  const keys = {
    '--bootstrap': 'bootstrap', '--topic': 'topic', '--group': 'group', '--name': 'name',
    '--max-seconds': 'maxSeconds', '--static-id': 'staticId', '--assignor': 'assignor',
    '--session-timeout-ms': 'sessionTimeoutMs', '--heartbeat-interval-ms': 'heartbeatIntervalMs',
    '--log-level': 'logLevel',
  };
  for (let i = 0; i < argv.length; i++) {
    let opt = argv[i];
    let val;
    if (opt === '--help' || opt === '-h') usage('help');
    if (opt === '--check-order') {
      a.checkOrder = true;
      continue;
    }
    if (!opt.startsWith('--')) usage(`unexpected argument ${opt}`);
    const eq = opt.indexOf('=');
    if (eq > 0) {
      val = opt.slice(eq + 1);
      opt = opt.slice(0, eq);
    } else {
      if (i + 1 >= argv.length) usage(`missing value for ${opt}`);
      val = argv[++i];
    }
    const key = keys[opt];
    if (!key) usage(`unknown option ${opt}`);
    a[key] = val;
  }
  for (const k of ['bootstrap', 'topic', 'group', 'name', 'maxSeconds']) {
    if (a[k] === null) usage('--bootstrap, --topic, --group, --name and --max-seconds are required');
  }
  for (const k of ['maxSeconds', 'sessionTimeoutMs', 'heartbeatIntervalMs']) {
    const n = Number(a[k]);
    if (!Number.isFinite(n)) usage(`bad number ${a[k]}`);
    a[k] = n;
  }
  if (!(a.maxSeconds > 0)) usage('--max-seconds must be > 0');
  if (!['range', 'roundrobin', 'cooperative-sticky'].includes(a.assignor)) {
    usage('--assignor must be range, roundrobin or cooperative-sticky');
  }
  const levels = { nothing: LogLevel.NOTHING, error: LogLevel.ERROR, warn: LogLevel.WARN,
    info: LogLevel.INFO, debug: LogLevel.DEBUG };
  if (!(a.logLevel in levels)) usage('--log-level must be nothing|error|warn|info|debug');
  a.kafkajsLogLevel = levels[a.logLevel];
  if (a.staticId === '') a.staticId = null;
  return a;
}

const args = parseArgs(process.argv.slice(2));

function emit(obj) {
  // Writes to pipes and files are synchronous on Linux: nothing is lost at process.exit().
  process.stdout.write(JSON.stringify(obj) + '\n');
}
function log(msg) {
  process.stderr.write(`[group_member.js ${args.name}] ${msg}\n`);
}
function emitError(err, type) {
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  emit({ event: 'error', name: args.name, message,
    type: type || (err && (err.type || err.name)) || 'error' });
}

if (args.staticId !== null) {
  log(`note: kafkajs has no static membership (group.instance.id): --static-id ${args.staticId} ignored`);
}
if (args.assignor === 'cooperative-sticky') {
  log(`note: kafkajs only rebalances eagerly with its round-robin assignor: --assignor ${args.assignor} ignored`);
} else if (args.assignor === 'range') {
  log('note: kafkajs has no range assignor: using its round-robin assignor (eager)');
}

// kafkajs' default logger writes to stdout through console.info: send everything to stderr.
const logCreator = () => ({ namespace, level, label, log: entry }) => {
  const { message, ...extra } = entry;
  process.stderr.write(`${new Date().toISOString()} ${label} [${namespace}] ${message} ` +
    `${JSON.stringify(extra)}\n`);
};

const kafka = new Kafka({
  clientId: `floe-group-member-${args.name}`,
  brokers: args.bootstrap.split(','),
  logLevel: args.kafkajsLogLevel,
  logCreator,
  connectionTimeout: 3000,
  requestTimeout: 30000,
  retry: { initialRetryTime: 300, retries: 8 },
});

const consumer = kafka.consumer({
  groupId: args.group,
  sessionTimeout: args.sessionTimeoutMs,
  heartbeatInterval: args.heartbeatIntervalMs,
  rebalanceTimeout: 60000,
  // kafkajs heartbeats (and so notices rebalances) and disconnects only between fetches: keep the
  // fetch long-poll as short as the other clients' (its default is 5 s).
  maxWaitTimeInMs: 500,
  // A few retries, then kafkajs crashes and restarts the consumer (restartOnFailure), which looks
  // the coordinator up again: it only does so when it rejoins, and one that went away (drained,
  // killed) would otherwise be retried for as long as the retries last.
  retry: { initialRetryTime: 300, maxRetryTime: 3000, retries: 5 },
});

const firstSeen = new Set();
let closing = false;

// --check-order state: last offset received per partition in the current ownership, and the
// highest committed offset known per partition.
const MAX_ORDER_ERRORS = 20; // a broken partition would otherwise flood stdout
const last = new Map();
const maxCommitted = new Map();
let orderErrors = 0;
let admin = null;

function orderError(message) {
  orderErrors += 1;
  if (orderErrors <= MAX_ORDER_ERRORS) emit({ event: 'error', name: args.name, message, type: 'order' });
}

async function committedOffset(partition) {
  if (admin === null) {
    admin = kafka.admin();
    await admin.connect();
  }
  const topics = await admin.fetchOffsets({ groupId: args.group, topics: [args.topic] });
  const p = topics[0].partitions.find((x) => x.partition === partition);
  const offset = p ? Number(p.offset) : -1;
  return offset < 0 ? null : offset;
}

// The first record of an ownership must be at the group's committed offset (or below).
async function checkStart(partition, offset) {
  let committed;
  try {
    committed = await committedOffset(partition);
  } catch (e) {
    // Not an order error: the check is skipped.
    emitError(`committed offset of partition ${partition} unreadable, start not checked: ${e.message}`);
    return;
  }
  const known = maxCommitted.get(partition);
  if (committed === null) {
    if (known !== undefined) {
      orderError(`committed offset of partition ${partition} lost (was ${known}): reset, resumed at offset ${offset}`);
    }
    return;
  }
  if (known !== undefined && committed < known) {
    orderError(`committed offset of partition ${partition} went back from ${known} to ${committed}`);
  }
  maxCommitted.set(partition, Math.max(committed, known || 0));
  if (offset > committed) {
    orderError(`gap in partition ${partition}: resumed at offset ${offset}, committed ${committed}`);
  } else if (offset < committed) {
    log(`partition ${partition}: re-delivery from ${offset}, committed ${committed}`);
  }
}

async function checkBatch(partition, messages) {
  for (const m of messages) {
    const offset = Number(m.offset);
    const prev = last.get(partition);
    if (prev === undefined) {
      await checkStart(partition, offset);
    } else if (offset <= prev) {
      orderError(`out of order in partition ${partition}: offset ${offset} after ${prev}`);
    } else if (offset !== prev + 1) {
      orderError(`gap in partition ${partition}: offset ${offset} after ${prev}`);
    }
    last.set(partition, offset);
  }
}

consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
  last.clear(); // eager: every partition starts a new ownership
  // kafkajs is eager: memberAssignment is this member's whole assignment after each rebalance.
  const assigned = (payload.memberAssignment && payload.memberAssignment[args.topic]) || [];
  emit({ event: 'assigned', name: args.name, partitions: [...assigned].map(Number).sort((x, y) => x - y) });
});
consumer.on(consumer.events.CRASH, ({ payload }) => {
  if (closing) return;
  emitError(payload.error, payload.error && payload.error.type);
  log(`consumer crashed (restart=${payload.restart}): ${payload.error && payload.error.stack}`);
});

// Commit errors only a rejoin cures: kafkajs rejoins at its next heartbeat (between batches), and
// only a rejoin finds a moved coordinator (its commits stick to the generation's coordinator).
const GROUP_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'NOT_COORDINATOR_FOR_GROUP', 'ILLEGAL_GENERATION',
  'UNKNOWN_MEMBER_ID']);
const COMMIT_ATTEMPTS = 10;

async function commit(commitOffsetsIfNecessary, topic, partition, offset) {
  for (let attempt = 1; ; attempt++) {
    try {
      // One attempt per call: consumer.commitOffsets() retries a NOT_COORDINATOR at the same broker
      // for as long as the retry policy allows, and this batch (so the heartbeat) waits meanwhile.
      await commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset }] }] });
      return;
    } catch (e) {
      if (GROUP_ERRORS.has(e.type) || attempt >= COMMIT_ATTEMPTS || closing) throw e;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

async function eachBatch({ batch, isRunning, isStale, commitOffsetsIfNecessary }) {
  if (!isRunning() || isStale() || batch.messages.length === 0) return;
  const partition = batch.partition;
  if (!firstSeen.has(partition)) {
    firstSeen.add(partition);
    emit({ event: 'first', name: args.name, partition, offset: Number(batch.messages[0].offset) });
  }
  if (args.checkOrder) await checkBatch(partition, batch.messages);
  const next = (BigInt(batch.lastOffset()) + 1n).toString();
  try {
    await commit(commitOffsetsIfNecessary, batch.topic, partition, next);
  } catch (e) {
    // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, ...: survive; the records
    // will be delivered again to whoever owns the partition.
    emitError(e, e.type);
    log(`commit failed: ${e.stack || e}`);
    return;
  }
  maxCommitted.set(partition, Math.max(Number(next), maxCommitted.get(partition) || 0));
  emit({ event: 'committed', name: args.name, partition, offset: Number(next) });
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

async function shutdown(why) {
  if (closing) return;
  closing = true;
  log(`${why}: closing`);
  try {
    await withTimeout(consumer.disconnect(), CLOSE_TIMEOUT_MS, 'disconnect'); // sends LeaveGroup
  } catch (e) {
    emitError(e);
    log(`disconnect failed: ${e.stack || e}`);
  }
  if (admin !== null) {
    try { await withTimeout(admin.disconnect(), CLOSE_TIMEOUT_MS, 'admin disconnect'); } catch (_) { /* ignore */ }
  }
  emit({ event: 'closed', name: args.name });
  process.exit(0);
}

process.on('SIGTERM', () => { shutdown('SIGTERM'); });
process.on('SIGINT', () => { shutdown('SIGINT'); });
setTimeout(() => { shutdown('max-seconds reached'); }, Math.round(args.maxSeconds * 1000)).unref();
process.on('unhandledRejection', (e) => {
  if (closing) return;
  emitError(e);
  log(`unhandled rejection: ${e && e.stack}`);
});

async function start() {
  // connect/subscribe/run retry themselves; retry the whole start until closing.
  for (let attempt = 1; !closing; attempt++) {
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [args.topic], fromBeginning: true });
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: true, eachBatch });
      return;
    } catch (e) {
      if (closing) return;
      emitError(e, e.type);
      log(`start attempt ${attempt} failed: ${e.stack || e}`);
      try { await consumer.disconnect(); } catch (_) { /* ignore */ }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

// Keep the event loop alive even while kafkajs waits on nothing (the max-seconds timer is unref'd).
const keepAlive = setInterval(() => {}, 1 << 30);
start().catch((e) => { emitError(e); });
void keepAlive;
