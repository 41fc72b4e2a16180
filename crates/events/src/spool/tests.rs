use std::io::Write;

use serde_json::Value;
use tokio::sync::watch;

use super::writer::{append_for_test, Writer};
use super::*;
use crate::{AgentEvent, Identity, SiemEvent};

fn identity() -> IdentityHandle {
    IdentityHandle::new(Identity {
        host_name: "ws-1".to_owned(),
        machine_id: "ab".repeat(16),
        user_name: "alice".to_owned(),
        os: "test".to_owned(),
        agent_version: "0.1.0".to_owned(),
        list_version: "v1".to_owned(),
    })
}

fn events(count: usize, tag: &str) -> Vec<SiemEvent> {
    (0..count)
        .map(|n| AgentEvent::now("Test", format!("{tag} {n}")).into())
        .collect()
}

async fn read_all(reader: &mut SpoolReader) -> Vec<Value> {
    let (_stop_tx, mut stop) = watch::channel(true);
    let mut seen = Vec::new();
    while let Some(batch) = reader.next_batch(7, 4096, &mut stop).await.unwrap() {
        for record in &batch.records {
            seen.push(serde_json::from_str(&record.json).unwrap());
        }
        reader.commit(&batch, batch.records.len()).unwrap();
    }
    seen
}

fn messages(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .filter(|v| v["eventName"] == "Test")
        .map(|v| v["message"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn records_carry_ids_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
    let mut reader = spool.reader("sink").unwrap();
    append_for_test(&spool, &events(20, "a")).unwrap();
    let seen = read_all(&mut reader).await;
    assert_eq!(seen.len(), 20);
    assert_eq!(seen[0]["eventId"], format!("{}-1", spool.id()));
    assert_eq!(seen[19]["eventId"], format!("{}-20", spool.id()));
    assert_eq!(seen[3]["hostName"], "ws-1");
    assert_eq!(seen[3]["listVersion"], "v1");
    assert_eq!(seen[3]["eventCategory"], "AgentStatus");
    assert_eq!(messages(&seen)[5], "a 5");
    assert_eq!(reader.pending(), 0);
}

#[tokio::test]
async fn reopened_spool_resumes_each_sink_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
        let mut fast = spool.reader("fast").unwrap();
        let _slow = spool.reader("slow").unwrap();
        append_for_test(&spool, &events(10, "first")).unwrap();
        read_all(&mut fast).await;
    }
    let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
    assert_eq!(spool.next_seq(), 11);
    append_for_test(&spool, &events(2, "second")).unwrap();
    let mut fast = spool.reader("fast").unwrap();
    let mut slow = spool.reader("slow").unwrap();
    assert_eq!(
        messages(&read_all(&mut fast).await),
        ["second 0", "second 1"]
    );
    assert_eq!(read_all(&mut slow).await.len(), 12);
}

#[tokio::test]
async fn partial_commit_sends_the_rest_again() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
    let mut reader = spool.reader("sink").unwrap();
    append_for_test(&spool, &events(5, "e")).unwrap();
    let (_stop_tx, mut stop) = watch::channel(true);
    let batch = reader
        .next_batch(100, 1 << 20, &mut stop)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.records.len(), 5);
    reader.commit(&batch, 2).unwrap();
    let rest = read_all(&mut reader).await;
    assert_eq!(messages(&rest), ["e 2", "e 3", "e 4"]);
}

#[tokio::test]
async fn spool_cuts_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
        spool.reader("sink").unwrap();
        append_for_test(&spool, &events(3, "whole")).unwrap();
    }
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    file.write_all(b"{\"eventId\":\"cut").unwrap();
    drop(file);

    let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
    assert_eq!(spool.next_seq(), 4);
    append_for_test(&spool, &events(1, "after")).unwrap();
    let mut reader = spool.reader("sink").unwrap();
    let seen = read_all(&mut reader).await;
    assert_eq!(
        messages(&seen),
        ["whole 0", "whole 1", "whole 2", "after 0"]
    );
    assert_eq!(seen[3]["eventId"], format!("{}-4", spool.id()));
}

#[tokio::test]
async fn full_spool_reports_dropped_count() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest limit: two segments of 4 KiB.
    let spool = Spool::open(dir.path(), 1, identity()).unwrap();
    let mut reader = spool.reader("sink").unwrap();
    for round in 0..30 {
        append_for_test(&spool, &events(10, &format!("r{round}"))).unwrap();
    }
    assert!(
        spool.bytes() <= 8 * 1024,
        "spool holds {} bytes",
        spool.bytes()
    );
    let newest = spool.next_seq() - 1;

    let seen = read_all(&mut reader).await;
    let notice = &seen[0];
    assert_eq!(notice["eventName"], crate::EVENTS_DROPPED_EVENT_NAME);
    let dropped = notice["dropped"].as_u64().unwrap();
    let kept = seen.len() as u64 - 1;
    assert_eq!(
        dropped + kept,
        newest,
        "every event is either kept or counted"
    );
    assert!(dropped > 0);
    assert!(notice["eventId"].as_str().unwrap().contains("-dropped-"));
    // The last events survive.
    assert_eq!(messages(&seen).last().unwrap(), "r29 9");

    // Reported once: a second pass has nothing.
    assert!(read_all(&mut reader).await.is_empty());
}

#[tokio::test]
async fn drop_notice_survives_a_restart_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let first_id;
    {
        let spool = Spool::open(dir.path(), 1, identity()).unwrap();
        let mut reader = spool.reader("sink").unwrap();
        append_for_test(&spool, &events(10, "a")).unwrap();
        read_all(&mut reader).await;
        for _ in 0..30 {
            append_for_test(&spool, &events(10, "b")).unwrap();
        }
        let (_stop_tx, mut stop) = watch::channel(true);
        let batch = reader
            .next_batch(5, 4096, &mut stop)
            .await
            .unwrap()
            .unwrap();
        first_id = batch.records[0].json.clone();
        // Not delivered: no commit.
    }
    let spool = Spool::open(dir.path(), 1, identity()).unwrap();
    let mut reader = spool.reader("sink").unwrap();
    let (_stop_tx, mut stop) = watch::channel(true);
    let batch = reader
        .next_batch(5, 4096, &mut stop)
        .await
        .unwrap()
        .unwrap();
    let again: Value = serde_json::from_str(&batch.records[0].json).unwrap();
    let before: Value = serde_json::from_str(&first_id).unwrap();
    assert_eq!(again["eventId"], before["eventId"]);
    assert_eq!(again["dropped"], before["dropped"]);
}

#[tokio::test]
async fn delivered_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 64 * 1024, identity()).unwrap();
    let mut a = spool.reader("a").unwrap();
    let mut b = spool.reader("b").unwrap();
    for round in 0..20 {
        append_for_test(&spool, &events(10, &format!("r{round}"))).unwrap();
    }
    let full = spool.bytes();
    read_all(&mut a).await;
    assert_eq!(spool.bytes(), full, "b still needs every segment");
    read_all(&mut b).await;
    assert!(
        spool.bytes() < full / 2,
        "{} of {full} bytes left",
        spool.bytes()
    );
}

#[tokio::test]
async fn waiting_reader_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
    let mut reader = spool.reader("sink").unwrap();
    let (_stop_tx, mut stop) = watch::channel(false);
    let writer_spool = spool.clone();
    let append = tokio::task::spawn_blocking(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        append_for_test(&writer_spool, &events(1, "late")).unwrap();
    });
    let batch = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        reader.next_batch(10, 4096, &mut stop),
    )
    .await
    .expect("the append wakes the reader")
    .unwrap()
    .unwrap();
    assert_eq!(batch.records.len(), 1);
    append.await.unwrap();
}

#[tokio::test]
async fn failed_write_leaves_only_whole_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
        spool.reader("sink").unwrap();
        append_for_test(&spool, &events(5, "before")).unwrap();
        let active = spool
            .shared
            .lock_state()
            .segments
            .back()
            .unwrap()
            .path
            .clone();
        // What a write that failed halfway leaves: one whole line and a cut one.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&active)
            .unwrap();
        file.write_all(b"{\"eventId\":\"lost\"}\n{\"eventId\":\"cut")
            .unwrap();
        drop(file);

        let mut writer = Writer::for_test(&spool);
        writer.recover_from_failed_write();
        writer.append(&events(2, "after")).unwrap();
    }
    let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
    assert_eq!(spool.next_seq(), 8);
    let mut reader = spool.reader("sink").unwrap();
    let seen = read_all(&mut reader).await;
    let ids: Vec<&str> = seen
        .iter()
        .map(|v| v["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(messages(&seen).len(), 7, "{ids:?}");
    assert!(!ids.contains(&"lost"), "{ids:?}");
    assert_eq!(ids[6], format!("{}-7", spool.id()));
}

#[tokio::test]
async fn new_sink_starts_after_spooled_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
        let _old = spool.reader("old").unwrap();
        append_for_test(&spool, &events(4, "before")).unwrap();
        let mut added = spool.reader("added").unwrap();
        append_for_test(&spool, &events(2, "after")).unwrap();
        assert_eq!(
            messages(&read_all(&mut added).await),
            ["after 0", "after 1"]
        );
        // Opened but never delivered: the position is saved all the same.
        let _waiting = spool.reader("waiting").unwrap();
    }
    let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
    append_for_test(&spool, &events(1, "restarted")).unwrap();
    let mut waiting = spool.reader("waiting").unwrap();
    assert_eq!(messages(&read_all(&mut waiting).await), ["restarted 0"]);
    let mut old = spool.reader("old").unwrap();
    assert_eq!(read_all(&mut old).await.len(), 7);
}

/// Returns the segment files in order.
fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    paths
}

/// Fills a spool of small segments with `count` events for one sink,
/// closes it, damages it with `damage`, reopens it and reads everything.
async fn read_after_damage(
    count: usize,
    damage: impl FnOnce(&std::path::Path),
) -> (Vec<Value>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), 64 * 1024, identity()).unwrap();
        spool.reader("sink").unwrap();
        for round in 0..count / 10 {
            append_for_test(&spool, &events(10, &format!("r{round}"))).unwrap();
        }
    }
    damage(dir.path());
    let spool = Spool::open(dir.path(), 64 * 1024, identity()).unwrap();
    let mut reader = spool.reader("sink").unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), read_all(&mut reader))
        .await
        .expect("reading a damaged spool finishes");
    drop(spool);
    (seen, dir)
}

fn dropped_count(seen: &[Value]) -> u64 {
    seen.iter()
        .filter(|v| v["eventName"] == crate::EVENTS_DROPPED_EVENT_NAME)
        .map(|v| v["dropped"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn damaged_lines_are_skipped_and_reported() {
    let (seen, _dir) = read_after_damage(100, |dir| {
        let first = &segments(dir)[0];
        let mut bytes = std::fs::read(first).unwrap();
        // One line with a byte that is not UTF-8, one that is not JSON.
        let at = bytes.iter().position(|&b| b == b'h').unwrap();
        bytes[at] = 0xff;
        let second_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[second_line] = b'[';
        std::fs::write(first, bytes).unwrap();
    })
    .await;
    assert_eq!(messages(&seen).len(), 98);
    assert_eq!(dropped_count(&seen), 2);
}

#[tokio::test]
async fn cut_older_segment_is_skipped_and_reported() {
    let (seen, _dir) = read_after_damage(200, |dir| {
        let all = segments(dir);
        assert!(all.len() >= 3, "{all:?}");
        let middle = &all[1];
        let len = std::fs::metadata(middle).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(middle)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
    })
    .await;
    let delivered = messages(&seen).len() as u64;
    assert!(delivered < 200);
    assert_eq!(delivered + dropped_count(&seen), 200);
}

#[tokio::test]
async fn deleted_middle_segment_is_reported() {
    let (seen, _dir) = read_after_damage(200, |dir| {
        std::fs::remove_file(&segments(dir)[1]).unwrap();
    })
    .await;
    let delivered = messages(&seen).len() as u64;
    assert!(delivered < 200);
    assert_eq!(delivered + dropped_count(&seen), 200);
}

#[tokio::test]
async fn cursor_inside_a_line_rewinds_to_segment_start() {
    let (seen, _dir) = read_after_damage(20, |dir| {
        let cursor = std::fs::read_dir(dir.join(CURSOR_DIR))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut saved: Value = serde_json::from_slice(&std::fs::read(&cursor).unwrap()).unwrap();
        saved["offset"] = 100.into();
        saved["seq"] = 5.into();
        std::fs::write(&cursor, saved.to_string()).unwrap();
    })
    .await;
    // Sent again from the start rather than from half a line.
    assert_eq!(messages(&seen).len(), 20);
    assert!(seen.iter().all(|v| v["eventId"].is_string()));
}

#[tokio::test]
async fn lost_sent_tail_gets_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let first_id;
    {
        let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
        let mut reader = spool.reader("sink").unwrap();
        append_for_test(&spool, &events(10, "sent")).unwrap();
        read_all(&mut reader).await;
        first_id = spool.id().to_owned();
    }
    // A power cut loses the last five lines, which the sink had sent.
    let segment = &segments(dir.path())[0];
    let text = std::fs::read_to_string(segment).unwrap();
    let kept: Vec<&str> = text.lines().take(5).collect();
    std::fs::write(segment, format!("{}\n", kept.join("\n"))).unwrap();

    let spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES, identity()).unwrap();
    assert_eq!(spool.next_seq(), 6);
    assert_ne!(spool.id(), first_id, "event IDs would repeat");
    let mut reader = spool.reader("sink").unwrap();
    append_for_test(&spool, &events(1, "new")).unwrap();
    let seen = read_all(&mut reader).await;
    let new = seen.iter().find(|v| v["message"] == "new 0").unwrap();
    assert_eq!(new["eventId"], format!("{}-6", spool.id()));
}
