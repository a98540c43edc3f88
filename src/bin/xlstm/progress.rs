//! Progress of long work on stderr, for every command that can run longer than a few seconds
//! (score, perplexity, bench, tune; generate when stderr is not a terminal). It reads what the
//! command already reports to the telemetry [`Progress`] (phase, tokens done and total, fraction
//! done) and the kernel compiles ([`set_compile_observer`]), and shows it:
//!
//! - on a terminal, a live line (indicatif) whose elapsed time keeps moving, drawn once the run
//!   has taken [`BAR_AFTER`];
//! - otherwise plain lines, `xlstm CMD: PHASE, DONE/TOTAL tokens (P%), R tok/s, ETA E [elapsed]`,
//!   at most one every [`LINE_EVERY`] (when something changed, else one every [`HEARTBEAT`]),
//!   the first once the run has taken [`PLAIN_AFTER`] (quick runs print nothing).
//!
//! `XLSTM_PROGRESS=off` turns it off; `XLSTM_PROGRESS=plain` prints plain lines from the start,
//! also on a terminal. stdout is never written.
//!
//! [`set_compile_observer`]: xlstm_wgpu::gpu::kernels::set_compile_observer

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xlstm_wgpu::telemetry::Progress;

/// Run time after which the terminal line is drawn.
pub const BAR_AFTER: Duration = Duration::from_millis(1500);
/// Run time after which plain lines start (`auto` mode).
pub const PLAIN_AFTER: Duration = Duration::from_secs(5);
/// The shortest interval between two plain lines.
pub const LINE_EVERY: Duration = Duration::from_secs(2);
/// The longest interval between two plain lines while the run goes on.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// How progress is shown (`XLSTM_PROGRESS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// A live line on a terminal.
    Bar,
    /// Plain lines; `from_start`: from the first moment (`XLSTM_PROGRESS=plain`).
    Plain {
        from_start: bool,
    },
}

impl Mode {
    /// From `XLSTM_PROGRESS` (`off`/`0`, `plain`, else automatic) and whether stderr is a
    /// terminal.
    pub fn from_env() -> Mode {
        use std::io::IsTerminal;
        match std::env::var("XLSTM_PROGRESS").unwrap_or_default().trim() {
            "off" | "0" | "none" => Mode::Off,
            "plain" => Mode::Plain { from_start: true },
            _ if std::io::stderr().is_terminal() => Mode::Bar,
            _ => Mode::Plain { from_start: false },
        }
    }
}

/// What the display thread and the compile observer share.
#[derive(Default)]
struct Shown {
    /// Kernel compiles: how many are built, and the one started last of those compiling now
    /// (several compile at once, on several threads).
    compiled: usize,
    compiling: Option<String>,
    in_flight: usize,
    /// Extra text after the progress (e.g. tune's best trial so far).
    detail: String,
    finished: bool,
}

/// The progress display of one command; [`finish`](Self::finish) (or drop) stops it and clears
/// the terminal line.
pub struct Reporter {
    shown: Arc<Mutex<Shown>>,
    bar: Option<indicatif::ProgressBar>,
    mode: Mode,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

fn lock(m: &Mutex<Shown>) -> std::sync::MutexGuard<'_, Shown> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reporter {
    /// Starts showing `progress` for `command` (e.g. `score`), in the mode `XLSTM_PROGRESS` and
    /// the terminal choose.
    pub fn start(command: &str, progress: Arc<Progress>) -> Reporter {
        Self::with_mode(command, progress, Mode::from_env())
    }

    pub fn with_mode(command: &str, progress: Arc<Progress>, mode: Mode) -> Reporter {
        let shown = Arc::new(Mutex::new(Shown::default()));
        let stop = Arc::new(AtomicBool::new(false));
        if mode == Mode::Off {
            return Reporter {
                shown,
                bar: None,
                mode,
                thread: None,
                stop,
            };
        }
        let observed = shown.clone();
        xlstm_wgpu::gpu::kernels::set_compile_observer(Some(Arc::new(
            move |e: &xlstm_wgpu::gpu::kernels::CompileEvent<'_>| {
                let mut s = lock(&observed);
                // Events of concurrent compiles arrive from their threads in any order.
                s.compiled = s.compiled.max(e.compiled);
                if e.finished {
                    s.in_flight = s.in_flight.saturating_sub(1);
                    if s.in_flight == 0 {
                        s.compiling = None;
                    }
                } else {
                    s.in_flight += 1;
                    s.compiling = Some(format!("{}:{}", e.kernel, e.entry));
                }
            },
        )));
        let bar = (mode == Mode::Bar).then(|| {
            let bar = indicatif::ProgressBar::hidden();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        let mut display = Display {
            command: format!("xlstm {command}"),
            progress,
            shown: shown.clone(),
            bar: bar.clone(),
            mode,
            started: Instant::now(),
            phase: String::new(),
            phase_since: Instant::now(),
            phase_tokens: 0,
            last_line: None,
            last_text: String::new(),
            last_phase: String::new(),
            bar_shown: false,
        };
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                display.tick();
                std::thread::park_timeout(POLL);
            }
        });
        Reporter {
            shown,
            bar,
            mode,
            thread: Some(thread),
            stop,
        }
    }

    /// Text shown after the progress (replaces the previous detail).
    pub fn set_detail(&self, text: impl Into<String>) {
        lock(&self.shown).detail = text.into();
    }

    /// Prints a line on stderr (above the terminal line).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    /// Stops the display and clears the terminal line.
    pub fn finish(&mut self) {
        if self.mode == Mode::Off {
            return;
        }
        let first = {
            let mut s = lock(&self.shown);
            !std::mem::replace(&mut s.finished, true)
        };
        if !first {
            return;
        }
        xlstm_wgpu::gpu::kernels::set_compile_observer(None);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The display thread's state.
struct Display {
    command: String,
    progress: Arc<Progress>,
    shown: Arc<Mutex<Shown>>,
    bar: Option<indicatif::ProgressBar>,
    mode: Mode,
    started: Instant,
    /// The phase seen last, since when, and the token count it started at (for the rate).
    phase: String,
    phase_since: Instant,
    phase_tokens: u64,
    last_line: Option<Instant>,
    last_text: String,
    /// The phase of the last plain line.
    last_phase: String,
    bar_shown: bool,
}

impl Display {
    fn tick(&mut self) {
        let p = self.progress.snapshot();
        let now = Instant::now();
        if p.phase != self.phase {
            self.phase.clone_from(&p.phase);
            self.phase_since = now;
            self.phase_tokens = p.tokens;
        }
        let text = {
            let s = lock(&self.shown);
            describe(
                &p,
                &s,
                self.phase_since.elapsed(),
                p.tokens.saturating_sub(self.phase_tokens),
                self.started.elapsed(),
            )
        };
        let elapsed = now - self.started;
        match self.mode {
            Mode::Off => {}
            Mode::Bar => {
                let Some(bar) = &self.bar else { return };
                bar.set_message(text);
                if !self.bar_shown && elapsed >= BAR_AFTER {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    bar.enable_steady_tick(POLL * 2);
                    self.bar_shown = true;
                }
            }
            Mode::Plain { from_start } => {
                if !from_start && elapsed < PLAIN_AFTER {
                    return;
                }
                // A new phase is shown at once (a short run still names each of its phases);
                // within a phase, at most a line every LINE_EVERY, at least every HEARTBEAT.
                let due = match self.last_line {
                    None => true,
                    Some(_) if p.phase != self.last_phase => true,
                    Some(t) => {
                        let since = now - t;
                        since >= HEARTBEAT || (since >= LINE_EVERY && text != self.last_text)
                    }
                };
                if due {
                    eprintln!("{}: {text} [elapsed {}]", self.command, duration(elapsed));
                    self.last_line = Some(now);
                    self.last_text = text;
                    self.last_phase.clone_from(&p.phase);
                }
            }
        }
    }
}

/// `PHASE, DONE/TOTAL tokens (P%), R tok/s, ETA E | detail`, with the kernel compiles while
/// loading or while one is under way.
fn describe(
    p: &xlstm_wgpu::telemetry::ProgressState,
    s: &Shown,
    in_phase: Duration,
    phase_tokens: u64,
    elapsed: Duration,
) -> String {
    let mut parts = vec![if p.phase.is_empty() {
        "starting".to_string()
    } else {
        p.phase.clone()
    }];
    match (&s.compiling, p.phase.as_str()) {
        (Some(k), _) => parts.push(format!("compiling kernels ({} built, now {k})", s.compiled)),
        (None, "loading") if s.compiled > 0 => parts.push(format!("{} kernels compiled", s.compiled)),
        _ => {}
    }
    let rate = (phase_tokens > 0).then(|| phase_tokens as f64 / in_phase.as_secs_f64().max(1e-3));
    let fraction = match p.total {
        Some(total) if total > 0 => {
            parts.push(format!("{}/{total} tokens", p.tokens));
            Some((p.tokens as f64 / total as f64).min(1.0))
        }
        _ => {
            if p.tokens > 0 {
                parts.push(format!("{} tokens", p.tokens));
            }
            p.fraction
        }
    };
    if let Some(f) = fraction {
        let last = parts.len() - 1;
        if p.total.is_some_and(|t| t > 0) {
            parts[last] += &format!(" ({:.0}%)", f * 100.0);
        } else {
            parts.push(format!("{:.0}%", f * 100.0));
        }
    }
    if let Some(r) = rate {
        parts.push(format!("{r:.1} tok/s"));
    }
    // ETA: from the token rate where a token total is known, else from the fraction done.
    let eta = match (p.total, rate) {
        (Some(total), Some(r)) if total > p.tokens => Some((total - p.tokens) as f64 / r),
        _ => fraction
            .filter(|&f| f > 0.0 && f < 1.0)
            .map(|f| elapsed.as_secs_f64() * (1.0 - f) / f),
    };
    if let Some(e) = eta {
        parts.push(format!("ETA {}", duration(Duration::from_secs_f64(e.min(1e9)))));
    }
    let mut text = parts.join(", ");
    if !s.detail.is_empty() {
        text += " | ";
        text += &s.detail;
    }
    text
}

/// `12s`, `3m05s`, `2h03m`.
fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xlstm_wgpu::telemetry::ProgressState;

    #[test]
    fn lines_name_phase_tokens_rate_and_eta() {
        let p = ProgressState {
            phase: "prefill".into(),
            tokens: 50,
            total: Some(100),
            fraction: None,
        };
        let text = describe(
            &p,
            &Shown::default(),
            Duration::from_secs(5),
            50,
            Duration::from_secs(6),
        );
        assert_eq!(text, "prefill, 50/100 tokens (50%), 10.0 tok/s, ETA 5s");
        let p = ProgressState {
            phase: "prefill 512".into(),
            tokens: 0,
            total: None,
            fraction: Some(0.25),
        };
        let s = Shown {
            detail: "best #3".into(),
            ..Default::default()
        };
        let text = describe(&p, &s, Duration::from_secs(1), 0, Duration::from_secs(10));
        assert_eq!(text, "prefill 512, 25%, ETA 30s | best #3");
        let p = ProgressState {
            phase: "loading".into(),
            ..Default::default()
        };
        let s = Shown {
            compiled: 3,
            compiling: Some("gemm:main".into()),
            ..Default::default()
        };
        let text = describe(&p, &s, Duration::ZERO, 0, Duration::ZERO);
        assert_eq!(text, "loading, compiling kernels (3 built, now gemm:main)");
        assert_eq!(duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h03m");
    }
}
