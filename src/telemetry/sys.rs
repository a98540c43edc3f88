//! Memory figures of this process and of the system, and a little process control: whether a
//! process lives, what identifies it beyond its (reusable) pid, and ending it.
//!
//! On Linux the figures come from procfs (`/proc/self/status` VmRSS, `/proc/meminfo`
//! MemAvailable/MemTotal, clamped to the cgroup v2 memory limit when one is set, as in a
//! container). Elsewhere, or when procfs is missing, the `sysinfo` crate supplies them.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One reading, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemSample {
    /// Resident set size of this process.
    pub rss: u64,
    /// Memory the system can still give out without swapping.
    pub sys_avail: u64,
    /// Memory of the system (or of the cgroup, when it is limited).
    pub sys_total: u64,
}

/// Reads [`MemSample`]s; keeps the portable reader's state between readings.
#[derive(Default)]
pub struct MemReader {
    fallback: Option<sysinfo::System>,
}

impl MemReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current figures. Missing figures read as 0.
    pub fn sample(&mut self) -> MemSample {
        if let (Some(rss), Some((avail, total))) = (proc_rss(), proc_meminfo()) {
            return MemSample {
                rss,
                sys_avail: avail,
                sys_total: total,
            };
        }
        self.sample_portable()
    }

    /// The figures through `sysinfo` (used where procfs is not available; public so tests can
    /// compare both).
    pub fn sample_portable(&mut self) -> MemSample {
        let sys = self.fallback.get_or_insert_with(sysinfo::System::new);
        sys.refresh_memory();
        let mut s = MemSample {
            rss: 0,
            sys_avail: sys.available_memory(),
            sys_total: sys.total_memory(),
        };
        if let Ok(pid) = sysinfo::get_current_pid() {
            sys.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                false,
                sysinfo::ProcessRefreshKind::nothing().with_memory(),
            );
            if let Some(p) = sys.process(pid) {
                s.rss = p.memory();
            }
        }
        s
    }
}

/// Total memory of the system (or cgroup), in bytes; 0 when unknown.
pub fn total_ram() -> u64 {
    MemReader::new().sample().sys_total
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let rest = line[key.len()..].trim_start_matches(':').trim();
    let num: u64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(num * 1024)
}

fn proc_rss() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&text, "VmRSS:")
}

/// (available, total) from /proc/meminfo, clamped to the cgroup v2 limit.
fn proc_meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = kib_field(&text, "MemTotal:")?;
    let avail = kib_field(&text, "MemAvailable:").or_else(|| kib_field(&text, "MemFree:"))?;
    Some(clamp_to_cgroup(avail, total))
}

fn cgroup_dir() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn clamp_to_cgroup(avail: u64, total: u64) -> (u64, u64) {
    let dirs = [cgroup_dir(), Some(PathBuf::from("/sys/fs/cgroup"))];
    for dir in dirs.into_iter().flatten() {
        if let Some(limit) = read_u64(&dir.join("memory.max")) {
            if limit < total {
                let used = read_u64(&dir.join("memory.current")).unwrap_or(0);
                return (avail.min(limit.saturating_sub(used)), limit);
            }
            return (avail, total);
        }
    }
    (avail, total)
}

/// Whether a process with this id exists and has not exited (a zombie counts as exited).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let proc_dir = Path::new("/proc");
    if proc_dir.join("self").exists() {
        let Ok(stat) = std::fs::read_to_string(proc_dir.join(pid.to_string()).join("stat")) else {
            return false;
        };
        // The state is the first field after the parenthesised command name.
        let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next());
        return !matches!(state, Some("Z") | Some("X"));
    }
    let mut sys = sysinfo::System::new();
    let p = sysinfo::Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[p]),
        true,
        sysinfo::ProcessRefreshKind::nothing(),
    );
    sys.process(p).is_some_and(|pr| {
        !matches!(
            pr.status(),
            sysinfo::ProcessStatus::Zombie | sysinfo::ProcessStatus::Dead
        )
    })
}

/// What identifies a running process beyond its pid, which the system reuses: who runs it, when it
/// started and which program it runs. A status record carries its writer's identity so that
/// `xltop` signals a process only when the live process with that pid still has it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// Effective user id (absent where the platform has no numeric one, e.g. Windows).
    pub uid: Option<u32>,
    /// Start time: clock ticks since boot on Linux (`/proc/<pid>/stat` field 22), seconds since
    /// the Unix epoch elsewhere.
    pub start_time: u64,
    /// Path of the executable.
    pub exe: String,
}

/// The identity of this process, read once.
pub fn own_identity() -> Option<ProcessIdentity> {
    static OWN: std::sync::OnceLock<Option<ProcessIdentity>> = std::sync::OnceLock::new();
    OWN.get_or_init(|| process_identity(std::process::id())).clone()
}

/// The identity of a live process; `None` when it is gone, a zombie, or cannot be inspected (a
/// process of another user, where the system hides its executable).
pub fn process_identity(pid: u32) -> Option<ProcessIdentity> {
    if pid == 0 || !pid_alive(pid) {
        return None;
    }
    #[cfg(target_os = "linux")]
    if Path::new("/proc/self").exists() {
        return proc_identity(pid);
    }
    portable_identity(pid)
}

#[cfg(target_os = "linux")]
fn proc_identity(pid: u32) -> Option<ProcessIdentity> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (the state); the start time is
    // field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    let start_time = rest.split_whitespace().nth(22 - 3)?.parse().ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    // "Uid: real effective saved fs"
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let exe = std::fs::read_link(dir.join("exe")).ok()?;
    Some(ProcessIdentity {
        uid: Some(uid),
        start_time,
        exe: exe_name(&exe),
    })
}

fn portable_identity(pid: u32) -> Option<ProcessIdentity> {
    let mut sys = sysinfo::System::new();
    let p = sysinfo::Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[p]),
        true,
        sysinfo::ProcessRefreshKind::nothing()
            .with_exe(sysinfo::UpdateKind::Always)
            .with_user(sysinfo::UpdateKind::Always),
    );
    let pr = sys.process(p)?;
    #[cfg(unix)]
    let uid = Some(**pr.effective_user_id().or(pr.user_id())?);
    #[cfg(not(unix))]
    let uid = None;
    Some(ProcessIdentity {
        uid,
        start_time: pr.start_time(),
        exe: exe_name(pr.exe()?),
    })
}

/// The executable's path as a string; Linux appends " (deleted)" once the file is replaced (a
/// rebuild while the run goes on), which does not make it another program.
fn exe_name(exe: &Path) -> String {
    let s = exe.to_string_lossy();
    s.strip_suffix(" (deleted)").unwrap_or(&s).to_string()
}

/// Asks the operating system to end a process (SIGTERM on Unix, TerminateProcess on Windows).
/// Returns whether the signal was delivered.
pub fn terminate(pid: u32) -> bool {
    let mut sys = sysinfo::System::new();
    let p = sysinfo::Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::Some(&[p]),
        true,
        sysinfo::ProcessRefreshKind::nothing(),
    );
    match sys.process(p) {
        Some(pr) => pr.kill_with(sysinfo::Signal::Term).unwrap_or_else(|| pr.kill()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_parse() {
        let t = "Name:\tx\nVmRSS:\t  2048 kB\nVmHWM: 1 kB\n";
        assert_eq!(kib_field(t, "VmRSS:"), Some(2048 * 1024));
        assert_eq!(kib_field(t, "VmSwap:"), None);
    }

    #[test]
    fn readings_are_plausible() {
        let mut r = MemReader::new();
        let s = r.sample();
        assert!(s.rss > 0 && s.sys_total > 0 && s.sys_avail <= s.sys_total, "{s:?}");
        let p = r.sample_portable();
        assert!(p.rss > 0 && p.sys_total > 0, "{p:?}");
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
    }

    #[test]
    fn own_identity_matches_the_live_process_and_gone_ones_have_none() {
        let own = own_identity().expect("this process can be inspected");
        assert_eq!(process_identity(std::process::id()).as_ref(), Some(&own));
        assert!(own.start_time > 0 && !own.exe.is_empty(), "{own:?}");
        #[cfg(unix)]
        assert_eq!(own.uid, Some(crate::files::current_uid()));
        let mut child = std::process::Command::new(&own.exe)
            .arg("--list")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(process_identity(pid), None, "a reaped process has no identity");
        assert_eq!(process_identity(u32::MAX - 1), None);
    }
}
