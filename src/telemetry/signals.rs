//! SIGINT (Ctrl-C) and SIGTERM for the commands that run a model.
//!
//! Once [`install`]ed, a thread of this process receives both signals. While a run is
//! interruptible (a [`Watchdog`](super::Watchdog) started with
//! [`Watchdog::start_interruptible`](super::Watchdog::start_interruptible) is alive), the first
//! signal is recorded: the watchdog's stop hook then fails the run at its next safe point, the
//! command's destructors remove its temporary output and status record, and the binary exits with
//! 128 + the signal number (130 for SIGINT, 143 for SIGTERM). A second signal, or one that comes
//! while no run is interruptible, ends the process at once with the same code, after running the
//! registered [`on_exit`] clean-ups (temporary files, the status record), which an immediate exit
//! would otherwise skip.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The first signal received while a run was interruptible (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether a run stops gracefully on the first signal.
static INTERRUPTIBLE: AtomicBool = AtomicBool::new(false);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
type Action = Box<dyn Fn() + Send>;
static ON_EXIT: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());
static INSTALLED: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// The exit code of a process ended by `signal` (the shell's convention).
pub fn exit_code_for(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

/// The name of a signal this module handles.
pub fn name(signal: i32) -> &'static str {
    #[cfg(unix)]
    {
        if signal == libc::SIGINT {
            return "SIGINT";
        }
        if signal == libc::SIGTERM {
            return "SIGTERM";
        }
    }
    let _ = signal;
    "a signal"
}

/// The first signal received while a run was interruptible, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The error a run stopped by a signal ends with ([`Error::Stopped`]; the binaries turn it into
/// exit code 128 + the signal number while [`received`] says one came).
pub fn interrupted_error(signal: i32, at: &str) -> Error {
    Error::Stopped(format!("interrupted by {}; stopped at a safe point {at}", name(signal)))
}

/// Starts the signal thread (once per process).
pub fn install() -> Result<()> {
    INSTALLED
        .get_or_init(start_thread)
        .clone()
        .map_err(|e| Error::Input(format!("handling SIGINT/SIGTERM: {e}")))
}

#[cfg(unix)]
fn start_thread() -> std::result::Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("xlstm-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let first = INTERRUPTIBLE.load(Ordering::SeqCst)
                    && RECEIVED
                        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                if first {
                    eprintln!(
                        "xlstm: {} received: stopping at the next safe point (again to quit at once)",
                        name(sig)
                    );
                    continue;
                }
                run_exit_actions();
                std::process::exit(exit_code_for(sig) as i32);
            }
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(not(unix))]
fn start_thread() -> std::result::Result<(), String> {
    // Ctrl-C keeps its default effect; only Unix signals are handled.
    Ok(())
}

#[cfg_attr(not(unix), allow(dead_code))]
fn run_exit_actions() {
    let actions = ON_EXIT.lock().unwrap_or_else(|p| p.into_inner());
    for (_, action) in actions.iter() {
        action();
    }
}

/// Marks the process's run as interruptible (or not): see the module docs.
pub(crate) fn set_interruptible(on: bool) {
    INTERRUPTIBLE.store(on, Ordering::SeqCst);
}

/// A clean-up run if the process exits at once on a signal; unregistered when dropped.
pub struct ExitAction {
    id: u64,
}

/// Registers `action` (e.g. removing a temporary file) to run before an immediate exit on a
/// signal. It runs on the signal thread while the rest of the process is still running.
pub fn on_exit(action: impl Fn() + Send + 'static) -> ExitAction {
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    ON_EXIT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, Box::new(action)));
    ExitAction { id }
}

/// Registers the removal of `path` (a temporary file) before an immediate exit on a signal.
pub fn remove_on_exit(path: &std::path::Path) -> ExitAction {
    let path = path.to_path_buf();
    on_exit(move || {
        let _ = std::fs::remove_file(&path);
    })
}

impl Drop for ExitAction {
    fn drop(&mut self) {
        ON_EXIT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(id, _)| *id != self.id);
    }
}
