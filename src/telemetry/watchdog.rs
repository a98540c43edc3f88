//! The watchdog thread: samples memory every poll period, applies the soft and hard limits,
//! writes the CSV log, publishes the status record and takes control commands.

use super::config::MemConfig;
use super::estimate::Estimate;
use super::signals;
use super::status::{self, StatusRecord};
use super::sys::{MemReader, MemSample};
use crate::error::{Error, Result};
use crate::gpu::{BufferPool, Category, Gpu, PoolStats};
use crate::model::Model;
use crate::session::{set_global_stop_hook, StopHook};
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MIB: f64 = (1u64 << 20) as f64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a run is doing, updated by the command (phase changes, each token) and read by the
/// watchdog for the status record and the CSV log.
#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<ProgressState>,
}

/// A snapshot of [`Progress`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgressState {
    pub phase: String,
    pub tokens: u64,
    pub total: Option<u64>,
    /// Fraction done when it is not tokens / total (e.g. bench steps).
    pub fraction: Option<f64>,
}

impl Progress {
    pub fn set_phase(&self, phase: &str) {
        let mut s = lock(&self.state);
        if s.phase != phase {
            s.phase = phase.to_string();
        }
    }
    pub fn set_total(&self, total: Option<u64>) {
        lock(&self.state).total = total;
    }
    pub fn add_tokens(&self, n: u64) {
        lock(&self.state).tokens += n;
    }
    pub fn set_fraction(&self, f: Option<f64>) {
        lock(&self.state).fraction = f;
    }
    pub fn snapshot(&self) -> ProgressState {
        lock(&self.state).clone()
    }
}

#[derive(Clone, Debug, Default)]
struct Info {
    model: String,
    dtype: String,
    adapter: String,
    backend: String,
}

enum Stop {
    Memory(String),
    Requested(String),
}

struct Shared {
    cfg: MemConfig,
    command: String,
    pid: u32,
    info: Mutex<Info>,
    progress: Arc<Progress>,
    pool: Mutex<Option<BufferPool>>,
    stop: Mutex<Option<Stop>>,
    stopping: AtomicBool,
    above_soft: AtomicBool,
    quit: Mutex<bool>,
    wake: Condvar,
    t0: Instant,
    started_unix: f64,
    total_ram: u64,
    /// Where the status record goes; `None` when telemetry is off.
    dir: Option<PathBuf>,
    /// SIGINT/SIGTERM stop this run at its next safe point (see [`super::signals`]).
    interruptible: bool,
    /// Held while the record is written or removed, so an immediate exit on a second signal
    /// removes it only between writes (and no write follows).
    record_lock: Mutex<()>,
}

impl Shared {
    fn check(&self) -> Result<()> {
        let signal = self.signal();
        if !self.stopping.load(Ordering::Acquire) && signal.is_none() {
            return Ok(());
        }
        let p = self.progress.snapshot();
        let at = format!("in phase {} after {} tokens", p.phase, p.tokens);
        if let Some(sig) = signal {
            return Err(signals::interrupted_error(sig, &at));
        }
        match &*lock(&self.stop) {
            Some(Stop::Memory(m)) => Err(Error::MemoryLimit(format!("{m}; stopped at a safe point {at}"))),
            Some(Stop::Requested(m)) => Err(Error::Stopped(format!("{m}; stopped at a safe point {at}"))),
            None => Ok(()),
        }
    }

    /// The signal that interrupted this run, if it is interruptible and one came.
    fn signal(&self) -> Option<i32> {
        self.interruptible.then(signals::received).flatten()
    }

    fn request_stop(&self, s: Stop) {
        let mut g = lock(&self.stop);
        if g.is_none() {
            *g = Some(s);
            self.stopping.store(true, Ordering::Release);
        }
    }

    /// Above the soft limit: the soft actions (a warning once per crossing; emptying the cache
    /// at every sample). At the hard limit: empty the cache and request the stop.
    fn apply_limits(&self, mem: &MemSample, pool: &PoolStats) {
        if !self.cfg.enabled {
            return;
        }
        let used = usage(mem, pool);
        let soft = self.cfg.soft.bytes(self.total_ram);
        if used >= soft {
            let was_above = self.above_soft.swap(true, Ordering::AcqRel);
            if !was_above && self.cfg.warn {
                eprintln!(
                    "xlstm: warning: memory use {:.1} MiB is above the soft limit {:.1} MiB ({}){}",
                    used as f64 / MIB,
                    soft as f64 / MIB,
                    self.cfg.soft_from,
                    if self.cfg.empty_cache {
                        "; emptying the GPU buffer cache"
                    } else {
                        ""
                    }
                );
            }
            if self.cfg.empty_cache && pool.pooled > 0 {
                self.trim();
            }
        } else if used < soft - soft / 20 {
            self.above_soft.store(false, Ordering::Release);
        }
        let hard = self.cfg.hard.bytes(self.total_ram);
        if used >= hard && !self.stopping.load(Ordering::Acquire) {
            self.trim();
            self.request_stop(Stop::Memory(format!(
                "memory use {:.1} MiB (RSS {:.1} MiB, GPU pool {:.1} MiB) reached the hard limit {:.1} MiB ({})",
                used as f64 / MIB,
                mem.rss as f64 / MIB,
                (pool.live_total() + pool.pooled) as f64 / MIB,
                hard as f64 / MIB,
                self.cfg.hard_from
            )));
        }
    }

    fn trim(&self) -> u64 {
        lock(&self.pool).as_ref().map_or(0, BufferPool::trim)
    }

    fn pool_stats(&self) -> PoolStats {
        lock(&self.pool).as_ref().map(BufferPool::stats).unwrap_or_default()
    }

    fn limits(&self) -> (Option<u64>, Option<u64>) {
        if self.cfg.enabled {
            (
                Some(self.cfg.soft.bytes(self.total_ram)),
                Some(self.cfg.hard.bytes(self.total_ram)),
            )
        } else {
            (None, None)
        }
    }
}

/// The process's memory watchdog and telemetry publisher. Starting one installs the process-wide
/// stop hook checked by every [`Session`](crate::Session) at its safe points; dropping it stops
/// the thread, writes the last CSV row and removes the status record.
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    hook: StopHook,
    /// Removes the status record if a second signal ends the process at once.
    _record_cleanup: Option<signals::ExitAction>,
}

/// Memory use as the limits see it: the larger of the process's resident memory and the GPU
/// pool's bytes (on unified-memory and software adapters the pool is part of RSS; on discrete
/// GPUs it is video memory).
pub fn usage(mem: &MemSample, pool: &PoolStats) -> u64 {
    mem.rss.max(pool.live_total() + pool.pooled)
}

impl Watchdog {
    /// Starts the watchdog of a `command` (generate, score, bench) on `model` (a path or a name).
    pub fn start(cfg: MemConfig, command: &str, model: &str) -> Result<Watchdog> {
        Self::start_with(cfg, command, model, false)
    }

    /// [`start`](Self::start), and make SIGINT/SIGTERM stop the run at its next safe point with
    /// an error (exit code 130/143) instead of killing it (see [`super::signals`]). While the
    /// watchdog lives, a second signal ends the process at once, after removing the status
    /// record and every temporary file registered with [`signals::remove_on_exit`].
    pub fn start_interruptible(cfg: MemConfig, command: &str, model: &str) -> Result<Watchdog> {
        signals::install()?;
        Self::start_with(cfg, command, model, true)
    }

    fn start_with(mut cfg: MemConfig, command: &str, model: &str, interruptible: bool) -> Result<Watchdog> {
        let mut reader = MemReader::new();
        let first = reader.sample();
        cfg.settle_limits(first.sys_total)?;
        // The CSV log is written as the run goes (readable while it lasts, kept if it dies), so
        // it is opened in place, refusing links, FIFOs, devices and directories.
        let log = match &cfg.log {
            Some(p) => {
                let mut f = crate::files::create_streamed(p, crate::files::Visibility::Shared)?;
                writeln!(
                    f,
                    "time,rss_mb,sys_avail_mb,gpu_live_mb,gpu_pooled_mb,gpu_peak_mb,phase,tokens"
                )
                .map_err(|e| Error::io(p, e))?;
                Some(std::io::BufWriter::new(f))
            }
            None => None,
        };
        let dir = if cfg.telemetry {
            let d = status::runtime_dir();
            match status::ensure_dir(&d) {
                Ok(()) => Some(d),
                Err(e) => {
                    eprintln!(
                        "xlstm: warning: telemetry off: cannot use {}: {e} (xltop will not see this run)",
                        d.display()
                    );
                    None
                }
            }
        } else {
            None
        };
        let progress = Arc::new(Progress::default());
        progress.set_phase("starting");
        let shared = Arc::new(Shared {
            cfg,
            command: command.to_string(),
            pid: std::process::id(),
            info: Mutex::new(Info {
                model: model.to_string(),
                ..Default::default()
            }),
            progress,
            pool: Mutex::new(None),
            stop: Mutex::new(None),
            stopping: AtomicBool::new(false),
            above_soft: AtomicBool::new(false),
            quit: Mutex::new(false),
            wake: Condvar::new(),
            t0: Instant::now(),
            started_unix: status::unix_now(),
            total_ram: first.sys_total,
            dir: dir.clone(),
            interruptible,
            record_lock: Mutex::new(()),
        });
        let pid = shared.pid;
        let record_cleanup = match (&dir, interruptible) {
            (Some(d), true) => {
                let (d, s) = (d.clone(), shared.clone());
                Some(signals::on_exit(move || {
                    let guard = lock(&s.record_lock);
                    status::remove_record(&d, pid);
                    // The process exits next: keep the lock so that no new record is written.
                    std::mem::forget(guard);
                }))
            }
            _ => None,
        };
        if interruptible {
            signals::set_interruptible(true);
        }
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("xlstm-watchdog".into())
            .spawn(move || run(s, reader, log))
            .map_err(|e| Error::Input(format!("starting the memory watchdog: {e}")))?;
        let s = shared.clone();
        let hook: StopHook = Arc::new(move || s.check());
        set_global_stop_hook(Some(hook.clone()));
        Ok(Watchdog {
            shared,
            thread: Some(thread),
            hook,
            _record_cleanup: record_cleanup,
        })
    }

    /// The signal that interrupted this run, if it is interruptible and one came: the command
    /// stops at its next safe point (e.g. a token callback ends generation there).
    pub fn interrupted(&self) -> Option<i32> {
        self.shared.signal()
    }

    /// The progress the command updates.
    pub fn progress(&self) -> Arc<Progress> {
        self.shared.progress.clone()
    }

    /// A hook for [`Session::set_stop_hook`](crate::Session::set_stop_hook) (the watchdog also
    /// installs it process-wide).
    pub fn stop_hook(&self) -> StopHook {
        self.hook.clone()
    }

    /// `Err` once the hard limit was reached or a `stop` command arrived.
    pub fn check(&self) -> Result<()> {
        self.shared.check()
    }

    /// Samples memory now, on the caller's thread, applies the hard limit, then [`check`](Self::check)s.
    /// For the points where a run must not go on unseen (right after loading: a short run may end
    /// before the watchdog's next sample).
    pub fn check_now(&self) -> Result<()> {
        let mem = MemReader::new().sample();
        let pool = self.shared.pool_stats();
        self.shared.apply_limits(&mem, &pool);
        self.check()
    }

    /// Records the adapter.
    pub fn set_gpu(&self, gpu: &Gpu) {
        let mut i = lock(&self.shared.info);
        i.adapter = gpu.caps.adapter_name.clone();
        i.backend = gpu.caps.backend.clone();
    }

    /// Starts watching the model's buffer pool.
    pub fn attach(&self, model: &Model) {
        self.set_gpu(model.gpu());
        lock(&self.shared.info).dtype = model.dtype().name().to_string();
        *lock(&self.shared.pool) = Some(model.pool().clone());
    }

    /// The limits in bytes (soft, hard); `None` when the watchdog is off.
    pub fn limits(&self) -> (Option<u64>, Option<u64>) {
        self.shared.limits()
    }

    /// Refuses a run whose estimated footprint exceeds the hard limit (and warns above the soft
    /// one, when `warn` is a soft action). Call before loading the model.
    pub fn check_fits(&self, est: &Estimate) -> Result<()> {
        let (Some(soft), Some(hard)) = self.shared.limits() else {
            return Ok(());
        };
        let need = est.total();
        if need > hard {
            return Err(Error::MemoryLimit(format!(
                "the model does not fit: it needs about {} but the hard limit is {:.1} MiB ({}); \
                 raise --mem-hard-mb or --mem-hard-pct, or use a smaller model",
                est.describe(),
                hard as f64 / MIB,
                self.shared.cfg.hard_from
            )));
        }
        if need > soft && self.shared.cfg.warn {
            eprintln!(
                "xlstm: warning: the run needs about {:.1} MiB, above the soft memory limit {:.1} MiB ({})",
                need as f64 / MIB,
                soft as f64 / MIB,
                self.shared.cfg.soft_from
            );
        }
        Ok(())
    }

    /// Where the status record is published (`None` when telemetry is off).
    pub fn status_dir(&self) -> Option<&std::path::Path> {
        self.shared.dir.as_deref()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if self.shared.interruptible {
            // From now on a signal ends the process at once (as without a handler).
            signals::set_interruptible(false);
        }
        // Remove the process-wide hook only if it is still ours.
        let prev = set_global_stop_hook(None);
        if let Some(p) = prev {
            if !Arc::ptr_eq(&p, &self.hook) {
                set_global_stop_hook(Some(p));
            }
        }
        *lock(&self.shared.quit) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Tokens per second over a sliding window.
#[derive(Default)]
struct Rate {
    window: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn push(&mut self, t: Instant, tokens: u64) -> f64 {
        if self.window.back().is_some_and(|&(_, n)| tokens < n) {
            self.window.clear();
        }
        self.window.push_back((t, tokens));
        while self.window.len() > 2 && t.duration_since(self.window[0].0) > Duration::from_secs(2) {
            self.window.pop_front();
        }
        let (t0, n0) = self.window[0];
        let dt = t.duration_since(t0).as_secs_f64();
        if dt > 0.0 {
            (tokens - n0) as f64 / dt
        } else {
            0.0
        }
    }
}

fn run(s: Arc<Shared>, mut reader: MemReader, mut log: Option<std::io::BufWriter<std::fs::File>>) {
    let mut rate = Rate::default();
    let mut handled = 0u64;
    let mut last_command: Option<String> = None;
    let mut telemetry_ok = s.dir.is_some();
    loop {
        let quitting = *lock(&s.quit);
        let mem = reader.sample();
        let mut pool = s.pool_stats();
        let now = Instant::now();

        if !quitting {
            s.apply_limits(&mem, &pool);
        }

        // Commands from xltop.
        if let (Some(dir), true) = (&s.dir, telemetry_ok) {
            for c in status::take_commands(dir, s.pid) {
                match c.as_str() {
                    "empty_cache" => {
                        s.trim();
                    }
                    "stop" => s.request_stop(Stop::Requested("stop requested (xltop)".into())),
                    other => {
                        eprintln!("xlstm: warning: unknown control command `{other}` ignored");
                        continue;
                    }
                }
                handled += 1;
                last_command = Some(c);
            }
        }
        if s.stopping.load(Ordering::Acquire) || handled > 0 {
            pool = s.pool_stats();
        }

        let prog = s.progress.snapshot();
        let phase = if s.stopping.load(Ordering::Acquire) && !quitting {
            "stopping".to_string()
        } else {
            prog.phase.clone()
        };
        let tok_per_s = rate.push(now, prog.tokens);

        if let Some(w) = log.as_mut() {
            let _ = writeln!(
                w,
                "{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{}",
                now.duration_since(s.t0).as_secs_f64(),
                mem.rss as f64 / MIB,
                mem.sys_avail as f64 / MIB,
                pool.live_total() as f64 / MIB,
                pool.pooled as f64 / MIB,
                pool.peak as f64 / MIB,
                phase.replace(',', " "),
                prog.tokens
            );
            let _ = w.flush();
        }

        if let (Some(dir), true) = (&s.dir, telemetry_ok) {
            if quitting {
                let _writing = lock(&s.record_lock);
                status::remove_record(dir, s.pid);
            } else {
                let info = lock(&s.info).clone();
                let (soft_limit_bytes, hard_limit_bytes) = s.limits();
                let progress = prog.fraction.or_else(|| {
                    prog.total
                        .filter(|&t| t > 0)
                        .map(|t| (prog.tokens as f64 / t as f64).min(1.0))
                });
                let rec = StatusRecord {
                    pid: s.pid,
                    command: s.command.clone(),
                    model: info.model,
                    dtype: info.dtype,
                    weight_bytes: pool.live[Category::Weights as usize],
                    adapter: info.adapter,
                    backend: info.backend,
                    phase,
                    tokens: prog.tokens,
                    total_tokens: prog.total,
                    progress,
                    tok_per_s,
                    rss_bytes: mem.rss,
                    sys_avail_bytes: mem.sys_avail,
                    sys_total_bytes: mem.sys_total,
                    gpu_live_bytes: pool.live_total(),
                    gpu_pooled_bytes: pool.pooled,
                    gpu_peak_bytes: pool.peak,
                    soft_limit_bytes,
                    hard_limit_bytes,
                    started_unix: s.started_unix,
                    updated_unix: status::unix_now(),
                    poll_ms: s.cfg.poll.as_millis() as u64,
                    commands_handled: handled,
                    last_command: last_command.clone(),
                    identity: super::sys::own_identity(),
                    stale: false,
                };
                let written = {
                    let _writing = lock(&s.record_lock);
                    status::write_record(dir, &rec)
                };
                if let Err(e) = written {
                    eprintln!(
                        "xlstm: warning: telemetry off: cannot write to {}: {e} (xltop will not see this run)",
                        dir.display()
                    );
                    telemetry_ok = false;
                }
            }
        }

        if quitting {
            break;
        }
        let q = lock(&s.quit);
        if !*q {
            let _ = s.wake.wait_timeout(q, s.cfg.poll);
        }
    }
}
