use super::*;
use std::sync::mpsc;

fn record(stream: StreamId, base_offset: i64, payload: &[u8]) -> WalRecord {
    WalRecord { stream, base_offset, max_timestamp: 0, records: 1, payload: Bytes::copy_from_slice(payload) }
}

/// Appends and waits until every record is durable.
fn append_all(wal: &Wal, records: Vec<WalRecord>) -> Vec<Lsn> {
    let (tx, rx) = mpsc::channel();
    let n = records.len();
    for r in records {
        let tx = tx.clone();
        wal.append(r, Box::new(move |res| tx.send(res).expect("receiver alive"))).unwrap();
    }
    (0..n).map(|_| rx.recv().unwrap().expect("durable")).collect()
}

#[test]
fn recovers_every_durable_entry_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert!(recovered.is_empty());
    let lsns = append_all(&wal, (0..100).map(|i| record(i % 3, i as i64, &[i as u8; 100])).collect());
    assert!(lsns.windows(2).all(|w| w[0] < w[1]));
    // The writer publishes the durable LSN just after it runs the callbacks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while wal.durable_lsn() < wal.appended_lsn() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(wal.durable_lsn(), wal.appended_lsn());
    wal.close();

    let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered.len(), 100);
    for (i, r) in recovered.iter().enumerate() {
        assert_eq!(r.record.stream, i as u64 % 3);
        assert_eq!(r.record.base_offset, i as i64);
        assert_eq!(&r.record.payload[..], &[i as u8; 100][..]);
    }
    // Appends after recovery continue after the last entry.
    let more = append_all(&wal, vec![record(9, 0, b"after")]);
    assert!(more[0] > recovered.last().unwrap().lsn);
    wal.close();
    let (_wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered.len(), 101);
    assert_eq!(&recovered[100].record.payload[..], b"after");
}

#[test]
fn a_torn_tail_is_cut_at_the_last_intact_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    let lsns = append_all(&wal, (0..10).map(|i| record(1, i, &[7u8; 300])).collect());
    wal.close();
    // Corrupt one byte inside the payload of entry 6.
    let path = segment_path(dir.path(), 0);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xFF], lsns[6] + HEADER as u64 + 10).unwrap();
    drop(file);
    let (wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered.len(), 6, "entries after the torn one are not trusted");
    // New appends overwrite the torn region and survive the next recovery.
    append_all(&wal, vec![record(1, 6, b"rewritten")]);
    wal.close();
    let (_wal, recovered) = Wal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered.len(), 7);
    assert_eq!(&recovered[6].record.payload[..], b"rewritten");
}

#[test]
fn entries_roll_over_segments_and_trimmed_segments_are_recycled() {
    let dir = tempfile::tempdir().unwrap();
    let seg = 1u64 << 20;
    let (wal, _) = Wal::open(dir.path(), seg).unwrap();
    let payload = vec![3u8; 100_000];
    let lsns = append_all(&wal, (0..30).map(|i| record(1, i, &payload)).collect());
    assert!(lsns.last().unwrap() / seg >= 2, "30 x 100 KB spans three segments");
    for l in &lsns {
        assert_eq!(l / seg, (l + entry_len(payload.len()) as u64 - 1) / seg, "no straddling");
    }
    wal.trim(lsns[25]);
    // A later append makes the writer recycle, then reuse the spare files.
    append_all(&wal, (30..45).map(|i| record(1, i, &payload)).collect());
    wal.close();
    let files = list_segments(dir.path()).unwrap();
    assert!(files.len() <= 4, "trimmed segments are reused or deleted: {files:?}");
    let (_wal, recovered) = Wal::open(dir.path(), seg).unwrap();
    let offsets: Vec<i64> = recovered.iter().map(|r| r.record.base_offset).collect();
    assert!(offsets.ends_with(&(20..45).collect::<Vec<_>>()), "{offsets:?}");
}

#[test]
fn oversized_payloads_are_refused_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), 1 << 20).unwrap();
    let big = record(1, 0, &vec![0u8; 1 << 19]);
    let err = wal.append(big, Box::new(|_| {})).unwrap_err();
    assert!(matches!(err, StorageError::Invalid(_)), "{err}");
}
