// One consumer-group member driven by a test, with the real Java client (kafka-clients 3.9.1).
//
//   java -cp $FLOE_JAVA_CLASSES:$FLOE_KAFKA_CLIENTS_JAR:$FLOE_SLF4J_JAR FloeGroupMember \
//       --bootstrap 127.0.0.1:9092 --topic T --group G --name m1 --max-seconds 60 \
//       [--static-id ID] [--assignor range|cooperative-sticky] [--session-timeout-ms 10000]
//       [--auto-offset-reset earliest|none]
//
// (Add $FLOE_SLF4J_SIMPLE_JAR to the class path, and -Dorg.slf4j.simpleLogger.defaultLogLevel=debug
// before the class name, for the client's logs on stderr.)
//
// Subscribes to T in group G (classic group protocol, auto.offset.reset=earliest, auto commit
// off), polls until SIGTERM/SIGINT or --max-seconds, and after every poll that returned records
// commits exactly the consumed offsets (last offset + 1 per partition) with commitSync. Same CLI
// and stdout protocol as testing/clients/python/group_member.py and
// testing/clients/node/group_member.js: one compact JSON object per line, flushed at once:
//
//   {"event":"assigned","name":N,"partitions":[0,3,5]}      after every rebalance (full assignment)
//   {"event":"first","name":N,"partition":p,"offset":o}       first offset received per partition
//   {"event":"committed","name":N,"partition":p,"offset":o}   after a successful commit (next offset)
//   {"event":"error","name":N,"message":"...","type":"..."}   an error this member survived
//   {"event":"closed","name":N}                               after close() (LeaveGroup); exit 0
//
// Exit 2 on bad arguments, 1 when the consumer cannot even be constructed.

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class FloeGroupMember {
    static final long POLL_TIMEOUT_MS = 500;
    static final Duration COMMIT_TIMEOUT = Duration.ofSeconds(10);
    static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(10);
    static final long ERROR_BACKOFF_MS = 200;

    static final PrintStream OUT = new PrintStream(System.out, false, StandardCharsets.UTF_8);

    static String bootstrap, topic, group, name, staticId;
    static double maxSeconds = -1;
    static String assignor = "range";
    static int sessionTimeoutMs = 10_000;
    static String autoOffsetReset = "earliest";
    static int heartbeatIntervalMs = 1_000;

    static final AtomicBoolean stop = new AtomicBoolean(false);
    static volatile KafkaConsumer<byte[], byte[]> consumer;

    // ------------------------------------------------------------------ output
    static synchronized void emit(String json) {
        OUT.print(json);
        OUT.print('\n');
        OUT.flush();
    }

    static String q(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
            }
        }
        return b.append('"').toString();
    }

    static String head(String event) {
        return "{\"event\":" + q(event) + ",\"name\":" + q(name);
    }

    static void emitAssigned(Set<Integer> partitions) {
        StringBuilder b = new StringBuilder(head("assigned")).append(",\"partitions\":[");
        boolean first = true;
        for (int p : new TreeSet<>(partitions)) {
            if (!first) b.append(',');
            b.append(p);
            first = false;
        }
        emit(b.append("]}").toString());
    }

    static void emitPartitionOffset(String event, int partition, long offset) {
        emit(head(event) + ",\"partition\":" + partition + ",\"offset\":" + offset + "}");
    }

    static void emitError(Throwable e) {
        emit(head("error") + ",\"message\":" + q(e.getClass().getSimpleName() + ": " + e.getMessage())
                + ",\"type\":" + q(e.getClass().getName()) + "}");
    }

    static void log(String msg) {
        System.err.println(java.time.LocalTime.now() + " [FloeGroupMember " + name + "] " + msg);
        System.err.flush();
    }

    // ------------------------------------------------------------------ rebalance listener
    /** The partitions of the topic this member owns, maintained from the callbacks (runs inside poll). */
    static final class Listener implements ConsumerRebalanceListener {
        final Set<Integer> owned = new TreeSet<>();

        Set<Integer> ofTopic(Collection<TopicPartition> tps) {
            Set<Integer> s = new HashSet<>();
            for (TopicPartition tp : tps) if (tp.topic().equals(topic)) s.add(tp.partition());
            return s;
        }

        // EAGER: the whole assignment, before JoinGroup. COOPERATIVE: only the partitions moving away.
        @Override public void onPartitionsRevoked(Collection<TopicPartition> revoked) {
            owned.removeAll(ofTopic(revoked));
        }

        @Override public void onPartitionsLost(Collection<TopicPartition> lost) {
            owned.removeAll(ofTopic(lost));
        }

        // Called after every completed rebalance: EAGER with the whole assignment, COOPERATIVE with
        // the added partitions only (possibly none).
        @Override public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
            owned.addAll(ofTopic(assigned));
            emitAssigned(owned);
        }
    }

    // ------------------------------------------------------------------ main
    static void usage(String why) {
        System.err.println("FloeGroupMember: " + why);
        System.err.println("usage: FloeGroupMember --bootstrap HOST:PORT --topic T --group G --name NAME"
                + " --max-seconds S [--static-id ID] [--assignor range|cooperative-sticky]"
                + " [--session-timeout-ms MS] [--heartbeat-interval-ms MS]");
        System.exit(2);
    }

    static void parseArgs(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = null;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) {
                v = a.substring(eq + 1);
                a = a.substring(0, eq);
            } else if (a.startsWith("--")) {
                if (a.equals("--help") || a.equals("-h")) usage("help");
                if (i + 1 >= args.length) usage("missing value for " + a);
                v = args[++i];
            } else {
                usage("unexpected argument " + a);
            }
            try {
                switch (a) {
                    case "--bootstrap": bootstrap = v; break;
                    case "--topic": topic = v; break;
                    case "--group": group = v; break;
                    case "--name": name = v; break;
                    case "--max-seconds": maxSeconds = Double.parseDouble(v); break;
                    case "--static-id": staticId = v.isEmpty() ? null : v; break;
                    case "--assignor": assignor = v; break;
                    case "--session-timeout-ms": sessionTimeoutMs = Integer.parseInt(v); break;
                    case "--auto-offset-reset": autoOffsetReset = v; break;
                    case "--heartbeat-interval-ms": heartbeatIntervalMs = Integer.parseInt(v); break;
                    default: usage("unknown option " + a);
                }
            } catch (NumberFormatException e) {
                usage("bad number for " + a + ": " + v);
            }
        }
        if (bootstrap == null || topic == null || group == null || name == null || maxSeconds < 0) {
            usage("--bootstrap, --topic, --group, --name and --max-seconds are required");
        }
        if (!(maxSeconds > 0)) usage("--max-seconds must be > 0");
        if (!assignor.equals("range") && !assignor.equals("cooperative-sticky")) {
            usage("--assignor must be range or cooperative-sticky");
        }
    }

    static void onStopSignal(String sig) {
        if (stop.compareAndSet(false, true)) {
            log("SIG" + sig + ": closing");
        }
        KafkaConsumer<byte[], byte[]> c = consumer;
        if (c != null) c.wakeup(); // the only thread-safe consumer method: interrupts poll/commitSync
    }

    static final java.util.concurrent.CountDownLatch mainDone = new java.util.concurrent.CountDownLatch(1);

    static void installSignalHandlers() {
        // Our own handlers (sun.misc.Signal, through reflection so javac stays quiet) instead of
        // shutdown hooks, so the JVM does not start exiting (status 143) while the main thread is
        // still closing the consumer.
        try {
            Class<?> signalClass = Class.forName("sun.misc.Signal");
            Class<?> handlerClass = Class.forName("sun.misc.SignalHandler");
            for (String sig : new String[] {"TERM", "INT"}) {
                Object handler = java.lang.reflect.Proxy.newProxyInstance(
                        handlerClass.getClassLoader(), new Class<?>[] {handlerClass}, (proxy, m, a) -> {
                            switch (m.getName()) {
                                case "handle": onStopSignal(sig); return null;
                                case "hashCode": return System.identityHashCode(proxy);
                                case "equals": return proxy == a[0];
                                default: return "FloeGroupMember.SignalHandler(" + sig + ")";
                            }
                        });
                Object signal = signalClass.getConstructor(String.class).newInstance(sig);
                signalClass.getMethod("handle", signalClass, handlerClass).invoke(null, signal, handler);
            }
        } catch (Throwable t) {
            // Fallback: a shutdown hook that lets main close the consumer, then forces status 0.
            log("sun.misc.Signal unavailable (" + t + "): using a shutdown hook");
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                if (mainDone.getCount() == 0) return; // a normal System.exit from main
                onStopSignal("TERM");
                try {
                    mainDone.await(CLOSE_TIMEOUT.toMillis() + 5_000, java.util.concurrent.TimeUnit.MILLISECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                OUT.flush();
                Runtime.getRuntime().halt(0);
            }, "floe-group-member-shutdown"));
        }
    }

    public static void main(String[] args) {
        parseArgs(args);
        long deadline = System.nanoTime() + (long) (maxSeconds * 1e9);

        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "floe-group-member-" + name);
        props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, autoOffsetReset);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                assignor.equals("range") ? RangeAssignor.class.getName()
                                         : CooperativeStickyAssignor.class.getName());
        props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, Integer.toString(sessionTimeoutMs));
        props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, Integer.toString(heartbeatIntervalMs));
        props.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "60000");
        props.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        if (staticId != null) props.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, staticId);

        installSignalHandlers();
        KafkaConsumer<byte[], byte[]> c;
        try {
            c = new KafkaConsumer<>(props);
        } catch (Throwable e) {
            e.printStackTrace();
            emitError(e);
            System.exit(1);
            return;
        }
        consumer = c;
        if (stop.get()) c.wakeup();

        Listener listener = new Listener();
        Set<Integer> firstSeen = new HashSet<>();
        c.subscribe(java.util.List.of(topic), listener);

        while (!stop.get()) {
            long remainingMs = (deadline - System.nanoTime()) / 1_000_000;
            if (remainingMs <= 0) {
                log("max-seconds reached: closing");
                break;
            }
            ConsumerRecords<byte[], byte[]> records;
            try {
                records = c.poll(Duration.ofMillis(Math.min(POLL_TIMEOUT_MS, remainingMs)));
            } catch (WakeupException e) {
                continue; // stop was requested (checked by the loop)
            } catch (Throwable e) {
                emitError(e);
                log("poll failed: " + e);
                sleepQuietly(ERROR_BACKOFF_MS);
                continue;
            }
            if (records.isEmpty()) continue;

            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (TopicPartition tp : records.partitions()) {
                long last = -1;
                for (ConsumerRecord<byte[], byte[]> r : records.records(tp)) {
                    if (firstSeen.add(tp.partition())) emitPartitionOffset("first", tp.partition(), r.offset());
                    last = Math.max(last, r.offset());
                }
                if (last >= 0) offsets.put(tp, new OffsetAndMetadata(last + 1));
            }
            try {
                c.commitSync(offsets, COMMIT_TIMEOUT);
            } catch (WakeupException e) {
                emit(head("error") + ",\"message\":" + q("commit interrupted by shutdown")
                        + ",\"type\":" + q(e.getClass().getName()) + "}");
                continue;
            } catch (Throwable e) {
                // CommitFailedException, RebalanceInProgressException, IllegalGeneration..., timeouts:
                // survive; the records will be delivered again to whoever owns the partition.
                emitError(e);
                log("commit failed: " + e);
                continue;
            }
            Map<Integer, Long> done = new TreeMap<>();
            for (Map.Entry<TopicPartition, OffsetAndMetadata> en : offsets.entrySet()) {
                done.put(en.getKey().partition(), en.getValue().offset());
            }
            for (Map.Entry<Integer, Long> en : done.entrySet()) {
                emitPartitionOffset("committed", en.getKey(), en.getValue());
            }
        }

        try {
            c.close(CLOSE_TIMEOUT); // LeaveGroup for dynamic members (static members stay, per KIP-345)
        } catch (Throwable e) {
            emitError(e);
            log("close failed: " + e);
        }
        emit(head("closed") + "}");
        log("closed");
        mainDone.countDown();
        System.exit(0);
    }

    static void sleepQuietly(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
