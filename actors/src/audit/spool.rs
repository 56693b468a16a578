//! The spool: batches the database could not take, on local disk until it can.
//!
//! One file per batch, named by a counter so the names sort in write order:
//! written to `NNNN.tmp`, fsync'd, renamed to `NNNN.jsonl` and the directory
//! fsync'd, so a file with the final name is complete and durable. A `.tmp`
//! left by a crash was never acknowledged and is removed at open. Files are
//! replayed oldest first and removed once their events are committed; replay
//! is idempotent on `log_id`, so a crash between commit and removal stores
//! nothing twice.
//!
//! A line is the event's JSON plus, for an event a client sent, its
//! `ingest_digest`, which the replay needs to tell a retry from a reuse of
//! the `log_id` (and which the event's own JSON, as served, leaves out).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::AuditEvent;

/// One line of a spool file, as written.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    event: &'a AuditEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    ingest_digest: Option<&'a str>,
}

/// One line of a spool file, as read (files written before the digest
/// existed have none).
#[derive(Deserialize)]
struct ReadLine {
    #[serde(flatten)]
    event: AuditEvent,
    #[serde(default)]
    ingest_digest: Option<String>,
}

fn write_line(out: &mut impl Write, event: &AuditEvent) -> io::Result<()> {
    let line = Line {
        event,
        ingest_digest: event.ingest_digest.as_deref(),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

const EXTENSION: &str = "jsonl";

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    next: u64,
    /// Events in the spool's files.
    events: usize,
}

impl Spool {
    /// Opens the spool directory (created at the first append) and counts
    /// what a previous run left.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            next: 0,
            events: 0,
        };
        if !dir.exists() {
            return Ok(spool);
        }
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("tmp") => fs::remove_file(&path)?,
                Some(EXTENSION) => {
                    if let Some(n) = counter_of(&path) {
                        spool.next = spool.next.max(n + 1);
                    }
                    spool.events += count_lines(&path)?;
                }
                _ => {}
            }
        }
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn events(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Writes `events` as one durable file; returns once it is fsync'd.
    pub fn append(&mut self, events: &[AuditEvent]) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let name = format!("{:020}", self.next);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let done = self.dir.join(format!("{name}.{EXTENSION}"));
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut out = BufWriter::new(file);
        for event in events {
            write_line(&mut out, event)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, &done)?;
        sync_dir(&self.dir)?;
        self.next += 1;
        self.events += events.len();
        Ok(())
    }

    /// The oldest file and its events, if any.
    pub fn oldest(&self) -> io::Result<Option<(PathBuf, Vec<AuditEvent>)>> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut files: Vec<(u64, PathBuf)> = fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter_map(|path| counter_of(&path).map(|n| (n, path)))
            .collect();
        files.sort_unstable();
        let Some((_, path)) = files.into_iter().next() else {
            return Ok(None);
        };
        let events = read_events(&path)?;
        Ok(Some((path, events)))
    }

    /// Removes a replayed file.
    pub fn remove(&mut self, path: &Path, events: usize) -> io::Result<()> {
        fs::remove_file(path)?;
        sync_dir(&self.dir)?;
        self.events = self.events.saturating_sub(events);
        Ok(())
    }

    /// Moves events the database refused for a reason other than availability
    /// to `rejected/`, where an operator can look at them; returns the file.
    pub fn reject(&mut self, events: &[AuditEvent]) -> io::Result<PathBuf> {
        let dir = self.dir.join("rejected");
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{:020}.{EXTENSION}", self.next));
        self.next += 1;
        let mut out = BufWriter::new(File::create(&path)?);
        for event in events {
            write_line(&mut out, event)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        sync_dir(&dir)?;
        Ok(path)
    }
}

fn counter_of(path: &Path) -> Option<u64> {
    if path.extension()?.to_str()? != EXTENSION {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

fn count_lines(path: &Path) -> io::Result<usize> {
    let mut n = 0;
    for line in BufReader::new(File::open(path)?).lines() {
        if !line?.trim().is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

fn read_events(path: &Path) -> io::Result<Vec<AuditEvent>> {
    let mut events = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let ReadLine {
            mut event,
            ingest_digest,
        } = serde_json::from_str(&line).map_err(io::Error::other)?;
        event.ingest_digest = ingest_digest;
        events.push(event);
    }
    Ok(events)
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn events(n: usize) -> Vec<AuditEvent> {
        (0..n)
            .map(|i| {
                let mut event = AuditEvent::new(format!("op_{i}"), Utc::now());
                // A client's event keeps its digest through the spool.
                if i % 2 == 0 {
                    event.ingest_digest = Some(format!("digest-{i}"));
                }
                event
            })
            .collect()
    }

    #[test]
    fn files_are_replayed_in_write_order_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("overseer-spool-{}", uuid::Uuid::new_v4()));
        let first = events(3);
        let second = events(2);
        {
            let mut spool = Spool::open(&dir).unwrap();
            spool.append(&first).unwrap();
            spool.append(&second).unwrap();
            assert_eq!(spool.events(), 5);
        }
        // A crash mid-write leaves a .tmp: it was never acknowledged.
        fs::write(dir.join("00000000000000000009.tmp"), b"{partial").unwrap();

        let mut spool = Spool::open(&dir).unwrap();
        assert_eq!(spool.events(), 5);
        assert!(!dir.join("00000000000000000009.tmp").exists());
        let (path, got) = spool.oldest().unwrap().unwrap();
        assert_eq!(got, first);
        spool.remove(&path, got.len()).unwrap();
        let (path, got) = spool.oldest().unwrap().unwrap();
        assert_eq!(got, second);
        spool.remove(&path, got.len()).unwrap();
        assert!(spool.oldest().unwrap().is_none());
        assert!(spool.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
