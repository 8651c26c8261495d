//! The wire protocol from a raw socket: every advertised API version answers,
//! and bad input gets an error code or a closed connection, never a dead broker.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use floe_protocol::batch::build_batch;
use floe_testing::raw::{call, closed, connect, read_frame, topic};
use floe_testing::TestBroker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

#[test]
fn every_advertised_version_of_every_api_answers() {
    let t = TestBroker::start("versions", &[]).unwrap();
    let addr = t.broker.bootstrap();
    let mut s = connect(&addr);
    let table: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("raw"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    )
    .unwrap();
    assert_eq!(table.error_code, 0);
    assert!(
        table.supported_features.is_empty() && table.finalized_features.is_empty(),
        "kcat needs <= 1 tagged field"
    );
    for v in 0..=3 {
        let r: ApiVersionsResponse =
            call(&mut s, ApiKey::ApiVersions, v, &ApiVersionsRequest::default()).unwrap();
        assert_eq!(r.api_keys.len(), table.api_keys.len());
    }
    let range = |k: ApiKey| {
        let a = table
            .api_keys
            .iter()
            .find(|a| a.api_key == k as i16)
            .unwrap_or_else(|| panic!("{k:?} advertised"));
        a.min_version..=a.max_version
    };

    for v in range(ApiKey::CreateTopics) {
        let req =
            CreateTopicsRequest::default().with_topics(vec![create_topics_request::CreatableTopic::default(
            )
            .with_name(topic(&format!("v{v}")))
            .with_num_partitions(2)
            .with_replication_factor(1)]);
        let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, v, &req).unwrap();
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    }
    for v in range(ApiKey::Metadata) {
        let topics = if v == 0 { Some(vec![]) } else { None };
        let r: MetadataResponse =
            call(&mut s, ApiKey::Metadata, v, &MetadataRequest::default().with_topics(topics)).unwrap();
        assert!(r.topics.len() >= 5, "Metadata v{v} lists all topics");
        assert_eq!(r.brokers[0].port as u16, t.broker.addr.port());
    }
    let batch = build_batch(0, 1_700_000_000_000, &[b"one", b"two"]);
    for v in range(ApiKey::Produce) {
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
            produce_request::TopicProduceData::default().with_name(topic("v2")).with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(batch.clone())),
            ]),
        ]);
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, v, &req).unwrap();
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "Produce v{v}");
        assert_eq!(p.base_offset, 2 * i64::from(v - 3), "Produce v{v}");
    }
    let produced = 2 * (range(ApiKey::Produce).count() as i64);
    for v in range(ApiKey::Fetch) {
        let req = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic("v2")).with_partitions(
                vec![fetch_request::FetchPartition::default()
                    .with_partition(1)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)],
            )]);
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &req).unwrap();
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert_eq!(p.high_watermark, produced, "Fetch v{v}");
        assert!(p.records.as_ref().is_some_and(|b| b.len() >= batch.len()), "Fetch v{v} returns data");
    }
    for v in range(ApiKey::ListOffsets) {
        let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default().with_name(topic("v2")).with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(1)
                    .with_timestamp(-1),
            ]),
        ]);
        let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, v, &req).unwrap();
        assert_eq!(r.topics[0].partitions[0].offset, produced, "ListOffsets v{v}");
    }
    for v in range(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("v2"))
                .with_configuration_keys(None),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("0"))
                .with_configuration_keys(None),
        ]);
        let r: DescribeConfigsResponse = call(&mut s, ApiKey::DescribeConfigs, v, &req).unwrap();
        assert!(r.results.iter().all(|x| x.error_code == 0 && !x.configs.is_empty()), "DescribeConfigs v{v}");
    }
    for v in range(ApiKey::CreatePartitions) {
        let req = CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic("v3"))
                .with_count(3 + i32::from(v))
                .with_assignments(None),
        ]);
        let r: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, v, &req).unwrap();
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }
    for v in range(ApiKey::InitProducerId) {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let r: InitProducerIdResponse = call(&mut s, ApiKey::InitProducerId, v, &req).unwrap();
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert!(r.producer_id.0 >= 0);
    }
    let configs_of = |s: &mut std::net::TcpStream| -> Vec<(String, String)> {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("v2"))
                .with_configuration_keys(None),
        ]);
        let r: DescribeConfigsResponse = call(s, ApiKey::DescribeConfigs, 4, &req).unwrap();
        r.results[0]
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default()))
            .collect()
    };
    let config = |s: &mut std::net::TcpStream, k: &str| {
        configs_of(s).into_iter().find(|(n, _)| n == k).map(|(_, v)| v).unwrap_or_default()
    };
    for v in range(ApiKey::AlterConfigs) {
        let alter = |name: &str, kind: i8, key: &str, value: &str| {
            AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(StrBytes::from_string(name.into()))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_string(key.into()))
                        .with_value(Some(StrBytes::from_string(value.into())))]),
            ])
        };
        let ms = (1000 + i32::from(v)).to_string();
        let r: AlterConfigsResponse =
            call(&mut s, ApiKey::AlterConfigs, v, &alter("v2", 2, "retention.ms", &ms)).unwrap();
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
        assert_eq!(config(&mut s, "retention.ms"), ms, "AlterConfigs v{v} took effect");
        let r: AlterConfigsResponse =
            call(&mut s, ApiKey::AlterConfigs, v, &alter("v2", 2, "retention.ms", "soon")).unwrap();
        assert_eq!(r.responses[0].error_code, ResponseError::InvalidConfig.code(), "AlterConfigs v{v}");
        let r: AlterConfigsResponse =
            call(&mut s, ApiKey::AlterConfigs, v, &alter("0", 4, "num.partitions", "3")).unwrap();
        assert_eq!(r.responses[0].error_code, ResponseError::InvalidRequest.code(), "static broker configs");
        let r: AlterConfigsResponse =
            call(&mut s, ApiKey::AlterConfigs, v, &alter("nope", 2, "retention.ms", "1")).unwrap();
        assert_eq!(r.responses[0].error_code, ResponseError::UnknownTopicOrPartition.code());
        assert_eq!(config(&mut s, "retention.ms"), ms, "a refused change changes nothing");
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
        let op = |key: &str, op: i8, value: Option<&str>| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key.into()))
                .with_config_operation(op)
                .with_value(value.map(|x| StrBytes::from_string(x.into())))
        };
        let bytes = (5_000_000 + i32::from(v)).to_string();
        let req =
            IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("v2"))
                .with_configs(vec![
                    op("retention.bytes", 0, Some(&bytes)),
                    op("cleanup.policy", 2, Some("compact")),
                    op("retention.ms", 1, None),
                ])]);
        let r: IncrementalAlterConfigsResponse =
            call(&mut s, ApiKey::IncrementalAlterConfigs, v, &req).unwrap();
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
        assert_eq!(config(&mut s, "retention.bytes"), bytes);
        assert_eq!(config(&mut s, "cleanup.policy"), "delete,compact", "appended to the default");
        assert_eq!(config(&mut s, "retention.ms"), "604800000", "deleted: the default again");
        let req =
            IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("v2"))
                .with_configs(vec![
                    op("cleanup.policy", 3, Some("compact")),
                    op("retention.ms", 2, Some("5")),
                ])]);
        let r: IncrementalAlterConfigsResponse =
            call(&mut s, ApiKey::IncrementalAlterConfigs, v, &req).unwrap();
        assert_eq!(r.responses[0].error_code, ResponseError::InvalidConfig.code(), "retention.ms is no list");
        assert_eq!(config(&mut s, "cleanup.policy"), "delete,compact", "all or nothing");
    }
    for v in range(ApiKey::DeleteRecords) {
        let to = 1 + i64::from(v);
        let req = DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default().with_name(topic("v2")).with_partitions(
                vec![delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(1)
                    .with_offset(to)],
            ),
        ]);
        let r: DeleteRecordsResponse = call(&mut s, ApiKey::DeleteRecords, v, &req).unwrap();
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.low_watermark), (0, to), "DeleteRecords v{v}");
    }
    for v in range(ApiKey::DeleteTopics) {
        let name = format!("v{}", 1 + v);
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(topic(&name))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic(&name)])
        };
        let r: DeleteTopicsResponse = call(&mut s, ApiKey::DeleteTopics, v, &req).unwrap();
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v} of {name}");
    }
}

#[test]
fn bad_input_gets_error_codes_or_a_closed_connection() {
    let t = TestBroker::start("bad-input", &["--message-max-bytes", "2000"]).unwrap();
    let addr = t.broker.bootstrap();

    // ApiVersions above our range: UNSUPPORTED_VERSION and the table, in v0.
    let mut s = connect(&addr);
    s.write_all(&[0, 0, 0, 12, 0, 18, 0, 9, 0, 0, 0, 7, 0, 0, 0, 0]).unwrap();
    let mut resp = read_frame(&mut s).expect("an answer, not a close");
    assert_eq!(resp.get_i32(), 7);
    let r = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(!r.api_keys.is_empty());

    // Unknown API key, an API we do not serve, a version out of range,
    // negative and oversized lengths, garbage bodies, a huge array count: closed.
    let cases: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 10, 3, 231, 0, 0, 0, 0, 0, 1, 0, 0],
        vec![0, 0, 0, 10, 0, 11, 0, 5, 0, 0, 0, 1, 0, 0],
        vec![0, 0, 0, 10, 0, 0, 0, 99, 0, 0, 0, 1, 0, 0],
        vec![0xFF, 0xFF, 0xFF, 0xFF],
        vec![0x7F, 0, 0, 0],
        vec![0, 0, 0, 12, 0, 3, 0, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xAB, 0xCD],
        // Metadata v1 claiming 2^31-1 topics in a 14-byte body.
        vec![0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF],
    ];
    for case in cases {
        let mut s = connect(&addr);
        s.write_all(&case).unwrap();
        assert!(closed(&mut s), "{case:?} closes the connection");
    }

    // Produce errors come back as codes.
    let mut s = connect(&addr);
    let good = build_batch(0, 0, &[b"x"]);
    let mut bad_crc = BytesMut::from(&good[..]);
    let n = bad_crc.len();
    bad_crc[n - 2] ^= 0xFF;
    let mut two = BytesMut::from(&good[..]);
    two.extend_from_slice(&good);
    let big = build_batch(0, 0, &[&[7u8; 3000]]);
    let cases: Vec<(&str, i32, i16, Bytes, i16)> = vec![
        ("bad crc", 0, -1, bad_crc.freeze(), 2),
        ("two batches", 0, -1, two.freeze(), 87),
        ("too large", 0, -1, big, 10),
        ("acks 5", 0, 5, good.clone(), 21),
        ("no partition 9", 9, -1, good.clone(), 3),
        ("truncated", 0, -1, good.slice(..40), 2),
    ];
    for (what, partition, acks, records, code) in cases {
        let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
            produce_request::TopicProduceData::default().with_name(topic("bad")).with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records)),
            ]),
        ]);
        // The topic exists after the first Metadata-less produce? No: create it first.
        let _: Option<MetadataResponse> = call(
            &mut s,
            ApiKey::Metadata,
            4,
            &MetadataRequest::default()
                .with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic("bad")))
                ]))
                .with_allow_auto_topic_creation(true),
        );
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 8, &req).expect(what);
        assert_eq!(r.responses[0].partition_responses[0].error_code, code, "{what}");
    }
    // Fetch past the end: OFFSET_OUT_OF_RANGE; unknown topic: UNKNOWN_TOPIC_OR_PARTITION.
    for (name, offset, code) in [("bad", 100, 1), ("nope", 0, 3)] {
        let req = FetchRequest::default().with_max_wait_ms(10).with_max_bytes(1 << 20).with_topics(vec![
            fetch_request::FetchTopic::default().with_topic(topic(name)).with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20),
            ]),
        ]);
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &req).unwrap();
        assert_eq!(r.responses[0].partitions[0].error_code, code, "fetch {name}@{offset}");
    }
    // Still alive and serving.
    let mut s = connect(&addr);
    let r: MetadataResponse =
        call(&mut s, ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None)).unwrap();
    assert!(r.topics.iter().any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("bad")));
}

fn produce_one(s: &mut TcpStream, name: &str, records: Bytes) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        produce_request::TopicProduceData::default().with_name(topic(name)).with_partition_data(vec![
            produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records)),
        ]),
    ]);
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &req).unwrap();
    r.responses[0].partition_responses[0].clone()
}

#[test]
fn idempotent_retries_are_written_once_and_gaps_are_refused() {
    use floe_protocol::batch::build_idempotent_batch;
    let t = TestBroker::start("idempotence", &[]).unwrap();
    let mut s = connect(&t.broker.bootstrap());
    let init: InitProducerIdResponse = call(
        &mut s,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .unwrap();
    let pid = init.producer_id.0;
    let first = build_idempotent_batch(0, 0, pid, 0, 0, &[b"a", b"b"]);
    let second = build_idempotent_batch(0, 0, pid, 0, 2, &[b"c"]);
    let _: Option<MetadataResponse> = call(
        &mut s,
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("idem")))
            ]))
            .with_allow_auto_topic_creation(true),
    );
    assert_eq!(produce_one(&mut s, "idem", first.clone()).base_offset, 0);
    assert_eq!(produce_one(&mut s, "idem", second.clone()).base_offset, 2);
    // A retry of either batch is acknowledged with its first offset, not written again.
    let retry = produce_one(&mut s, "idem", first);
    assert_eq!((retry.error_code, retry.base_offset), (0, 0));
    let retry = produce_one(&mut s, "idem", second);
    assert_eq!((retry.error_code, retry.base_offset), (0, 2));
    // A gap in sequences: OUT_OF_ORDER_SEQUENCE_NUMBER.
    let gap = produce_one(&mut s, "idem", build_idempotent_batch(0, 0, pid, 0, 7, &[b"x"]));
    assert_eq!(gap.error_code, 45);
    let next = produce_one(&mut s, "idem", build_idempotent_batch(0, 0, pid, 0, 3, &[b"d"]));
    assert_eq!((next.error_code, next.base_offset), (0, 3));
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default().with_name(topic("idem")).with_partitions(vec![
            list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
        ]),
    ]);
    let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, 5, &req).unwrap();
    assert_eq!(r.topics[0].partitions[0].offset, 4, "four records, duplicates not stored");
}

#[test]
fn auto_creation_can_be_turned_off() {
    let t = TestBroker::start("no-auto-create", &["--auto-create-topics", "false"]).unwrap();
    let mut s = connect(&t.broker.bootstrap());
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic("ghost")))
        ]))
        .with_allow_auto_topic_creation(true);
    let r: MetadataResponse = call(&mut s, ApiKey::Metadata, 9, &req).unwrap();
    assert_eq!(r.topics[0].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let r: MetadataResponse =
        call(&mut s, ApiKey::Metadata, 9, &MetadataRequest::default().with_topics(None)).unwrap();
    assert!(r.topics.is_empty());
}

fn fetch_req(name: &str, offset: i64, max_wait_ms: i32, partition_max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic(name)).with_partitions(
            vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max_bytes)],
        )])
}

#[test]
fn fetch_long_polls_until_data_arrives_and_honours_partition_max_bytes() {
    let t = TestBroker::start("long-poll", &[]).unwrap();
    let addr = t.broker.bootstrap();
    let mut s = connect(&addr);
    let _: Option<MetadataResponse> = call(
        &mut s,
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("poll")))
            ]))
            .with_allow_auto_topic_creation(true),
    );

    // A fetch at the end waits (up to 20 s) and returns as soon as a record lands.
    let waiter = std::thread::spawn(move || {
        let mut s = connect(&addr);
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let r: FetchResponse =
            call(&mut s, ApiKey::Fetch, 11, &fetch_req("poll", 0, 20_000, 1 << 20)).unwrap();
        r.responses[0].partitions[0].clone()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "an empty fetch with max_wait 20 s must wait");
    assert_eq!(produce_one(&mut s, "poll", build_batch(0, 0, &[b"wake up"])).error_code, 0);
    let p = waiter.join().unwrap();
    assert_eq!(p.error_code, 0);
    assert_eq!(p.high_watermark, 1);
    let records = p.records.unwrap();
    assert!(records.windows(7).any(|w| w == b"wake up"), "the long poll returns the new record");

    // Ten more batches; a small partition_max_bytes returns some but not all,
    // and never less than one whole batch.
    for i in 0..10 {
        produce_one(&mut s, "poll", build_batch(0, 0, &[format!("record-{i}").as_bytes(); 20]));
    }
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &fetch_req("poll", 1, 100, 1)).unwrap();
    let one = r.responses[0].partitions[0].records.clone().unwrap();
    let batches = floe_protocol::RecordBatch::split_all(one).unwrap();
    assert_eq!(batches.len(), 1, "one whole batch even though it exceeds the limit");
    assert_eq!(batches[0].base_offset(), 1);
    let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &fetch_req("poll", 1, 100, 1 << 20)).unwrap();
    let all =
        floe_protocol::RecordBatch::split_all(r.responses[0].partitions[0].records.clone().unwrap()).unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all.last().unwrap().last_offset(), 200);
}
