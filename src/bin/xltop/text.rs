//! Text for the terminal: record fields made safe to print (a record is written by another
//! process and may hold escape sequences), the number formats, and the plain-text table.

use std::path::Path;
use xlstm_wgpu::telemetry::status::{unix_now, StatusRecord};

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
pub fn sanitize(text: &str) -> String {
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
pub fn displayable(r: &StatusRecord) -> StatusRecord {
    StatusRecord {
        command: sanitize_field(&r.command),
        model: sanitize_field(&r.model),
        dtype: sanitize_field(&r.dtype),
        adapter: sanitize_field(&r.adapter),
        backend: sanitize_field(&r.backend),
        phase: sanitize_field(&r.phase),
        last_command: r.last_command.as_deref().map(sanitize_field),
        ..r.clone()
    }
}

/// An acknowledgement or an error of a command, on stderr.
pub fn say(message: &str) {
    eprintln!("xltop: {}", sanitize(message));
}

pub fn mib(b: u64) -> f64 {
    b as f64 / MIB
}

pub fn fmt_progress(r: &StatusRecord) -> String {
    match (r.total_tokens, r.progress) {
        (Some(t), _) if t > 0 => format!("{}/{}", r.tokens, t),
        (_, Some(p)) => format!("{:.0}%", p * 100.0),
        _ => r.tokens.to_string(),
    }
}

/// The model column: its short name, then the weight format and its GPU size once loaded.
pub fn model_label(r: &StatusRecord) -> String {
    let name = short_model(&r.model);
    if r.dtype.is_empty() {
        name
    } else {
        format!("{name} [{} {:.0} MiB]", r.dtype, mib(r.weight_bytes))
    }
}

pub fn short_model(m: &str) -> String {
    Path::new(m)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && !m.starts_with("preset "))
        .unwrap_or_else(|| m.to_string())
}

pub fn fmt_age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// The plain-text table.
pub fn table(dir: &Path, recs: &[StatusRecord]) -> String {
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
            model_label(&r),
            r.adapter
        );
    }
    out
}
