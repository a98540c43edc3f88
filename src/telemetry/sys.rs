//! Memory figures of this process and of the system, and a little process control.
//!
//! On Linux the figures come from procfs (`/proc/self/status` VmRSS, `/proc/meminfo`
//! MemAvailable/MemTotal, clamped to the cgroup v2 memory limit when one is set, as in a
//! container). Elsewhere, or when procfs is missing, the `sysinfo` crate supplies them.

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
}
