//! `xltop`: watch the running `xlstm` processes (generate, score, bench): phase, progress, tok/s,
//! process and GPU-pool memory; empty a process's GPU buffer cache or stop it.
//!
//! It reads the status records that every run publishes in the runtime directory (see
//! `xlstm_wgpu::telemetry::status`) and sends control commands through the same directory.
//!
//!     xltop                                  full-screen monitor (K kill, E empty cache, q quit)
//!     xltop --no-curses --poll 2             plain text, one table per refresh
//!     xltop --json                           one JSON snapshot
//!     xltop --json-stream --poll 1 --count 10    NDJSON, one snapshot per refresh
//!     xltop --stdin-commands                 also read `kill <pid>`, `empty_cache <pid>`,
//!                                            `interval <sec>`, `quit` from standard input

use clap::Parser;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use xlstm_wgpu::telemetry::status::{
    check_runtime_dir, read_records, remove_record, send_command, unix_now, StatusRecord,
};
use xlstm_wgpu::telemetry::sys::{pid_alive, process_identity, terminate, ProcessIdentity};

/// Refresh intervals accepted (--poll, `interval`), in seconds: short enough to follow a run,
/// long enough not to spin.
const POLL_RANGE: std::ops::RangeInclusive<f64> = 0.05..=3600.0;
/// Grace periods accepted (--kill-grace), in seconds.
const GRACE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=3600.0;

/// Parses a number of seconds within `range` (also rejects NaN and infinities).
fn seconds_in(text: &str, range: &std::ops::RangeInclusive<f64>) -> Result<f64, String> {
    let s: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !range.contains(&s) {
        return Err(format!(
            "{text} s is out of range ({} ..= {} s)",
            range.start(),
            range.end()
        ));
    }
    Ok(s)
}

fn poll_seconds(text: &str) -> Result<f64, String> {
    seconds_in(text, &POLL_RANGE)
}

fn grace_seconds(text: &str) -> Result<f64, String> {
    seconds_in(text, &GRACE_RANGE)
}

#[derive(Parser, Clone, Debug)]
#[command(
    name = "xltop",
    version,
    about = "Monitor running xlstm processes: memory, progress, tok/s; empty their GPU cache or stop them"
)]
struct Args {
    /// Runtime directory to watch; it must be private to the user [default: $XLSTM_RUNTIME_DIR,
    /// else $XDG_RUNTIME_DIR/xlstm, else <temp dir>/xlstm-<uid>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Seconds between refreshes (0.05 ..= 3600).
    #[arg(long, value_name = "SEC", default_value_t = 1.0, value_parser = poll_seconds)]
    poll: f64,
    /// Plain text output (one table per refresh) instead of the full-screen monitor.
    #[arg(long)]
    no_curses: bool,
    /// Print one JSON snapshot and exit.
    #[arg(long, conflicts_with_all = ["json_stream", "no_curses", "stdin_commands"])]
    json: bool,
    /// Print one JSON snapshot per refresh, one per line (NDJSON).
    #[arg(long)]
    json_stream: bool,
    /// Stop after N refreshes (plain and JSON-stream output; 0: run until `quit` or Ctrl-C).
    #[arg(long, value_name = "N", default_value_t = 0)]
    count: u64,
    /// Read commands from standard input, one a line: `kill <pid>`, `empty_cache <pid>`,
    /// `interval <sec>`, `quit`. Implies --no-curses unless --json-stream is given.
    #[arg(long)]
    stdin_commands: bool,
    /// Seconds a killed process gets to stop at a safe point before it is sent SIGTERM
    /// (0 ..= 3600).
    #[arg(long, value_name = "SEC", default_value_t = 5.0, value_parser = grace_seconds)]
    kill_grace: f64,
    /// Remove the records of processes that ended without cleaning up (stale records).
    #[arg(long)]
    clean: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.dir.clone().unwrap_or_else(xlstm_wgpu::telemetry::runtime_dir);
    // Whoever can write the directory could forge records and make us signal their choice of
    // process: refuse to read or act on one that is not private.
    if let Err(e) = check_runtime_dir(&dir) {
        eprintln!("xltop: error: {}", sanitize(&e.to_string()));
        return ExitCode::FAILURE;
    }
    let result = if args.json {
        let snap = snapshot(&dir, args.clean);
        println!("{snap}");
        Ok(())
    } else if args.json_stream || args.no_curses || args.stdin_commands {
        stream(&args, &dir)
    } else {
        tui::run(&args, &dir)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xltop: error: {}", sanitize(&e));
            ExitCode::FAILURE
        }
    }
}

const MIB: f64 = (1u64 << 20) as f64;

/// Longest text shown for one field; a record is small, but a field can still be long enough to
/// wreck the layout.
const MAX_FIELD_CHARS: usize = 256;

/// Whether a character would act on the terminal or be invisible instead of printing: C0, DEL and
/// C1 controls (ESC starts escape sequences), and the format characters that reorder or hide text
/// (bidirectional overrides, zero-width characters, line and paragraph separators, tags).
fn is_non_printing(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// Text from a record, a path or a message, made safe to write to a terminal: non-printing
/// characters become `?`.
fn sanitize(text: &str) -> String {
    text.chars().map(|c| if is_non_printing(c) { '?' } else { c }).collect()
}

/// A record's text field for a table cell: sanitised and cut at [`MAX_FIELD_CHARS`].
fn sanitize_field(text: &str) -> String {
    let mut out: String = sanitize(&text.chars().take(MAX_FIELD_CHARS).collect::<String>());
    if text.chars().nth(MAX_FIELD_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A record with every text field sanitised, for the table and the full-screen view (the JSON
/// output keeps the text as it is: JSON escapes control characters).
fn displayable(r: &StatusRecord) -> StatusRecord {
    StatusRecord {
        command: sanitize_field(&r.command),
        model: sanitize_field(&r.model),
        adapter: sanitize_field(&r.adapter),
        backend: sanitize_field(&r.backend),
        phase: sanitize_field(&r.phase),
        last_command: r.last_command.as_deref().map(sanitize_field),
        ..r.clone()
    }
}

/// An acknowledgement or an error of a command, on stderr.
fn say(message: &str) {
    eprintln!("xltop: {}", sanitize(message));
}

fn mib(b: u64) -> f64 {
    b as f64 / MIB
}

/// The records, stale ones removed first when `clean`.
fn records(dir: &Path, clean: bool) -> Vec<StatusRecord> {
    let mut recs = read_records(dir);
    if clean {
        for r in recs.iter().filter(|r| r.stale) {
            remove_record(dir, r.pid);
        }
        recs.retain(|r| !r.stale);
    }
    recs
}

fn snapshot_of(dir: &Path, recs: &[StatusRecord]) -> serde_json::Value {
    serde_json::json!({
        "time": unix_now(),
        "dir": dir.display().to_string(),
        "processes": recs,
    })
}

fn snapshot(dir: &Path, clean: bool) -> serde_json::Value {
    snapshot_of(dir, &records(dir, clean))
}

/// Sends commands and follows up on kills.
struct Control {
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
    fn new(dir: &Path, grace: f64) -> Self {
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
    fn kill(&mut self, pid: u32) -> Result<String, String> {
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

    fn empty_cache(&mut self, pid: u32) -> Result<String, String> {
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
    fn tick(&mut self) -> Vec<String> {
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

fn fmt_progress(r: &StatusRecord) -> String {
    match (r.total_tokens, r.progress) {
        (Some(t), _) if t > 0 => format!("{}/{}", r.tokens, t),
        (_, Some(p)) => format!("{:.0}%", p * 100.0),
        _ => r.tokens.to_string(),
    }
}

fn short_model(m: &str) -> String {
    Path::new(m)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && !m.starts_with("preset "))
        .unwrap_or_else(|| m.to_string())
}

fn fmt_age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The plain-text table.
fn table(dir: &Path, recs: &[StatusRecord]) -> String {
    let now = unix_now();
    let mut out = format!(
        "xltop  {} process{}  ({})\n",
        recs.len(),
        if recs.len() == 1 { "" } else { "es" },
        sanitize(&dir.display().to_string())
    );
    out += &format!(
        "{:>7} {:<8} {:<10} {:>11} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7}  {}\n",
        "PID", "CMD", "PHASE", "PROGRESS", "TOK/S", "RSS MiB", "GPU MiB", "POOLED", "PEAK", "AGE", "MODEL / ADAPTER"
    );
    for r in recs.iter().map(displayable) {
        out += &format!(
            "{:>7} {:<8} {:<10} {:>11} {:>8.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>7}  {} / {}\n",
            r.pid,
            r.command,
            if r.stale { "stale" } else { r.phase.as_str() },
            fmt_progress(&r),
            r.tok_per_s,
            mib(r.rss_bytes),
            mib(r.gpu_live_bytes),
            mib(r.gpu_pooled_bytes),
            mib(r.gpu_peak_bytes),
            fmt_age(now - r.started_unix),
            short_model(&r.model),
            r.adapter
        );
    }
    out
}

enum Input {
    Kill(u32),
    EmptyCache(u32),
    Interval(f64),
    Quit,
}

fn parse_command(line: &str) -> Result<Option<Input>, String> {
    let mut w = line.split_whitespace();
    let Some(cmd) = w.next() else {
        return Ok(None);
    };
    let arg = w.next();
    if w.next().is_some() {
        return Err(format!("`{line}`: too many words"));
    }
    let pid = |a: Option<&str>| -> Result<u32, String> {
        a.ok_or_else(|| format!("`{cmd}` needs a pid"))?
            .parse()
            .map_err(|_| format!("`{line}`: not a pid"))
    };
    match cmd {
        "kill" | "stop" => Ok(Some(Input::Kill(pid(arg)?))),
        "empty_cache" | "empty-cache" => Ok(Some(Input::EmptyCache(pid(arg)?))),
        "interval" => {
            let s = poll_seconds(arg.ok_or("`interval` needs seconds")?)
                .map_err(|e| format!("`{line}`: {e}; interval unchanged"))?;
            Ok(Some(Input::Interval(s)))
        }
        "quit" | "exit" | "q" => Ok(Some(Input::Quit)),
        _ => Err(format!(
            "unknown command `{cmd}` (kill <pid>, empty_cache <pid>, interval <sec>, quit)"
        )),
    }
}

/// Plain text or NDJSON output, optionally driven by commands on stdin.
fn stream(args: &Args, dir: &Path) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<String>();
    if args.stdin_commands {
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        drop(tx);
    }
    let mut control = Control::new(dir, args.kill_grace);
    let mut poll = Duration::from_secs_f64(args.poll);
    let mut shown = 0u64;
    let mut stdout = std::io::stdout();
    loop {
        let recs = records(dir, args.clean);
        let text = if args.json_stream {
            format!("{}\n", snapshot_of(dir, &recs))
        } else {
            format!("{}\n", table(dir, &recs))
        };
        if stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()).is_err() {
            return Ok(()); // the reader went away
        }
        shown += 1;
        if args.count > 0 && shown >= args.count {
            return Ok(());
        }
        let next = Instant::now() + poll;
        loop {
            for m in control.tick() {
                say(&m);
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            let wait = (next - now).min(Duration::from_millis(250));
            match rx.recv_timeout(wait) {
                Ok(line) => match parse_command(&line) {
                    Ok(None) => {}
                    Ok(Some(Input::Quit)) => return Ok(()),
                    Ok(Some(Input::Interval(s))) => {
                        poll = Duration::from_secs_f64(s);
                        say(&format!("refreshing every {s} s"));
                        break;
                    }
                    Ok(Some(Input::Kill(pid))) => match control.kill(pid) {
                        Ok(m) | Err(m) => say(&m),
                    },
                    Ok(Some(Input::EmptyCache(pid))) => match control.empty_cache(pid) {
                        Ok(m) | Err(m) => say(&m),
                    },
                    Err(e) => say(&e),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
    }
}

mod tui {
    use super::*;
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    use ratatui::layout::{Constraint, Layout, Rect};
    use ratatui::style::{Color, Modifier, Style};
    use ratatui::text::{Line, Span};
    use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Sparkline, Table, TableState};
    use ratatui::Frame;

    /// Samples of tok/s kept per process for the sparkline.
    const HISTORY: usize = 240;

    struct App {
        dir: PathBuf,
        poll: Duration,
        clean: bool,
        recs: Vec<StatusRecord>,
        selected: Option<u32>,
        history: HashMap<u32, VecDeque<u64>>,
        message: String,
        /// The kill prompt's text, while it is open.
        prompt: Option<String>,
        control: Control,
    }

    impl App {
        fn refresh(&mut self) {
            // Only shown (commands re-read the record), so sanitised once here.
            self.recs = records(&self.dir, self.clean).iter().map(displayable).collect();
            for r in &self.recs {
                if r.stale {
                    continue;
                }
                let h = self.history.entry(r.pid).or_default();
                h.push_back((r.tok_per_s * 10.0).round() as u64);
                while h.len() > HISTORY {
                    h.pop_front();
                }
            }
            let live: Vec<u32> = self.recs.iter().map(|r| r.pid).collect();
            self.history.retain(|p, _| live.contains(p));
            if self.selected.is_none_or(|p| !live.contains(&p)) {
                self.selected = live.first().copied();
            }
        }

        fn selected_index(&self) -> Option<usize> {
            self.selected.and_then(|p| self.recs.iter().position(|r| r.pid == p))
        }

        fn select_offset(&mut self, d: isize) {
            if self.recs.is_empty() {
                return;
            }
            let i = self.selected_index().unwrap_or(0) as isize + d;
            let i = i.clamp(0, self.recs.len() as isize - 1) as usize;
            self.selected = Some(self.recs[i].pid);
        }

        fn selected_record(&self) -> Option<&StatusRecord> {
            self.selected_index().map(|i| &self.recs[i])
        }
    }

    pub fn run(args: &Args, dir: &Path) -> Result<(), String> {
        let mut terminal = ratatui::try_init().map_err(|e| {
            let _ = ratatui::try_restore();
            format!("cannot start the full-screen monitor ({e}); try --no-curses or --json")
        })?;
        let mut app = App {
            dir: dir.to_path_buf(),
            poll: Duration::from_secs_f64(args.poll),
            clean: args.clean,
            recs: Vec::new(),
            selected: None,
            history: HashMap::new(),
            message: String::new(),
            prompt: None,
            control: Control::new(dir, args.kill_grace),
        };
        app.refresh();
        let result = (|| -> Result<(), String> {
            let mut next = Instant::now() + app.poll;
            loop {
                terminal.draw(|f| draw(f, &mut app)).map_err(|e| e.to_string())?;
                let now = Instant::now();
                let wait = next.saturating_duration_since(now).min(Duration::from_millis(250));
                if event::poll(wait).map_err(|e| e.to_string())? {
                    if let Event::Key(k) = event::read().map_err(|e| e.to_string())? {
                        if k.kind != KeyEventKind::Press {
                            continue;
                        }
                        if handle_key(&mut app, k.code, k.modifiers) {
                            return Ok(());
                        }
                    }
                }
                for m in app.control.tick() {
                    app.message = m;
                }
                if Instant::now() >= next {
                    app.refresh();
                    next = Instant::now() + app.poll;
                }
            }
        })();
        ratatui::restore();
        result
    }

    /// Returns true to quit.
    fn handle_key(app: &mut App, code: KeyCode, mods: KeyModifiers) -> bool {
        if mods.contains(KeyModifiers::CONTROL) && code == KeyCode::Char('c') {
            return true;
        }
        if let Some(p) = app.prompt.as_mut() {
            match code {
                KeyCode::Char(c) if c.is_ascii_digit() => p.push(c),
                KeyCode::Backspace => {
                    p.pop();
                }
                KeyCode::Esc => {
                    app.prompt = None;
                    app.message = "kill cancelled".into();
                }
                KeyCode::Enter => {
                    let text = app.prompt.take().unwrap_or_default();
                    app.message = match text.parse::<u32>() {
                        Ok(pid) => match app.control.kill(pid) {
                            Ok(m) | Err(m) => m,
                        },
                        Err(_) => format!("`{text}` is not a pid"),
                    };
                    app.refresh();
                }
                _ => {}
            }
            return false;
        }
        match code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => return true,
            KeyCode::Up => app.select_offset(-1),
            KeyCode::Down => app.select_offset(1),
            KeyCode::Char('K') | KeyCode::Char('k') => {
                app.prompt = Some(app.selected.map(|p| p.to_string()).unwrap_or_default());
            }
            KeyCode::Char('E') | KeyCode::Char('e') => {
                app.message = match app.selected {
                    Some(pid) => match app.control.empty_cache(pid) {
                        Ok(m) | Err(m) => m,
                    },
                    None => "no process selected".into(),
                };
            }
            KeyCode::Char('r') | KeyCode::Char('R') => app.refresh(),
            _ => {}
        }
        false
    }

    fn ratio(a: u64, b: u64) -> f64 {
        if b == 0 {
            0.0
        } else {
            (a as f64 / b as f64).clamp(0.0, 1.0)
        }
    }

    fn draw(f: &mut Frame, app: &mut App) {
        let table_rows = (app.recs.len() as u16 + 3).clamp(4, 16);
        let [head, body, gauges, spark, foot] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(table_rows),
            Constraint::Length(5),
            Constraint::Min(4),
            Constraint::Length(1),
        ])
        .areas(f.area());

        let live = app.recs.iter().filter(|r| !r.stale).count();
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("xltop", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(format!(
                    "  {} running, {} stale  |  {}  |  refresh {:.1} s",
                    live,
                    app.recs.len() - live,
                    sanitize(&app.dir.display().to_string()),
                    app.poll.as_secs_f64()
                )),
            ])),
            head,
        );

        let now = unix_now();
        let header = Row::new(
            [
                "PID", "CMD", "PHASE", "PROGRESS", "TOK/S", "RSS MiB", "GPU MiB", "POOLED", "PEAK", "AGE", "MODEL",
                "ADAPTER",
            ]
            .map(|h| Cell::from(h).style(Style::default().add_modifier(Modifier::BOLD))),
        );
        let rows: Vec<Row> = app
            .recs
            .iter()
            .map(|r| {
                let style = if r.stale {
                    Style::default().fg(Color::DarkGray)
                } else {
                    Style::default()
                };
                Row::new(vec![
                    r.pid.to_string(),
                    r.command.clone(),
                    if r.stale { "stale".into() } else { r.phase.clone() },
                    fmt_progress(r),
                    format!("{:.1}", r.tok_per_s),
                    format!("{:.1}", mib(r.rss_bytes)),
                    format!("{:.1}", mib(r.gpu_live_bytes)),
                    format!("{:.2}", mib(r.gpu_pooled_bytes)),
                    format!("{:.1}", mib(r.gpu_peak_bytes)),
                    fmt_age(now - r.started_unix),
                    short_model(&r.model),
                    r.adapter.clone(),
                ])
                .style(style)
            })
            .collect();
        let widths = [
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(12),
            Constraint::Length(11),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Min(10),
            Constraint::Min(10),
        ];
        let mut state = TableState::default().with_selected(app.selected_index());
        let empty = app.recs.is_empty();
        let table = Table::new(rows, widths)
            .header(header)
            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
            .block(Block::default().borders(Borders::ALL).title(if empty {
                " no xlstm process running "
            } else {
                " processes "
            }));
        f.render_stateful_widget(table, body, &mut state);

        let sel = app.selected_record().cloned();
        let gauge_block = Block::default().borders(Borders::ALL).title(match &sel {
            Some(r) => format!(" memory of {} ", r.pid),
            None => " memory ".into(),
        });
        let inner = gauge_block.inner(gauges);
        f.render_widget(gauge_block, gauges);
        let [g1, g2, g3] = Layout::vertical([Constraint::Length(1); 3]).areas(inner);
        if let Some(r) = &sel {
            let cap = r.hard_limit_bytes.unwrap_or(r.sys_total_bytes);
            let used = r.rss_bytes.max(r.gpu_live_bytes.saturating_add(r.gpu_pooled_bytes));
            let over_soft = r.soft_limit_bytes.is_some_and(|s| used >= s);
            let gauge = |area: Rect, f: &mut Frame, ratio: f64, label: String, color: Color| {
                f.render_widget(
                    Gauge::default()
                        .ratio(ratio)
                        .label(label)
                        .gauge_style(Style::default().fg(color).bg(Color::Black)),
                    area,
                );
            };
            gauge(
                g1,
                f,
                ratio(used, cap),
                format!(
                    "process {:.1} / {:.1} MiB {}",
                    mib(used),
                    mib(cap),
                    if r.hard_limit_bytes.is_some() {
                        "hard limit"
                    } else {
                        "RAM"
                    }
                ),
                if over_soft { Color::Red } else { Color::Green },
            );
            let sys_used = r.sys_total_bytes.saturating_sub(r.sys_avail_bytes);
            gauge(
                g2,
                f,
                ratio(sys_used, r.sys_total_bytes),
                format!(
                    "system {:.0} / {:.0} MiB used ({:.0} MiB available)",
                    mib(sys_used),
                    mib(r.sys_total_bytes),
                    mib(r.sys_avail_bytes)
                ),
                Color::Blue,
            );
            let pool = r.gpu_live_bytes.saturating_add(r.gpu_pooled_bytes);
            gauge(
                g3,
                f,
                ratio(pool, r.gpu_peak_bytes.max(pool)),
                format!(
                    "GPU pool {:.1} MiB live + {:.2} MiB cached (peak {:.1} MiB)",
                    mib(r.gpu_live_bytes),
                    mib(r.gpu_pooled_bytes),
                    mib(r.gpu_peak_bytes)
                ),
                Color::Magenta,
            );
        }

        let data: Vec<u64> = sel
            .as_ref()
            .and_then(|r| app.history.get(&r.pid))
            .map(|h| {
                let w = spark.width.saturating_sub(2) as usize;
                h.iter().skip(h.len().saturating_sub(w)).copied().collect()
            })
            .unwrap_or_default();
        let title = match &sel {
            Some(r) => format!(" tok/s of {}: {:.1} ", r.pid, r.tok_per_s),
            None => " tok/s ".into(),
        };
        f.render_widget(
            Sparkline::default()
                .block(Block::default().borders(Borders::ALL).title(title))
                .data(&data)
                .style(Style::default().fg(Color::Yellow)),
            spark,
        );

        let footer = match &app.prompt {
            Some(p) => Line::from(vec![
                Span::styled("Kill pid: ", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(format!("{p}_")),
                Span::raw("   (Enter: stop it, Esc: cancel)"),
            ]),
            None => Line::from(vec![
                Span::styled("K", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(" kill  "),
                Span::styled("E", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(" empty cache  "),
                Span::styled("↑/↓", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(" select  "),
                Span::styled("q", Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(" quit   "),
                Span::styled(sanitize(&app.message), Style::default().fg(Color::Cyan)),
            ]),
        };
        f.render_widget(Paragraph::new(footer), foot);
    }
}
