// End-to-end check of a Kafka-compatible broker with the real Java client (kafka-clients 3.9.1).
//
//   java -cp $FLOE_JAVA_CLASSES:$FLOE_KAFKA_CLIENTS_JAR:$FLOE_SLF4J_JAR FloeJavaCheck \
//       --bootstrap 127.0.0.1:9092 --topic t1 --count 1000 --partitions 3 --compression none|gzip
//
// Admin: createTopics, listTopics, describeTopics, describeCluster, describeConfigs (topic and
// broker), createPartitions (P -> P+1); producer with acks=all and idempotence; consumer with
// assign()+seekToBeginning() and no group; then deleteTopics. Prints one JSON line on stdout and
// exits 0 on success, 1 on failure (the reason goes to stderr and into the JSON line).
//
// Only none and gzip: the jar we use comes without the lz4/zstd/snappy libraries.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.function.Supplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class FloeJavaCheck {
    static final long ADMIN_TIMEOUT_S = 30;
    static final long CONSUME_DEADLINE_MS = 60_000;
    static final long METADATA_WAIT_MS = 10_000;

    static String bootstrap = null;
    static String topic = null;
    static int count = 100;
    static int partitions = 3;
    static String compression = "none";

    static final Map<String, Object> summary = new LinkedHashMap<>();
    static String step = "start";

    public static void main(String[] args) {
        int rc;
        long t0 = System.nanoTime();
        try {
            parseArgs(args);
            run();
            summary.put("ok", true);
            rc = 0;
        } catch (Throwable e) {
            Throwable cause = unwrap(e);
            summary.put("ok", false);
            summary.put("failed_step", step);
            summary.put("error", cause.getClass().getName() + ": " + cause.getMessage());
            System.err.println("FloeJavaCheck FAILED at step '" + step + "': " + cause);
            cause.printStackTrace(System.err);
            rc = 1;
        }
        summary.put("elapsed_ms", (System.nanoTime() - t0) / 1_000_000);
        System.out.println(toJson(summary));
        System.out.flush();
        System.exit(rc);
    }

    static void parseArgs(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = (i + 1 < args.length) ? args[i + 1] : null;
            switch (a) {
                case "--bootstrap": bootstrap = need(a, v); i++; break;
                case "--topic": topic = need(a, v); i++; break;
                case "--count": count = Integer.parseInt(need(a, v)); i++; break;
                case "--partitions": partitions = Integer.parseInt(need(a, v)); i++; break;
                case "--compression": compression = need(a, v); i++; break;
                default: throw new IllegalArgumentException("unknown argument " + a
                        + " (usage: --bootstrap HOST:PORT --topic T --count N --partitions P --compression none|gzip)");
            }
        }
        if (bootstrap == null || topic == null) throw new IllegalArgumentException("--bootstrap and --topic are required");
        if (count < 1 || partitions < 1) throw new IllegalArgumentException("--count and --partitions must be >= 1");
        if (!compression.equals("none") && !compression.equals("gzip"))
            throw new IllegalArgumentException("--compression must be none or gzip (no lz4/zstd/snappy jars here), got " + compression);
        summary.put("client", "kafka-clients " + org.apache.kafka.common.utils.AppInfoParser.getVersion());
        summary.put("topic", topic);
        summary.put("count", count);
        summary.put("partitions", partitions);
        summary.put("compression", compression);
    }

    static String need(String flag, String v) {
        if (v == null) throw new IllegalArgumentException(flag + " needs a value");
        return v;
    }

    static String keyOf(int i) { return "k" + i; }

    /** `v{i}-{topic}`; every 10th record also carries a few KB so batches span sizes. */
    static String valueOf(int i, String topic) {
        String v = "v" + i + "-" + topic;
        if (i % 10 == 7) {
            StringBuilder sb = new StringBuilder(v).append('-');
            int pad = 2048 + (i * 37) % 4096;
            for (int j = 0; j < pad; j++) sb.append((char) ('a' + (i + j) % 26));
            v = sb.toString();
        }
        return v;
    }

    static void log(String msg) { System.err.println("[FloeJavaCheck] " + msg); }

    static void run() throws Exception {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        ap.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        ap.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        ap.put(AdminClientConfig.CLIENT_ID_CONFIG, "floe-java-check-admin");

        try (Admin admin = Admin.create(ap)) {
            step = "describeCluster";
            DescribeClusterResult dc = admin.describeCluster();
            Collection<Node> nodes = dc.nodes().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            Node controller = dc.controller().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            String clusterId = dc.clusterId().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            if (nodes.isEmpty()) throw new IllegalStateException("describeCluster returned no nodes");
            Node broker = nodes.iterator().next();
            summary.put("cluster_id", clusterId);
            summary.put("nodes", nodes.size());
            summary.put("broker_id", broker.id());
            summary.put("controller_id", controller == null ? null : controller.id());
            log("cluster " + clusterId + " nodes=" + nodes + " controller=" + controller);

            step = "createTopics";
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1)))
                        .all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
                summary.put("created", true);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) throw e;
                log("topic " + topic + " already exists");
                summary.put("created", false);
            }

            step = "listTopics";
            Set<String> names = waitFor("listTopics contains " + topic,
                    () -> get(() -> admin.listTopics().names()), n -> n.contains(topic));
            summary.put("list_topics_count", names.size());

            step = "describeTopics";
            TopicDescription td = waitFor("describeTopics shows " + partitions + " partitions",
                    () -> describe(admin), d -> d.partitions().size() == partitions);
            td.partitions().forEach(p -> {
                if (p.leader() == null) throw new IllegalStateException("partition " + p.partition() + " has no leader");
            });

            step = "describeConfigs(topic)";
            ConfigResource topicRes = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config topicCfg = admin.describeConfigs(List.of(topicRes)).all()
                    .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS).get(topicRes);
            ConfigEntry retention = topicCfg.get("retention.ms");
            if (retention == null) throw new IllegalStateException("topic config has no retention.ms; got " + names(topicCfg));
            summary.put("topic_configs", topicCfg.entries().size());
            summary.put("retention_ms", retention.value());

            step = "describeConfigs(broker " + broker.id() + ")";
            ConfigResource brokerRes = new ConfigResource(ConfigResource.Type.BROKER, Integer.toString(broker.id()));
            Config brokerCfg = admin.describeConfigs(List.of(brokerRes)).all()
                    .get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS).get(brokerRes);
            summary.put("broker_configs", brokerCfg.entries().size());

            step = "createPartitions";
            int grown = partitions + 1;
            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(grown)))
                    .all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            step = "describeTopics after createPartitions";
            waitFor("describeTopics shows " + grown + " partitions",
                    () -> describe(admin), d -> d.partitions().size() == grown);
            summary.put("partitions_after_grow", grown);

            Map<TopicPartition, TreeMap<Long, Integer>> produced = produce(grown);
            consumeAndVerify(grown, produced);

            step = "deleteTopics";
            admin.deleteTopics(List.of(topic)).all().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
            step = "listTopics after deleteTopics";
            waitFor("listTopics no longer contains " + topic,
                    () -> get(() -> admin.listTopics().names()), n -> !n.contains(topic));
            summary.put("deleted", true);
        }
    }

    static TopicDescription describe(Admin admin) {
        return get(() -> admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
    }

    static Map<TopicPartition, TreeMap<Long, Integer>> produce(int numPartitions) throws Exception {
        step = "produce";
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        pp.put(ProducerConfig.CLIENT_ID_CONFIG, "floe-java-check-producer");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        Map<TopicPartition, TreeMap<Long, Integer>> produced = new HashMap<>();
        long t0 = System.nanoTime();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                futures.add(producer.send(new ProducerRecord<>(topic, keyOf(i), valueOf(i, topic))));
            }
            producer.flush();
            for (int i = 0; i < count; i++) {
                RecordMetadata md = futures.get(i).get(90, TimeUnit.SECONDS);
                if (!md.hasOffset()) throw new IllegalStateException("record " + i + " acked without an offset");
                TopicPartition tp = new TopicPartition(md.topic(), md.partition());
                if (md.partition() < 0 || md.partition() >= numPartitions)
                    throw new IllegalStateException("record " + i + " went to partition " + md.partition());
                Integer prev = produced.computeIfAbsent(tp, k -> new TreeMap<>()).put(md.offset(), i);
                if (prev != null)
                    throw new IllegalStateException("records " + prev + " and " + i + " both acked at " + tp + "@" + md.offset());
            }
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        summary.put("produce_ms", ms);
        Map<String, Integer> perPartition = new TreeMap<>();
        produced.forEach((tp, m) -> perPartition.put(Integer.toString(tp.partition()), m.size()));
        summary.put("produced_per_partition", perPartition);
        log("produced " + count + " records in " + ms + " ms: " + perPartition);
        return produced;
    }

    static void consumeAndVerify(int numPartitions, Map<TopicPartition, TreeMap<Long, Integer>> produced) {
        step = "consume";
        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        cp.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        cp.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "floe-java-check-consumer");
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

        Map<TopicPartition, Long> lastOffset = new HashMap<>();
        Set<String> seen = new HashSet<>();
        int consumed = 0; // records of this run
        int preexisting = 0; // records below this run's first acked offset of their partition
        // A topic that already existed may hold older records: those below the first offset
        // acked in this run are counted, not compared.
        Map<TopicPartition, Long> firstAcked = new HashMap<>();
        produced.forEach((tp, m) -> firstAcked.put(tp, m.firstKey()));
        long t0 = System.nanoTime();
        long deadline = System.currentTimeMillis() + CONSUME_DEADLINE_MS;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < numPartitions; p++) tps.add(new TopicPartition(topic, p));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            boolean extraPollDone = false;
            while (true) {
                if (consumed >= count) {
                    // One more short poll: anything beyond N is a duplicate or a stray record.
                    if (extraPollDone) break;
                    extraPollDone = true;
                }
                if (System.currentTimeMillis() > deadline)
                    throw new IllegalStateException("consumed only " + consumed + " of " + count + " records within "
                            + CONSUME_DEADLINE_MS + " ms; positions " + positions(consumer, tps));
                ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(consumed >= count ? 1000 : 500));
                for (ConsumerRecord<String, String> r : recs) {
                    TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                    String where = tp + "@" + r.offset();
                    if (!seen.add(where)) throw new IllegalStateException("duplicate record " + where);
                    Long last = lastOffset.put(tp, r.offset());
                    if (last != null && r.offset() <= last)
                        throw new IllegalStateException("offsets not increasing on " + tp + ": " + last + " then " + r.offset());
                    if (r.offset() < firstAcked.getOrDefault(tp, Long.MAX_VALUE)) {
                        preexisting++;
                        continue;
                    }
                    TreeMap<Long, Integer> byOffset = produced.get(tp);
                    Integer i = byOffset == null ? null : byOffset.get(r.offset());
                    if (i == null) throw new IllegalStateException("consumed a record that was never acked: " + where
                            + " key=" + r.key());
                    if (!keyOf(i).equals(r.key()))
                        throw new IllegalStateException("key mismatch at " + where + ": want " + keyOf(i) + " got " + r.key());
                    String want = valueOf(i, topic);
                    if (!want.equals(r.value()))
                        throw new IllegalStateException("value mismatch at " + where + ": want " + abbreviate(want)
                                + " got " + abbreviate(r.value()));
                    consumed++;
                }
            }
        }
        step = "verify";
        if (consumed != count) throw new IllegalStateException("consumed " + consumed + " records, produced " + count);
        for (Map.Entry<TopicPartition, TreeMap<Long, Integer>> e : produced.entrySet())
            for (Long off : e.getValue().keySet())
                if (!seen.contains(e.getKey() + "@" + off))
                    throw new IllegalStateException("acked record " + e.getKey() + "@" + off + " was not consumed");
        long ms = (System.nanoTime() - t0) / 1_000_000;
        summary.put("consumed", consumed);
        if (preexisting > 0) summary.put("preexisting_records", preexisting);
        summary.put("consume_ms", ms);
        log("consumed and verified " + consumed + " records in " + ms + " ms");
    }

    static String positions(KafkaConsumer<?, ?> c, List<TopicPartition> tps) {
        Map<Integer, String> out = new TreeMap<>();
        for (TopicPartition tp : tps) {
            try { out.put(tp.partition(), Long.toString(c.position(tp, Duration.ofSeconds(2)))); }
            catch (Exception e) { out.put(tp.partition(), "?" + e.getClass().getSimpleName()); }
        }
        return out.toString();
    }

    // ------------------------------------------------------------------ helpers

    interface FutureSupplier<T> { org.apache.kafka.common.KafkaFuture<T> get(); }

    static <T> T get(FutureSupplier<T> f) {
        try {
            return f.get().get(ADMIN_TIMEOUT_S, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            throw new RuntimeException(e.getCause());
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }

    /** Kafka metadata is eventually consistent: retry (bounded) until `ok`, logging how long it took. */
    static <T> T waitFor(String what, Supplier<T> fetch, Predicate<T> ok) throws InterruptedException {
        long deadline = System.currentTimeMillis() + METADATA_WAIT_MS;
        int attempt = 0;
        RuntimeException lastErr = null;
        T last = null;
        while (true) {
            attempt++;
            try {
                last = fetch.get();
                lastErr = null;
                if (ok.test(last)) {
                    if (attempt > 1) log(what + ": true after " + attempt + " attempts");
                    return last;
                }
            } catch (RuntimeException e) {
                lastErr = e;
            }
            if (System.currentTimeMillis() > deadline) {
                if (lastErr != null) throw lastErr;
                throw new IllegalStateException("timed out waiting until " + what + "; last result: " + last);
            }
            Thread.sleep(200);
        }
    }

    static List<String> names(Config c) {
        List<String> out = new ArrayList<>();
        for (ConfigEntry e : c.entries()) out.add(e.name());
        Collections.sort(out);
        return out;
    }

    static Throwable unwrap(Throwable e) {
        while ((e instanceof ExecutionException || (e instanceof RuntimeException && e.getClass() == RuntimeException.class))
                && e.getCause() != null) e = e.getCause();
        return e;
    }

    static String abbreviate(String s) {
        if (s == null) return "null";
        return s.length() <= 80 ? s : s.substring(0, 80) + "...(" + s.length() + " chars)";
    }

    static String toJson(Object o) {
        if (o == null) return "null";
        if (o instanceof Boolean || o instanceof Number) return o.toString();
        if (o instanceof Map) {
            StringBuilder sb = new StringBuilder("{");
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) o).entrySet()) {
                if (!first) sb.append(", ");
                first = false;
                sb.append(toJson(String.valueOf(e.getKey()))).append(": ").append(toJson(e.getValue()));
            }
            return sb.append('}').toString();
        }
        String s = o.toString();
        StringBuilder sb = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (ch < 0x20) sb.append(String.format("\\u%04x", (int) ch));
                    else sb.append(ch);
            }
        }
        return sb.append('"').toString();
    }
}
