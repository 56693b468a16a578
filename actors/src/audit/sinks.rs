//! File sinks under `LOG_DIR`, written by the AuditActor after commit, off the
//! request path: `audit.log` (one human-readable line per operation),
//! `error.log` (failed operations), `structured.jsonl` (every event as JSON)
//! and `security.jsonl` (security violations). Each can be switched off.
//!
//! Rotation is daily (UTC): at the first write of a new day, `audit.log`
//! becomes `audit.log.2026-11-23`, and rotated files older than the retention
//! are removed. The database is the record of truth; these files are a
//! convenience for operators and log shippers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use super::CommittedEvent;
use super::event::format_timestamp;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub dir: PathBuf,
    pub retention_days: u32,
    pub audit_log: bool,
    pub error_log: bool,
    pub structured: bool,
    pub security: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Audit,
    Error,
    Structured,
    Security,
}

impl Sink {
    const ALL: [Sink; 4] = [Sink::Audit, Sink::Error, Sink::Structured, Sink::Security];

    fn file_name(self) -> &'static str {
        match self {
            Sink::Audit => "audit.log",
            Sink::Error => "error.log",
            Sink::Structured => "structured.jsonl",
            Sink::Security => "security.jsonl",
        }
    }

    fn enabled(self, config: &SinkConfig) -> bool {
        match self {
            Sink::Audit => config.audit_log,
            Sink::Error => config.error_log,
            Sink::Structured => config.structured,
            Sink::Security => config.security,
        }
    }

    fn wants(self, event: &CommittedEvent) -> bool {
        match self {
            Sink::Audit | Sink::Structured => true,
            Sink::Error => !event.event.success,
            Sink::Security => event.event.security_violation,
        }
    }

    /// Writes `e`'s line, straight into `out` (no line buffer of its own).
    fn write_line(self, out: &mut impl Write, e: &CommittedEvent) -> io::Result<()> {
        match self {
            Sink::Structured | Sink::Security => serde_json::to_writer(&mut *out, e)?,
            Sink::Audit | Sink::Error => human_line(out, e)?,
        }
        out.write_all(b"\n")
    }
}

/// `2026-11-24T04:05:06.123456Z acme create_media_buy principal=p1 OK id=7 seq=3`
fn human_line(out: &mut impl Write, committed: &CommittedEvent) -> io::Result<()> {
    let e = &committed.event;
    write!(
        out,
        "{} {} {} principal={} {} id={} seq={}",
        format_timestamp(e.created_at),
        e.tenant_id.as_deref().unwrap_or("-"),
        e.operation,
        e.principal_id.as_deref().unwrap_or("-"),
        if e.success { "OK" } else { "FAILED" },
        committed.id,
        committed.seq,
    )?;
    if e.security_violation {
        out.write_all(b" SECURITY_VIOLATION")?;
    }
    if let Some(error) = &e.error {
        // One event, one line.
        out.write_all(b" error=")?;
        out.write_all(error.replace(['\n', '\r'], " ").as_bytes())?;
    }
    Ok(())
}

/// Each file's write buffer: a flush's lines in a few system calls.
const WRITE_BUFFER: usize = 256 * 1024;

#[derive(Debug)]
pub struct FileSinks {
    config: SinkConfig,
    /// The day the current files belong to.
    day: Option<NaiveDate>,
}

impl FileSinks {
    pub fn open(config: SinkConfig) -> io::Result<Self> {
        fs::create_dir_all(&config.dir)?;
        Ok(Self { config, day: None })
    }

    /// Appends the events' lines to every enabled sink that wants them,
    /// rotating first if the day changed since the last write.
    pub fn write(&mut self, events: &[CommittedEvent], now: DateTime<Utc>) -> io::Result<()> {
        let today = now.date_naive();
        if self.day != Some(today) {
            self.rotate(today)?;
        }
        for sink in Sink::ALL {
            if !sink.enabled(&self.config) {
                continue;
            }
            let mut out: Option<BufWriter<File>> = None;
            for event in events.iter().filter(|e| sink.wants(e)) {
                if out.is_none() {
                    out = Some(BufWriter::with_capacity(
                        WRITE_BUFFER,
                        OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(self.config.dir.join(sink.file_name()))?,
                    ));
                }
                if let Some(out) = out.as_mut() {
                    sink.write_line(out, event)?;
                }
            }
            if let Some(mut out) = out {
                out.flush()?;
            }
        }
        Ok(())
    }

    /// Renames files last written before `today` to `<name>.<their day>` and
    /// removes rotated files past the retention.
    fn rotate(&mut self, today: NaiveDate) -> io::Result<()> {
        for sink in Sink::ALL {
            let current = self.config.dir.join(sink.file_name());
            if let Some(day) = last_written(&current)?
                && day < today
            {
                let rotated = self.config.dir.join(format!("{}.{day}", sink.file_name()));
                fs::rename(&current, rotated)?;
            }
            self.prune(sink, today)?;
        }
        self.day = Some(today);
        Ok(())
    }

    fn prune(&self, sink: Sink, today: NaiveDate) -> io::Result<()> {
        let prefix = format!("{}.", sink.file_name());
        for entry in fs::read_dir(&self.config.dir)? {
            let path = entry?.path();
            let day = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|d| d.parse::<NaiveDate>().ok());
            if let Some(day) = day
                && (today - day).num_days() > i64::from(self.config.retention_days)
            {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}

/// The UTC day a file was last modified, if it exists.
fn last_written(path: &Path) -> io::Result<Option<NaiveDate>> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(DateTime::<Utc>::from(meta.modified()?).date_naive())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use chrono::TimeZone;

    fn committed(op: &str, success: bool, violation: bool) -> CommittedEvent {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 4, 0, 0).unwrap();
        let mut event = AuditEvent::new(op, at).with_tenant("acme");
        if !success {
            event = event.failed("boom\nsecond line");
        }
        event.security_violation = violation;
        CommittedEvent {
            id: 1,
            seq: 1,
            prev_hash: String::new(),
            hash: String::new(),
            event,
        }
    }

    fn config(dir: &Path) -> SinkConfig {
        SinkConfig {
            dir: dir.to_path_buf(),
            retention_days: 7,
            audit_log: true,
            error_log: true,
            structured: true,
            security: false,
        }
    }

    #[test]
    fn each_sink_gets_its_events_and_disabled_sinks_nothing() {
        let dir = std::env::temp_dir().join(format!("overseer-sinks-{}", uuid::Uuid::new_v4()));
        let mut sinks = FileSinks::open(config(&dir)).unwrap();
        let events = [
            committed("a", true, false),
            committed("b", false, false),
            committed("c", false, true),
        ];
        sinks.write(&events, Utc::now()).unwrap();
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert_eq!(read("audit.log").lines().count(), 3);
        assert_eq!(read("error.log").lines().count(), 2);
        assert!(read("error.log").contains("FAILED id=1 seq=1 error=boom second line"));
        assert_eq!(read("structured.jsonl").lines().count(), 3);
        assert!(!dir.join("security.jsonl").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_rotate_daily_and_old_ones_are_removed() {
        let dir = std::env::temp_dir().join(format!("overseer-sinks-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("audit.log.2026-01-01"), "old\n").unwrap();
        fs::write(dir.join("audit.log.2026-11-20"), "recent\n").unwrap();
        let mut sinks = FileSinks::open(config(&dir)).unwrap();
        // Written "today" (the file's mtime), then a write on a later day.
        sinks
            .write(&[committed("a", true, false)], Utc::now())
            .unwrap();
        let tomorrow = Utc::now() + chrono::Duration::days(1);
        sinks
            .write(&[committed("b", true, false)], tomorrow)
            .unwrap();
        let today = Utc::now().date_naive();
        assert!(dir.join(format!("audit.log.{today}")).exists());
        assert_eq!(
            fs::read_to_string(dir.join("audit.log"))
                .unwrap()
                .lines()
                .count(),
            1
        );
        assert!(!dir.join("audit.log.2026-01-01").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
