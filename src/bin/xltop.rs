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
use xlstm_wgpu::telemetry::status::{read_records, remove_record, send_command, unix_now, StatusRecord};
use xlstm_wgpu::telemetry::sys::{pid_alive, terminate};

#[derive(Parser, Clone, Debug)]
#[command(
    name = "xltop",
    version,
    about = "Monitor running xlstm processes: memory, progress, tok/s; empty their GPU cache or stop them"
)]
struct Args {
    /// Runtime directory to watch [default: $XLSTM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/xlstm, else
    /// <temp dir>/xlstm-<user>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Seconds between refreshes.
    #[arg(long, value_name = "SEC", default_value_t = 1.0)]
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
    /// Seconds a killed process gets to stop at a safe point before it is sent SIGTERM.
    #[arg(long, value_name = "SEC", default_value_t = 5.0)]
    kill_grace: f64,
    /// Remove the records of processes that ended without cleaning up (stale records).
    #[arg(long)]
    clean: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.poll.is_finite() && args.poll > 0.0) {
        eprintln!("xltop: error: --poll must be a positive number of seconds");
        return ExitCode::from(2);
    }
    let dir = args.dir.clone().unwrap_or_else(xlstm_wgpu::telemetry::runtime_dir);
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
            eprintln!("xltop: error: {e}");
            ExitCode::FAILURE
        }
    }
}

const MIB: f64 = (1u64 << 20) as f64;

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
    /// Processes sent `stop`, with the time after which they get SIGTERM.
    pending: Vec<(u32, Instant)>,
}

impl Control {
    fn new(dir: &Path, grace: f64) -> Self {
        Control {
            dir: dir.to_path_buf(),
            grace: Duration::from_secs_f64(grace.max(0.0)),
            pending: Vec::new(),
        }
    }

    fn record(&self, pid: u32) -> Result<StatusRecord, String> {
        read_records(&self.dir)
            .into_iter()
            .find(|r| r.pid == pid)
            .ok_or_else(|| format!("no xlstm process {pid} in {}", self.dir.display()))
    }

    /// Stops a process: a `stop` command (the run ends at its next safe point, exit code 4), then
    /// SIGTERM if it is still alive after the grace period.
    fn kill(&mut self, pid: u32) -> Result<String, String> {
        let rec = self.record(pid)?;
        if rec.stale && !pid_alive(pid) {
            remove_record(&self.dir, pid);
            return Ok(format!("process {pid} is gone; removed its stale record"));
        }
        send_command(&self.dir, pid, "stop").map_err(|e| e.to_string())?;
        self.pending.retain(|&(p, _)| p != pid);
        self.pending.push((pid, Instant::now() + self.grace));
        Ok(format!("stop sent to {pid} ({} {})", rec.command, rec.phase))
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
        self.pending.retain(|&(pid, deadline)| {
            if !pid_alive(pid) {
                msgs.push(format!("process {pid} stopped"));
                return false;
            }
            if now >= deadline {
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
        dir.display()
    );
    out += &format!(
        "{:>7} {:<8} {:<10} {:>11} {:>8} {:>9} {:>9} {:>8} {:>8} {:>7}  {}\n",
        "PID", "CMD", "PHASE", "PROGRESS", "TOK/S", "RSS MiB", "GPU MiB", "POOLED", "PEAK", "AGE", "MODEL / ADAPTER"
    );
    for r in recs {
        out += &format!(
            "{:>7} {:<8} {:<10} {:>11} {:>8.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>7}  {} / {}\n",
            r.pid,
            r.command,
            if r.stale { "stale" } else { r.phase.as_str() },
            fmt_progress(r),
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
            let s: f64 = arg
                .ok_or("`interval` needs seconds")?
                .parse()
                .map_err(|_| format!("`{line}`: not a number of seconds"))?;
            if !(s.is_finite() && s > 0.0) {
                return Err("the interval must be positive".into());
            }
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
                eprintln!("xltop: {m}");
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
                        eprintln!("xltop: refreshing every {s} s");
                        break;
                    }
                    Ok(Some(Input::Kill(pid))) => match control.kill(pid) {
                        Ok(m) => eprintln!("xltop: {m}"),
                        Err(e) => eprintln!("xltop: {e}"),
                    },
                    Ok(Some(Input::EmptyCache(pid))) => match control.empty_cache(pid) {
                        Ok(m) => eprintln!("xltop: {m}"),
                        Err(e) => eprintln!("xltop: {e}"),
                    },
                    Err(e) => eprintln!("xltop: {e}"),
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
            self.recs = records(&self.dir, self.clean);
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
                    app.dir.display(),
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
            let used = r.rss_bytes.max(r.gpu_live_bytes + r.gpu_pooled_bytes);
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
            let pool = r.gpu_live_bytes + r.gpu_pooled_bytes;
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
                Span::styled(app.message.clone(), Style::default().fg(Color::Cyan)),
            ]),
        };
        f.render_widget(Paragraph::new(footer), foot);
    }
}
