//! Commands to a watched process: `stop` (then SIGTERM after a grace period) and `empty_cache`,
//! sent only after checking that the pid still belongs to the run that wrote the record.

use crate::text::{mib, sanitize};
use crate::GRACE_RANGE;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xlstm_wgpu::telemetry::status::{check_runtime_dir, read_records, remove_record, send_command, StatusRecord};
use xlstm_wgpu::telemetry::sys::{pid_alive, process_identity, terminate, ProcessIdentity};

/// Sends commands and follows up on kills.
pub struct Control {
    dir: PathBuf,
    grace: Duration,
    /// Processes sent `stop`: the identity they had, and the time after which they get SIGTERM.
    pending: Vec<Pending>,
}

struct Pending {
    pid: u32,
    identity: ProcessIdentity,
    deadline: Instant,
}

/// Whether the process a record names is still the run that wrote it.
enum Verdict {
    /// The live process has the record's identity.
    Ours(ProcessIdentity),
    /// No process with that pid is running.
    Gone,
    /// A process with that pid runs, but it cannot be shown to be the record's run.
    NotOurs(String),
}

/// Compares the live process with the identity in its record: same user (ours), same start time,
/// same executable. A pid is reused by the system, and a record may be stale or forged.
fn verify(rec: &StatusRecord) -> Verdict {
    let pid = rec.pid;
    if !pid_alive(pid) {
        return Verdict::Gone;
    }
    let Some(claimed) = &rec.identity else {
        return Verdict::NotOurs("its record does not say which process wrote it".into());
    };
    let Some(live) = process_identity(pid) else {
        return if pid_alive(pid) {
            Verdict::NotOurs("the process cannot be inspected".into())
        } else {
            Verdict::Gone
        };
    };
    #[cfg(unix)]
    if live.uid != Some(xlstm_wgpu::files::current_uid()) {
        return Verdict::NotOurs(format!(
            "it belongs to uid {}, not to this user",
            live.uid.map_or("?".into(), |u| u.to_string())
        ));
    }
    if live.uid != claimed.uid {
        return Verdict::NotOurs("its user differs from the record's".into());
    }
    if live.start_time != claimed.start_time {
        return Verdict::NotOurs("it started at another time than the record's run (the pid was reused)".into());
    }
    if live.exe != claimed.exe {
        return Verdict::NotOurs(format!(
            "it runs {}, not the record's {}",
            sanitize(&live.exe),
            sanitize(&claimed.exe)
        ));
    }
    Verdict::Ours(live)
}

impl Control {
    /// `grace` is in [`GRACE_RANGE`] (checked when parsed).
    pub fn new(dir: &Path, grace: f64) -> Self {
        Control {
            dir: dir.to_path_buf(),
            grace: Duration::from_secs_f64(grace.clamp(*GRACE_RANGE.start(), *GRACE_RANGE.end())),
            pending: Vec::new(),
        }
    }

    fn record(&self, pid: u32) -> Result<StatusRecord, String> {
        check_runtime_dir(&self.dir).map_err(|e| e.to_string())?;
        read_records(&self.dir)
            .into_iter()
            .find(|r| r.pid == pid)
            .ok_or_else(|| format!("no xlstm process {pid} in {}", self.dir.display()))
    }

    /// Stops a process: a `stop` command (the run ends at its next safe point, exit code 4), then
    /// SIGTERM if it is still alive after the grace period.
    pub fn kill(&mut self, pid: u32) -> Result<String, String> {
        let rec = self.record(pid)?;
        let identity = match verify(&rec) {
            Verdict::Ours(identity) => identity,
            Verdict::Gone => {
                remove_record(&self.dir, pid);
                return Ok(format!("process {pid} is gone; removed its stale record"));
            }
            Verdict::NotOurs(why) => {
                return Err(format!(
                    "refusing to stop process {pid}: it is not the xlstm run of its record: {why}"
                ))
            }
        };
        send_command(&self.dir, pid, "stop").map_err(|e| e.to_string())?;
        self.pending.retain(|p| p.pid != pid);
        self.pending.push(Pending {
            pid,
            identity,
            deadline: Instant::now() + self.grace,
        });
        Ok(format!(
            "stop sent to {pid} ({} {})",
            sanitize(&rec.command),
            sanitize(&rec.phase)
        ))
    }

    pub fn empty_cache(&mut self, pid: u32) -> Result<String, String> {
        let rec = self.record(pid)?;
        if rec.stale {
            return Err(format!("process {pid} is not running (stale record)"));
        }
        send_command(&self.dir, pid, "empty_cache").map_err(|e| e.to_string())?;
        Ok(format!(
            "empty_cache sent to {pid} ({:.1} MiB pooled)",
            mib(rec.gpu_pooled_bytes)
        ))
    }

    /// Escalates kills whose grace period ran out; returns messages.
    pub fn tick(&mut self) -> Vec<String> {
        let now = Instant::now();
        let mut msgs = Vec::new();
        self.pending.retain(|p| {
            let pid = p.pid;
            let live = process_identity(pid);
            if live.is_none() && !pid_alive(pid) {
                msgs.push(format!("process {pid} stopped"));
                return false;
            }
            if now >= p.deadline {
                // The pid may have been reused during the grace period: signal only the same
                // process.
                if live.as_ref() != Some(&p.identity) {
                    msgs.push(format!(
                        "process {pid} is no longer the run that was sent stop; not signalling it"
                    ));
                    return false;
                }
                let sent = terminate(pid);
                msgs.push(if sent {
                    format!("process {pid} did not stop in time; sent SIGTERM")
                } else {
                    format!("process {pid} did not stop in time and could not be signalled")
                });
                return false;
            }
            true
        });
        msgs
    }
}
