//! The full-screen monitor: the process table, the selected process's memory gauges and tok/s
//! sparkline, and the keys (K kill, E empty cache, arrows select, q quit).

use crate::control::Control;
use crate::stream::records;
use crate::text::{displayable, fmt_age, fmt_progress, mib, model_label, sanitize};
use crate::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xlstm_wgpu::telemetry::status::{unix_now, StatusRecord};

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
            terminal.draw(|f| draw(f, &app)).map_err(|e| e.to_string())?;
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

/// One frame: the header line, the process table, the selected process's memory gauges and
/// tok/s history, and the key help (or the kill prompt).
fn draw(f: &mut Frame, app: &App) {
    let table_rows = (app.recs.len() as u16 + 3).clamp(4, 16);
    let [head, body, gauges, spark, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_rows),
        Constraint::Length(5),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_header(f, app, head);
    draw_table(f, app, body);
    let sel = app.selected_record();
    draw_memory(f, sel, gauges);
    draw_tok_s(f, app, sel, spark);
    draw_footer(f, app, foot);
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
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
        area,
    );
}

fn draw_table(f: &mut Frame, app: &App, area: Rect) {
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
                model_label(r),
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
    f.render_stateful_widget(table, area, &mut state);
}

/// The selected process's memory against its limit, the system's, and its GPU pool.
fn draw_memory(f: &mut Frame, sel: Option<&StatusRecord>, area: Rect) {
    let gauge_block = Block::default().borders(Borders::ALL).title(match sel {
        Some(r) => format!(" memory of {} ", r.pid),
        None => " memory ".into(),
    });
    let inner = gauge_block.inner(area);
    f.render_widget(gauge_block, area);
    let [g1, g2, g3] = Layout::vertical([Constraint::Length(1); 3]).areas(inner);
    if let Some(r) = sel {
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
}

/// The selected process's tok/s, as many recent samples as fit.
fn draw_tok_s(f: &mut Frame, app: &App, sel: Option<&StatusRecord>, area: Rect) {
    let data: Vec<u64> = sel
        .and_then(|r| app.history.get(&r.pid))
        .map(|h| {
            let w = area.width.saturating_sub(2) as usize;
            h.iter().skip(h.len().saturating_sub(w)).copied().collect()
        })
        .unwrap_or_default();
    let title = match sel {
        Some(r) => format!(" tok/s of {}: {:.1} ", r.pid, r.tok_per_s),
        None => " tok/s ".into(),
    };
    f.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .data(&data)
            .style(Style::default().fg(Color::Yellow)),
        area,
    );
}

fn draw_footer(f: &mut Frame, app: &App, area: Rect) {
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
    f.render_widget(Paragraph::new(footer), area);
}
