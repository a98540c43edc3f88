//! Status records and control commands, exchanged through files in a per-user runtime directory.
//!
//! - `<dir>/<pid>.json`: the status of a running process, rewritten atomically (temporary file +
//!   rename) at every watchdog sample and removed when the process ends. A record whose process is
//!   gone (crashed, killed) is *stale*: [`read_records`] marks it.
//! - `<dir>/<pid>.cmd.<unique>`: one control command (`empty_cache`, `stop`) for process `pid`,
//!   written atomically by [`send_command`]; the process's watchdog takes (reads and deletes) them
//!   at every sample.
//!
//! The directory is `$XLSTM_RUNTIME_DIR` when set, else `$XDG_RUNTIME_DIR/xlstm`, else
//! `<temp dir>/xlstm-<uid>` (`xlstm-<user>` where there are no uids).
//!
//! Whoever can write the directory can stop a run or make `xltop` act on a forged record, so it
//! must be private: owned by the user and not writable by group or others ([`use_runtime_dir`],
//! [`check_runtime_dir`]). Records and commands are read only from regular files owned by the
//! user, of bounded size, opened without following links and without blocking
//! ([`crate::files::read_regular`]); anything else is ignored.
use super::sys::{own_identity, pid_alive, process_identity, ProcessIdentity};
use crate::error::{Error, Result};
use crate::files::{read_regular, ReadRules};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What a running process publishes. Sizes are bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusRecord {
    pub pid: u32,
    /// generate, score, bench.
    pub command: String,
    pub model: String,
    /// The weight format (`f16`, `q4`, ...), once the model is loaded.
    pub dtype: String,
    /// GPU bytes the weights take (live buffers of the weights category).
    pub weight_bytes: u64,
    pub adapter: String,
    pub backend: String,
    /// starting, loading, prefill, decode, writing, stopping, or a bench step.
    pub phase: String,
    /// Tokens produced so far.
    pub tokens: u64,
    pub total_tokens: Option<u64>,
    /// Fraction done, 0..=1, when known.
    pub progress: Option<f64>,
    /// Tokens per second over the last two seconds.
    pub tok_per_s: f64,
    pub rss_bytes: u64,
    pub sys_avail_bytes: u64,
    pub sys_total_bytes: u64,
    pub gpu_live_bytes: u64,
    pub gpu_pooled_bytes: u64,
    pub gpu_peak_bytes: u64,
    /// The watchdog's limits (absent when XLSTM_MEM_WATCHDOG=0).
    pub soft_limit_bytes: Option<u64>,
    pub hard_limit_bytes: Option<u64>,
    pub started_unix: f64,
    pub updated_unix: f64,
    pub poll_ms: u64,
    /// Control commands handled so far, and the last one.
    pub commands_handled: u64,
    pub last_command: Option<String>,
    /// Who wrote the record ([`write_record`] fills it in for this process): `xltop` signals the
    /// pid only while the live process still has this identity.
    pub identity: Option<ProcessIdentity>,
    /// Set by readers: the process is gone, or the record has not been refreshed for long.
    pub stale: bool,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The runtime directory (see the module docs). Not created here.
pub fn runtime_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("XLSTM_RUNTIME_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = var("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("xlstm");
    }
    std::env::temp_dir().join(format!("xlstm-{}", user_tag()))
}

/// Names the user in the fallback directory: the uid on Unix (a user name can be chosen freely
/// through the environment), else the sanitised user name.
fn user_tag() -> String {
    #[cfg(unix)]
    {
        crate::files::current_uid().to_string()
    }
    #[cfg(not(unix))]
    {
        let user = ["USERNAME", "USER", "LOGNAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "user".into());
        user.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// Creates the directory (mode 0700, parents as needed) if it does not exist, then checks that it
/// is private: a directory, not a symbolic link, owned by the user, not writable by group or
/// others. The error says which check failed; a run then goes on without telemetry.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    crate::files::ensure_private_dir(dir).map_err(std::io::Error::other)
}

/// Checks a directory a reader (`xltop`) is about to read or act on: absent is fine (no run has
/// published anything), otherwise it must pass the checks of [`ensure_dir`].
pub fn check_runtime_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => crate::files::check_private_dir(dir).map_err(|e| Error::Input(format!("unsafe runtime directory: {e}"))),
    }
}

/// Largest status record accepted (a real one is about 1 KiB).
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// Largest command file accepted (a real one is one short line).
pub const MAX_COMMAND_BYTES: u64 = 4096;

/// The status file of `pid`.
pub fn record_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.json"))
}

/// Publishes a record (atomically).
pub fn write_record(dir: &Path, rec: &StatusRecord) -> std::io::Result<()> {
    let mut rec = std::borrow::Cow::Borrowed(rec);
    if rec.identity.is_none() && rec.pid == std::process::id() {
        rec.to_mut().identity = own_identity();
    }
    let json = serde_json::to_vec_pretty(&*rec).map_err(std::io::Error::other)?;
    crate::files::write_atomic(&record_path(dir, rec.pid), &json, crate::files::Visibility::Private)
        .map_err(std::io::Error::other)
}

/// Removes the record of `pid` and any commands left for it.
pub fn remove_record(dir: &Path, pid: u32) {
    let _ = std::fs::remove_file(record_path(dir, pid));
    for p in command_files(dir, pid) {
        let _ = std::fs::remove_file(p);
    }
}

/// Whether a record is stale: its process is gone, its pid now belongs to another process (the
/// live process's identity differs from the record's), or it has not been refreshed for ten
/// seconds or twenty sampling periods, whichever is longer.
pub fn is_stale(rec: &StatusRecord, now_unix: f64) -> bool {
    let max_age = (rec.poll_ms as f64 * 20.0 / 1000.0).max(10.0);
    if !pid_alive(rec.pid) || now_unix - rec.updated_unix > max_age {
        return true;
    }
    let reused = |claimed: &ProcessIdentity| process_identity(rec.pid).is_some_and(|live| &live != claimed);
    rec.identity.as_ref().is_some_and(reused)
}

/// Reads one record file, which must be a regular file owned by the user and at most
/// [`MAX_RECORD_BYTES`]. The error is one line.
pub fn read_record(path: &Path) -> Result<StatusRecord> {
    let rules = ReadRules {
        max_bytes: MAX_RECORD_BYTES,
        same_owner: true,
    };
    let bytes = read_regular(path, rules).map_err(|e| refused(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Input(format!("{}: not a status record: {e}", path.display())))
}

/// Why [`read_regular`] refused a file, as one line naming it.
fn refused(path: &Path, e: std::io::Error) -> Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Error::Input(format!("{} is a symbolic link", path.display()));
    }
    if e.kind() == std::io::ErrorKind::InvalidData {
        // read_regular's own refusals already name the file.
        return Error::Input(e.to_string());
    }
    Error::io(path, e)
}

/// Every record in `dir`, sorted by pid, with `stale` set. A missing directory reads as empty;
/// files that are not valid records (see [`read_record`]) are skipped.
pub fn read_records(dir: &Path) -> Vec<StatusRecord> {
    let now = unix_now();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_suffix(".json").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(mut rec) = read_record(&e.path()) else {
            continue;
        };
        rec.pid = pid;
        rec.stale = is_stale(&rec, now);
        out.push(rec);
    }
    out.sort_by_key(|r| r.pid);
    out
}

/// The control commands a process accepts.
pub const COMMANDS: [&str; 2] = ["empty_cache", "stop"];

/// Sends a control command to process `pid` (which must have a record in `dir`).
pub fn send_command(dir: &Path, pid: u32, command: &str) -> Result<()> {
    if !COMMANDS.contains(&command) {
        return Err(Error::Input(format!(
            "unknown command `{command}` (one of {})",
            COMMANDS.join(", ")
        )));
    }
    check_runtime_dir(dir)?;
    let is_record = std::fs::symlink_metadata(record_path(dir, pid)).is_ok_and(|m| m.is_file());
    if !is_record {
        return Err(Error::Input(format!("no xlstm process {pid} in {}", dir.display())));
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{pid}.cmd.{nanos:024}.{}.{seq}", std::process::id()));
    crate::files::write_atomic(
        &path,
        format!("{command}\n").as_bytes(),
        crate::files::Visibility::Private,
    )
}

fn command_files(dir: &Path, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("{pid}.cmd.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Reads one command file, which must be a regular file owned by the user, at most
/// [`MAX_COMMAND_BYTES`] of UTF-8: its non-empty lines, trimmed. The error is one line.
pub fn read_command_file(path: &Path) -> Result<Vec<String>> {
    let rules = ReadRules {
        max_bytes: MAX_COMMAND_BYTES,
        same_owner: true,
    };
    let bytes = read_regular(path, rules).map_err(|e| refused(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Input(format!("{}: not UTF-8 text", path.display())))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Takes (reads and deletes) the commands waiting for `pid`, oldest first. A file that fails the
/// checks of [`read_command_file`] is deleted unread, with a warning on stderr.
pub fn take_commands(dir: &Path, pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for p in command_files(dir, pid) {
        let commands = read_command_file(&p);
        let _ = std::fs::remove_file(&p);
        match commands {
            Ok(c) => out.extend(c),
            Err(e) => eprintln!("xlstm: warning: control command ignored: {e}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_commands_round_trip() {
        let dir = std::env::temp_dir().join(format!("xlstm-status-test-{}", std::process::id()));
        ensure_dir(&dir).unwrap();
        let me = std::process::id();
        let rec = StatusRecord {
            pid: me,
            command: "generate".into(),
            poll_ms: 200,
            updated_unix: unix_now(),
            ..Default::default()
        };
        write_record(&dir, &rec).unwrap();
        // A crashed process: a pid that cannot be alive.
        write_record(
            &dir,
            &StatusRecord {
                pid: u32::MAX - 1,
                updated_unix: unix_now(),
                ..rec.clone()
            },
        )
        .unwrap();
        let recs = read_records(&dir);
        assert_eq!(recs.len(), 2);
        assert!(!recs[0].stale && recs[0].command == "generate");
        assert_eq!(recs[0].identity, own_identity(), "a process's own record names it");
        assert_eq!(recs[1].identity, None, "nor is another pid's record stamped");
        assert!(recs[1].stale);
        send_command(&dir, me, "empty_cache").unwrap();
        send_command(&dir, me, "stop").unwrap();
        assert!(send_command(&dir, me, "explode").is_err());
        assert!(send_command(&dir, 1, "stop").is_err(), "no record for pid 1");
        assert_eq!(take_commands(&dir, me), vec!["empty_cache", "stop"]);
        assert!(take_commands(&dir, me).is_empty());
        remove_record(&dir, me);
        remove_record(&dir, u32::MAX - 1);
        assert!(read_records(&dir).is_empty());
        let _ = std::fs::remove_dir(&dir);
    }
}
