use super::*;

fn bucket(dir: &std::path::Path) -> Bucket {
    Bucket::open(&format!("file://{}", dir.display()), std::time::Duration::from_secs(5)).unwrap()
}

fn topic(name: &str, streams: Vec<StreamId>) -> MetaRecord {
    MetaRecord::TopicCreated {
        topic: TopicMeta { name: name.into(), id: [1; 16], streams, configs: BTreeMap::new() },
    }
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = MetadataLog::open(bucket(dir.path())).await.unwrap();
    log.append(vec![MetaRecord::BrokerRegistered { broker_id: 0, broker_epoch: 1, streams: vec![] }])
        .await
        .unwrap();
    log.append(vec![topic("a", vec![0, 1])]).await.unwrap();
    let range = ObjectRange {
        stream: 1,
        epoch: 0,
        start_offset: 0,
        end_offset: 5,
        position: 0,
        length: 100,
        max_timestamp: 7,
    };
    log.append(vec![MetaRecord::ObjectCommitted {
        key: "o1".into(),
        size: 100,
        broker_id: 0,
        broker_epoch: 1,
        ranges: vec![range],
    }])
    .await
    .unwrap();
    let reopened = MetadataLog::open(bucket(dir.path())).await.unwrap();
    assert_eq!(*reopened.state(), *log.state());
    assert_eq!(reopened.state().streams[&1].end_offset, 5);
    assert_eq!(reopened.state().seq, 3);
}

#[tokio::test]
async fn a_second_writer_is_fenced_not_forked() {
    let dir = tempfile::tempdir().unwrap();
    let a = MetadataLog::open(bucket(dir.path())).await.unwrap();
    let b = MetadataLog::open(bucket(dir.path())).await.unwrap();
    a.append(vec![topic("a", vec![0])]).await.unwrap();
    let err = b.append(vec![topic("b", vec![1])]).await.unwrap_err();
    assert!(matches!(err, StorageError::Fenced(_)), "{err}");
    let fresh = MetadataLog::open(bucket(dir.path())).await.unwrap();
    assert!(fresh.state().topics.contains_key("a"));
    assert!(!fresh.state().topics.contains_key("b"));
}

#[tokio::test]
async fn stale_broker_epochs_and_gaps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = MetadataLog::open(bucket(dir.path())).await.unwrap();
    log.append(vec![MetaRecord::BrokerRegistered { broker_id: 0, broker_epoch: 2, streams: vec![] }])
        .await
        .unwrap();
    log.append(vec![topic("t", vec![0])]).await.unwrap();
    let commit = |epoch, start| MetaRecord::ObjectCommitted {
        key: "o".into(),
        size: 1,
        broker_id: 0,
        broker_epoch: epoch,
        ranges: vec![ObjectRange {
            stream: 0,
            epoch: 0,
            start_offset: start,
            end_offset: start + 1,
            position: 0,
            length: 1,
            max_timestamp: 0,
        }],
    };
    assert!(matches!(log.append(vec![commit(1, 0)]).await, Err(StorageError::Fenced(_))));
    assert!(matches!(log.append(vec![commit(2, 3)]).await, Err(StorageError::Invalid(_))));
    log.append(vec![commit(2, 0)]).await.unwrap();
    assert_eq!(log.state().seq, 3, "refused appends write nothing");
}
