use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::segments::seg_path;
use super::*;

/// A scratch directory removed on drop; the spool goes in its `spool` subdirectory.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(
            tempfile::Builder::new().prefix(&format!("ringfence-spool-{name}-")).tempdir().expect("temp dir"),
        )
    }
    fn dir(&self) -> PathBuf {
        self.0.path().join("spool")
    }
}

fn rec(i: u32) -> Value {
    json!({ "id": format!("a-{i:04}"), "kind": "bulk" })
}

/// Bytes one `rec` line takes.
fn line_len() -> u64 {
    serde_json::to_vec(&rec(1)).unwrap().len() as u64 + 1
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

fn want(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("a-{i:04}")).collect()
}

fn limits(files: u64, total: u64) -> SpoolLimits {
    SpoolLimits { max_file_bytes: files * line_len(), max_total_bytes: total * line_len() }
}

/// Reads and acknowledges up to `n` records.
fn deliver(s: &mut Spool, n: usize) -> Vec<String> {
    let batch = s.read_batch(n).unwrap();
    s.ack_batch(&batch).unwrap();
    ids(&batch.records)
}

#[test]
fn append_and_reopen_keep_records() {
    let t = Scratch::new("reopen");
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    (1..=3).for_each(|i| s.append(&rec(i)).unwrap());
    assert!(matches!(s.append(&json!({ "id": 7 })), Err(SpoolError::NoId { .. })));
    drop(s);
    assert_eq!(fs::metadata(t.dir()).unwrap().permissions().mode() & 0o777, 0o700);
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    s.append(&rec(4)).unwrap();
    assert_eq!(ids(&s.pending(10).unwrap()), want(1..=4));
    assert_eq!(fs::read_dir(t.dir()).unwrap().count(), 1, "one file, continued");
}

#[test]
fn a_batch_is_all_or_nothing_on_ids_and_rotates_inside() {
    let t = Scratch::new("batch");
    let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
    let bad = [rec(1), json!({ "kind": "no id" })];
    assert!(matches!(s.append_all(&bad), Err(SpoolError::NoId { .. })));
    assert!(s.pending(10).unwrap().is_empty(), "nothing of a rejected batch is written");
    let batch: Vec<Value> = (1..=5).map(rec).collect();
    s.append_all(&batch).unwrap();
    drop(s);
    let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
    assert_eq!(ids(&s.pending(10).unwrap()), want(1..=5));
    assert_eq!(fs::read_dir(t.dir()).unwrap().count(), 3, "2 + 2 + 1 lines");
}

#[test]
fn total_cap_drops_the_oldest_files_and_counts_them() {
    let t = Scratch::new("cap");
    let mut s = Spool::open(&t.dir(), limits(2, 5)).unwrap();
    (1..=5).for_each(|i| s.append(&rec(i)).unwrap());
    assert_eq!(s.dropped(), 0);
    s.append(&rec(6)).unwrap();
    assert_eq!(s.dropped(), 2);
    assert!(!seg_path(&t.dir(), 1).exists());
    (7..=8).for_each(|i| s.append(&rec(i)).unwrap());
    assert_eq!(s.dropped(), 4);
    assert_eq!(ids(&s.pending(10).unwrap()), want(5..=8));
}

#[test]
fn torn_last_line_is_recovered() {
    let t = Scratch::new("torn");
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    (1..=2).for_each(|i| s.append(&rec(i)).unwrap());
    drop(s);
    let path = seg_path(&t.dir(), 1);
    let full = fs::metadata(&path).unwrap().len();
    OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\":\"a-00").unwrap();
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), full);
    s.append(&rec(3)).unwrap();
    assert_eq!(ids(&s.pending(10).unwrap()), want(1..=3));
}

#[test]
fn batches_acknowledged_survive_reopen_and_delete_delivered_files() {
    let t = Scratch::new("ack");
    let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
    (1..=5).for_each(|i| s.append(&rec(i)).unwrap());
    assert_eq!(deliver(&mut s, 3), want(1..=3));
    assert!(!seg_path(&t.dir(), 1).exists(), "file 1 fully delivered");
    drop(s);
    let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
    assert_eq!(s.pending_count(), 2);
    let batch = s.read_batch(10).unwrap();
    assert_eq!(ids(&batch.records), want(4..=5));
    // Records appended between reading and acknowledging stay pending.
    (6..=7).for_each(|i| s.append(&rec(i)).unwrap());
    s.ack_batch(&batch).unwrap();
    s.ack_batch(&batch).unwrap(); // twice: no effect
    assert_eq!(ids(&s.pending(10).unwrap()), want(6..=7));
    assert!(!seg_path(&t.dir(), 2).exists(), "file 2 fully delivered");
    drop(s);
    let mut s = Spool::open(&t.dir(), limits(2, 100)).unwrap();
    assert_eq!(deliver(&mut s, 1), want(6..=6));
    assert_eq!(ids(&s.pending(10).unwrap()), want(7..=7));
}

#[test]
fn the_delivered_part_is_never_read_again() {
    let t = Scratch::new("noreread");
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    (1..=4).for_each(|i| s.append(&rec(i)).unwrap());
    assert_eq!(deliver(&mut s, 2), want(1..=2));
    // Garble the delivered lines on disk: the next batches start at the cursor's byte offset.
    let path = seg_path(&t.dir(), 1);
    let mut data = fs::read(&path).unwrap();
    let garbled = 2 * line_len() as usize - 1;
    data[..garbled].fill(b'#');
    fs::write(&path, &data).unwrap();
    assert_eq!(ids(&s.pending(10).unwrap()), want(3..=4));
    assert_eq!(s.quarantined(), 0, "nothing delivered was parsed");
    drop(s);
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    assert_eq!(deliver(&mut s, 10), want(3..=4));
}

#[test]
fn a_corrupt_line_is_quarantined_once_and_delivery_continues() {
    let t = Scratch::new("quarantine");
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    s.append(&rec(1)).unwrap();
    drop(s);
    let path = seg_path(&t.dir(), 1);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"id\": \"a-00\x02 garbage\n[1,2]\n")
        .unwrap();
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    s.append(&rec(2)).unwrap();
    let first = s.read_batch(10).unwrap();
    assert_eq!(
        (ids(&first.records), first.quarantined),
        (vec!["a-0001".to_string(), "a-0002".to_string()], 2)
    );
    // Read again (an upload failed): not quarantined twice.
    let again = s.read_batch(10).unwrap();
    assert_eq!(again, first);
    assert_eq!(s.quarantined(), 2);
    s.ack_batch(&again).unwrap();
    let quarantine = fs::read_to_string(t.dir().join(QUARANTINE)).unwrap();
    assert_eq!(quarantine.lines().count(), 2, "{quarantine}");
    assert!(quarantine.contains("garbage") && quarantine.contains("[1,2]"));
    s.append(&rec(3)).unwrap();
    assert_eq!(deliver(&mut s, 10), want(3..=3));
}

#[test]
fn a_corrupt_cursor_is_rebuilt_not_fatal() {
    for garbage in [
        &b"{\"seq\": 1, \"li"[..],
        b"{\"seq\":1,\"line\":1,\"offset\":5}",
        b"{\"seq\":1,\"line\":99,\"offset\":1}",
    ] {
        let t = Scratch::new("cursor");
        let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
        (1..=3).for_each(|i| s.append(&rec(i)).unwrap());
        assert_eq!(deliver(&mut s, 1), want(1..=1));
        drop(s);
        fs::write(t.dir().join("cursor"), garbage).unwrap();
        let mut s = Spool::open(&t.dir(), SpoolLimits::default()).expect("opens despite the cursor");
        assert_eq!(ids(&s.pending(10).unwrap()), want(1..=3), "from the start again");
        let aside = fs::read_dir(t.dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("cursor.corrupt-"))
            .count();
        assert_eq!(aside, 1, "the corrupt cursor is kept aside");
    }
}

#[test]
fn a_cursor_without_an_offset_is_upgraded() {
    let t = Scratch::new("oldcursor");
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    (1..=3).for_each(|i| s.append(&rec(i)).unwrap());
    drop(s);
    fs::write(t.dir().join("cursor"), b"{\"seq\":1,\"line\":2}").unwrap();
    let mut s = Spool::open(&t.dir(), SpoolLimits::default()).unwrap();
    assert_eq!(deliver(&mut s, 10), want(3..=3));
}
