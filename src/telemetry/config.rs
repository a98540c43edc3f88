//! The watchdog's flags and environment variables, and how they combine.
//!
//! Precedence, for each of the soft and hard limits: a `--mem-*-mb` flag, then a `--mem-*-pct`
//! flag, then `XLSTM_MEM_*_MB`, then `XLSTM_MEM_*_PCT`, then the default percentage. So flags
//! always win over the environment, and within one layer an absolute limit wins over a percentage.

use crate::error::{Error, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Default soft limit, percent of RAM.
pub const DEFAULT_SOFT_PCT: f64 = 85.0;
/// Default hard limit, percent of RAM.
pub const DEFAULT_HARD_PCT: f64 = 92.0;
/// Default sampling period.
pub const DEFAULT_POLL_MS: u64 = 200;

/// Memory watchdog flags, shared by every command that runs a model.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Memory watchdog")]
pub struct MemArgs {
    /// Soft limit as percent of RAM [env XLSTM_MEM_SOFT_PCT; default 85].
    #[arg(long, value_name = "PCT", value_parser = pct_flag)]
    pub mem_soft_pct: Option<f64>,
    /// Hard limit as percent of RAM [env XLSTM_MEM_HARD_PCT; default 92].
    #[arg(long, value_name = "PCT", value_parser = pct_flag)]
    pub mem_hard_pct: Option<f64>,
    /// Soft limit in MiB (wins over a percentage) [env XLSTM_MEM_SOFT_MB].
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub mem_soft_mb: Option<u64>,
    /// Hard limit in MiB (wins over a percentage) [env XLSTM_MEM_HARD_MB].
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..))]
    pub mem_hard_mb: Option<u64>,
    /// What crossing the soft limit does, comma separated: warn, empty_cache, or none
    /// [env XLSTM_MEM_ACTION; default warn,empty_cache].
    #[arg(long, value_name = "LIST", value_parser = action_flag)]
    pub mem_action: Option<String>,
    /// Sampling period in milliseconds [env XLSTM_MEM_POLL_MS; default 200].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(POLL_MS_RANGE))]
    pub mem_every: Option<u64>,
    /// Write one CSV row per sample to this file (time, rss_mb, sys_avail_mb, gpu_live_mb,
    /// gpu_pooled_mb, gpu_peak_mb, phase, tokens). Written as the run goes (kept if it fails); an
    /// existing regular file is truncated, anything else (a link, FIFO, device) is refused.
    #[arg(long, value_name = "FILE.csv")]
    pub mem_log: Option<PathBuf>,
}

/// A memory limit.
#[derive(Clone, Debug, PartialEq)]
pub enum Limit {
    /// Percent of the system's (or cgroup's) RAM.
    Percent(f64),
    /// MiB.
    Mb(u64),
}

impl Limit {
    /// The limit in bytes, given the RAM size.
    pub fn bytes(&self, total_ram: u64) -> u64 {
        match *self {
            Limit::Percent(p) => (total_ram as f64 * p / 100.0) as u64,
            Limit::Mb(mb) => mb.saturating_mul(1 << 20),
        }
    }
}

/// The watchdog's settings after flags and environment are combined.
#[derive(Clone, Debug, PartialEq)]
pub struct MemConfig {
    /// Limits and actions apply (`XLSTM_MEM_WATCHDOG`); sampling, the CSV log and the status
    /// record work either way.
    pub enabled: bool,
    pub poll: Duration,
    pub soft: Limit,
    pub hard: Limit,
    /// Where each limit came from, for messages ("--mem-hard-mb 400", "default: 92% of RAM").
    pub soft_from: String,
    pub hard_from: String,
    /// No flag or variable set the soft limit (it may then follow a lower hard limit).
    pub soft_is_default: bool,
    /// Soft action: print a warning line.
    pub warn: bool,
    /// Soft action: release the pool's cached buffers (`BufferPool::trim`).
    pub empty_cache: bool,
    pub log: Option<PathBuf>,
    /// Publish a status record and accept control commands (`XLSTM_TELEMETRY`).
    pub telemetry: bool,
}

impl Default for MemConfig {
    fn default() -> Self {
        MemArgs::default()
            .resolve_with(|_| None)
            // Invariant: the built-in defaults resolve without any environment.
            .expect("the defaults are valid")
    }
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        _ => Err(Error::Input(format!("{name}={v}: expected 1/on/true or 0/off/false"))),
    }
}

fn parse_env<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<Option<T>> {
    match v {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::Input(format!("{name}={s}: expected a number"))),
    }
}

fn check_pct(what: &str, p: f64) -> Result<f64> {
    if p.is_finite() && p > 0.0 && p <= 100.0 {
        Ok(p)
    } else {
        Err(Error::Input(format!(
            "{what} must be a percentage in (0, 100], got {p}"
        )))
    }
}

fn check_mb(what: &str, mb: u64) -> Result<u64> {
    if mb > 0 {
        Ok(mb)
    } else {
        Err(Error::Input(format!("{what} must be a positive number of MiB")))
    }
}

// The flags' values are checked by clap as they are parsed (a bad one is a usage error, exit
// code 2); the same checks below apply to the environment variables (exit code 1).

/// The sampling periods accepted, in milliseconds.
const POLL_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=60_000;

fn pct_flag(text: &str) -> std::result::Result<f64, String> {
    let p: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number"))?;
    check_pct("the limit", p).map_err(|e| match e {
        Error::Input(m) => m,
        e => e.to_string(),
    })
}

fn action_flag(text: &str) -> std::result::Result<String, String> {
    unknown_action(text).map_or(Ok(text.to_string()), |a| {
        Err(format!("unknown action `{a}` ({ACTIONS})"))
    })
}

/// The soft actions, for messages.
const ACTIONS: &str = "warn, empty_cache, none";

/// The first entry of an action list that is not an action.
fn unknown_action(list: &str) -> Option<&str> {
    list.split(',')
        .map(str::trim)
        .find(|a| !matches!(*a, "" | "warn" | "empty_cache" | "empty-cache" | "none"))
}

fn parse_actions(what: &str, list: &str) -> Result<(bool, bool)> {
    if let Some(a) = unknown_action(list) {
        return Err(Error::Input(format!("{what}: unknown action `{a}` ({ACTIONS})")));
    }
    let (mut warn, mut empty) = (false, false);
    for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match a {
            "warn" => warn = true,
            "empty_cache" | "empty-cache" => empty = true,
            _ => {}
        }
    }
    Ok((warn, empty))
}

impl MemConfig {
    /// Refuses a soft limit set above the hard one (the soft actions could then never come
    /// first), naming both limits and where each came from. A default soft limit above a lower
    /// hard limit follows it instead: it becomes the same fraction of the hard limit as the
    /// defaults are (85/92). `total_ram` resolves percentages.
    pub fn settle_limits(&mut self, total_ram: u64) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let (soft, hard) = (self.soft.bytes(total_ram), self.hard.bytes(total_ram));
        if soft > hard && self.soft_is_default {
            let ratio = DEFAULT_SOFT_PCT / DEFAULT_HARD_PCT;
            self.soft = Limit::Percent(hard as f64 * ratio / total_ram.max(1) as f64 * 100.0);
            self.soft_from = format!("default: {DEFAULT_SOFT_PCT}/{DEFAULT_HARD_PCT} of the hard limit");
            return Ok(());
        }
        if soft > hard {
            return Err(Error::Input(format!(
                "the soft memory limit {:.1} MiB ({}) is above the hard limit {:.1} MiB ({})",
                soft as f64 / MIB,
                self.soft_from,
                hard as f64 / MIB,
                self.hard_from
            )));
        }
        Ok(())
    }
}

const MIB: f64 = (1u64 << 20) as f64;

impl MemArgs {
    /// Combines the flags with the process environment.
    pub fn resolve(&self) -> Result<MemConfig> {
        self.resolve_with(|k| std::env::var(k).ok())
    }

    /// Combines the flags with an environment given as a lookup function (for tests).
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<MemConfig> {
        let limit =
            |flag_mb: Option<u64>, flag_pct: Option<f64>, kind: &str, default: f64| -> Result<(Limit, String)> {
                if let Some(mb) = flag_mb {
                    let name = format!("--mem-{kind}-mb");
                    return Ok((Limit::Mb(check_mb(&name, mb)?), format!("{name} {mb}")));
                }
                if let Some(p) = flag_pct {
                    let name = format!("--mem-{kind}-pct");
                    return Ok((Limit::Percent(check_pct(&name, p)?), format!("{name} {p}")));
                }
                let up = kind.to_ascii_uppercase();
                let mb_name = format!("XLSTM_MEM_{up}_MB");
                if let Some(mb) = parse_env::<u64>(&mb_name, env(&mb_name))? {
                    return Ok((Limit::Mb(check_mb(&mb_name, mb)?), format!("{mb_name}={mb}")));
                }
                let pct_name = format!("XLSTM_MEM_{up}_PCT");
                if let Some(p) = parse_env::<f64>(&pct_name, env(&pct_name))? {
                    return Ok((
                        Limit::Percent(check_pct(&pct_name, p)?),
                        format!("{pct_name}={p}: {p}% of RAM"),
                    ));
                }
                Ok((Limit::Percent(default), format!("default: {default}% of RAM")))
            };
        let (soft, soft_from) = limit(self.mem_soft_mb, self.mem_soft_pct, "soft", DEFAULT_SOFT_PCT)?;
        let soft_is_default = soft_from.starts_with("default");
        let (hard, hard_from) = limit(self.mem_hard_mb, self.mem_hard_pct, "hard", DEFAULT_HARD_PCT)?;

        let (warn, empty_cache) = match (&self.mem_action, env("XLSTM_MEM_ACTION")) {
            (Some(list), _) => parse_actions("--mem-action", list)?,
            (None, Some(list)) if !list.trim().is_empty() => parse_actions("XLSTM_MEM_ACTION", &list)?,
            _ => (true, true),
        };

        let poll_ms = match self.mem_every {
            Some(ms) => Some(("--mem-every", ms)),
            None => {
                parse_env::<u64>("XLSTM_MEM_POLL_MS", env("XLSTM_MEM_POLL_MS"))?.map(|ms| ("XLSTM_MEM_POLL_MS", ms))
            }
        };
        let poll_ms = match poll_ms {
            Some((what, ms)) if !POLL_MS_RANGE.contains(&ms) => {
                return Err(Error::Input(format!(
                    "{what} must be between 10 and 60000 ms, got {ms}"
                )))
            }
            Some((_, ms)) => ms,
            None => DEFAULT_POLL_MS,
        };

        let limit_flag_given = self.mem_soft_mb.is_some()
            || self.mem_soft_pct.is_some()
            || self.mem_hard_mb.is_some()
            || self.mem_hard_pct.is_some()
            || self.mem_action.is_some();
        let enabled = match env("XLSTM_MEM_WATCHDOG") {
            Some(v) if !v.trim().is_empty() => parse_bool("XLSTM_MEM_WATCHDOG", &v)? || limit_flag_given,
            _ => true,
        };
        let telemetry = match env("XLSTM_TELEMETRY") {
            Some(v) if !v.trim().is_empty() => parse_bool("XLSTM_TELEMETRY", &v)?,
            _ => true,
        };
        if let Some(p) = &self.mem_log {
            crate::files::check_output_path(p)?;
        }
        Ok(MemConfig {
            enabled,
            poll: Duration::from_millis(poll_ms),
            soft,
            hard,
            soft_from,
            hard_from,
            soft_is_default,
            warn,
            empty_cache,
            log: self.mem_log.clone(),
            telemetry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let c = MemArgs::default().resolve_with(env(&[])).unwrap();
        assert!(c.enabled && c.telemetry && c.warn && c.empty_cache);
        assert_eq!(c.soft, Limit::Percent(85.0));
        assert_eq!(c.hard, Limit::Percent(92.0));
        assert_eq!(c.poll, Duration::from_millis(200));
        assert_eq!(c.hard.bytes(1000 << 20), 920 << 20);
    }

    #[test]
    fn flags_win_over_environment_and_mb_over_pct() {
        let e = env(&[
            ("XLSTM_MEM_HARD_MB", "500"),
            ("XLSTM_MEM_SOFT_PCT", "50"),
            ("XLSTM_MEM_POLL_MS", "50"),
            ("XLSTM_MEM_ACTION", "warn"),
        ]);
        let c = MemArgs::default().resolve_with(&e).unwrap();
        assert_eq!(c.hard, Limit::Mb(500));
        assert_eq!(c.soft, Limit::Percent(50.0));
        assert_eq!(c.poll, Duration::from_millis(50));
        assert!(c.warn && !c.empty_cache);
        let a = MemArgs {
            mem_hard_pct: Some(70.0),
            mem_soft_pct: Some(60.0),
            mem_soft_mb: Some(100),
            mem_every: Some(20),
            mem_action: Some("empty_cache".into()),
            ..Default::default()
        };
        let c = a.resolve_with(&e).unwrap();
        assert_eq!(c.hard, Limit::Percent(70.0), "a flag wins over the environment");
        assert_eq!(c.soft, Limit::Mb(100), "MiB wins over percent in the same layer");
        assert_eq!(c.poll, Duration::from_millis(20));
        assert!(!c.warn && c.empty_cache);
    }

    #[test]
    fn bad_values_are_errors() {
        let bad = [
            MemArgs {
                mem_hard_pct: Some(0.0),
                ..Default::default()
            },
            MemArgs {
                mem_hard_pct: Some(101.0),
                ..Default::default()
            },
            MemArgs {
                mem_soft_mb: Some(0),
                ..Default::default()
            },
            MemArgs {
                mem_every: Some(1),
                ..Default::default()
            },
            MemArgs {
                mem_action: Some("explode".into()),
                ..Default::default()
            },
        ];
        for a in bad {
            assert!(matches!(a.resolve_with(env(&[])), Err(Error::Input(_))), "{a:?}");
        }
        for (k, v) in [
            ("XLSTM_MEM_HARD_PCT", "lots"),
            ("XLSTM_MEM_WATCHDOG", "maybe"),
            ("XLSTM_MEM_POLL_MS", "0"),
        ] {
            assert!(MemArgs::default().resolve_with(env(&[(k, v)])).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn a_soft_limit_set_above_the_hard_one_is_refused_with_both_sources() {
        let ram = 16u64 << 30;
        let a = MemArgs {
            mem_soft_mb: Some(2000),
            mem_hard_mb: Some(1500),
            ..Default::default()
        };
        let e = a.resolve_with(env(&[])).unwrap().settle_limits(ram).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Input(_)), "{msg}");
        for needle in ["2000.0 MiB (--mem-soft-mb 2000)", "1500.0 MiB (--mem-hard-mb 1500)"] {
            assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
        }
        // A percentage against an absolute limit, from the environment: 90% of 16 GiB > 1 GiB.
        let e = MemArgs::default()
            .resolve_with(env(&[("XLSTM_MEM_HARD_MB", "1024"), ("XLSTM_MEM_SOFT_PCT", "90")]))
            .unwrap()
            .settle_limits(ram)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(XLSTM_MEM_SOFT_PCT=90: 90% of RAM)") && e.contains("(XLSTM_MEM_HARD_MB=1024)"),
            "{e}"
        );
        // The default soft limit follows a lower hard limit.
        let mut c = MemArgs {
            mem_hard_mb: Some(920),
            ..Default::default()
        }
        .resolve_with(env(&[]))
        .unwrap();
        c.settle_limits(ram).unwrap();
        let soft_mb = c.soft.bytes(ram) as f64 / MIB;
        assert!((soft_mb - 850.0).abs() < 1.0, "{soft_mb}");
        assert!(c.soft_from.contains("of the hard limit"), "{}", c.soft_from);
        // Equal limits, the defaults, and a switched-off watchdog are accepted as they are.
        let equal = MemArgs {
            mem_soft_mb: Some(1500),
            mem_hard_mb: Some(1500),
            ..Default::default()
        };
        equal.resolve_with(env(&[])).unwrap().settle_limits(ram).unwrap();
        let mut d = MemConfig::default();
        d.settle_limits(ram).unwrap();
        assert_eq!(d, MemConfig::default());
        let mut off = MemArgs::default()
            .resolve_with(env(&[
                ("XLSTM_MEM_WATCHDOG", "0"),
                ("XLSTM_MEM_SOFT_MB", "9"),
                ("XLSTM_MEM_HARD_MB", "1"),
            ]))
            .unwrap();
        off.settle_limits(ram).unwrap();
    }

    #[test]
    fn watchdog_switch() {
        let off = env(&[("XLSTM_MEM_WATCHDOG", "0"), ("XLSTM_TELEMETRY", "off")]);
        let c = MemArgs::default().resolve_with(&off).unwrap();
        assert!(!c.enabled && !c.telemetry);
        let flagged = MemArgs {
            mem_hard_mb: Some(10),
            ..Default::default()
        };
        assert!(
            flagged.resolve_with(&off).unwrap().enabled,
            "an explicit limit flag wins"
        );
    }
}
