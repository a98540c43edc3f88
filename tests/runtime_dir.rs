//! The runtime directory and the control channel against a hostile local user: an unsafe
//! directory (open to others, someone else's, a symbolic link) turns a run's telemetry off with
//! one warning and makes `xltop` refuse it; planted FIFOs, links to `/dev/zero`, big or foreign
//! files are ignored by the run and by `xltop`; `xltop` signals only a process that is verifiably
//! the run of its record; record text cannot inject terminal escapes; intervals are range-checked;
//! and a seeded fuzz loop over mutated records and command files (through the library's readers
//! and real `xltop` runs) finds no panic, hang or multi-line error.
//!
//!     WGPU_BACKEND=vulkan XDG_RUNTIME_DIR=/tmp cargo test --release --test runtime_dir
//!
//! Tests that need a second user (files or directories owned by uid 65534) run when the tests
//! run as root, as in CI; the permission-based cases run for everyone. Unix only: the checks are
//! about Unix owners, modes, FIFOs and symbolic links.

#![cfg(unix)]

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use xlstm_wgpu::telemetry::status::{
    read_command_file, read_record, read_records, take_commands, unix_now, write_record, StatusRecord,
};
use xlstm_wgpu::telemetry::sys::process_identity;

const XLSTM: &str = env!("CARGO_BIN_EXE_xlstm");
const XLTOP: &str = env!("CARGO_BIN_EXE_xltop");
/// How long a process driven by a test may take before the test fails (and kills it).
const TIMEOUT: Duration = Duration::from_secs(60);
/// A user id other than ours, for the attacker's files when the tests run as root.
const OTHER_UID: u32 = 65534;

fn is_root() -> bool {
    xlstm_wgpu::files::current_uid() == 0
}

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join("xlstm-large-mini")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// Waits for a child with a deadline; kills it and fails the test when it does not end in time.
fn wait_bounded(mut child: Child, what: &str) -> Output {
    let t0 = Instant::now();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut b);
        }
        b
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn xltop(dir: &Path, args: &[&str]) -> Output {
    let child = Command::new(XLTOP)
        .args(args)
        .env("XLSTM_RUNTIME_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting xltop");
    wait_bounded(child, &format!("xltop {args:?}"))
}

fn generate(dir: &Path, tokens: &str) -> Child {
    Command::new(XLSTM)
        .args([
            "generate",
            "--prompt",
            "hello",
            "--max-new-tokens",
            tokens,
            "--ignore-eos",
        ])
        .args(["--mem-every", "20", "--model"])
        .arg(model())
        .env("XLSTM_RUNTIME_DIR", dir)
        .env_remove("XLSTM_MEM_WATCHDOG")
        .env_remove("XLSTM_TELEMETRY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting xlstm generate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The unsafe runtime directories a local attacker can prepare: (what, path). The tempdir holds
/// them all and is removed by the caller.
fn unsafe_dirs(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let open = root.join("open");
    std::fs::create_dir(&open).unwrap();
    set_mode(&open, 0o777);
    let group = root.join("group");
    std::fs::create_dir(&group).unwrap();
    set_mode(&group, 0o770);
    let private = root.join("private");
    std::fs::create_dir(&private).unwrap();
    set_mode(&private, 0o700);
    let link = root.join("link");
    std::os::unix::fs::symlink(&private, &link).unwrap();
    let mut dirs = vec![
        ("writable by others", open),
        ("writable by others", group),
        ("symbolic link", link),
    ];
    if is_root() {
        let foreign = root.join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        set_mode(&foreign, 0o700);
        std::os::unix::fs::chown(&foreign, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
        dirs.push(("owned by uid 65534", foreign));
    }
    dirs
}

#[test]
fn an_unsafe_runtime_dir_turns_telemetry_off_with_one_warning_and_its_commands_are_ignored() {
    let root = tempfile::tempdir().unwrap();
    for (why, dir) in unsafe_dirs(root.path()) {
        let child = generate(&dir, "6");
        let pid = child.id();
        // The attacker's `stop`, planted as soon as the pid is known.
        let cmd = dir.join(format!("{pid}.cmd.x"));
        let _ = std::fs::write(&cmd, "stop\n");
        let o = wait_bounded(child, "xlstm generate");
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{why}: the run must go on: {err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("telemetry off")).collect();
        assert_eq!(warnings.len(), 1, "{why}: exactly one warning: {err}");
        assert!(
            warnings[0].starts_with("xlstm: warning: telemetry off: cannot use ")
                && warnings[0].contains(&dir.display().to_string())
                && warnings[0].contains(why),
            "{why}: {}",
            warnings[0]
        );
        assert!(!dir.join(format!("{pid}.json")).exists(), "{why}: no record published");
        let _ = std::fs::remove_file(&cmd);
    }
}

#[test]
fn the_default_runtime_dir_is_created_private() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("xdg");
    std::fs::create_dir(&dir).unwrap();
    let child = Command::new(XLSTM)
        .args(["generate", "--prompt", "hi", "--max-new-tokens", "2", "--model"])
        .arg(model())
        .env_remove("XLSTM_RUNTIME_DIR")
        .env("XDG_RUNTIME_DIR", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait_bounded(child, "xlstm generate");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("telemetry off"), "{}", text(&o.stderr));
    let meta = std::fs::symlink_metadata(dir.join("xlstm")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert_eq!(meta.uid(), xlstm_wgpu::files::current_uid());
}

/// Without `$XLSTM_RUNTIME_DIR` and `$XDG_RUNTIME_DIR` the directory is `<temp dir>/xlstm-<uid>`:
/// named after the real user, not after `$USER` (which anyone can set or unset), so a run and
/// `xltop` meet in the same place whatever the environment says.
#[test]
fn the_fallback_runtime_dir_is_named_after_the_uid_not_the_user_variable() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let expected = tmp.path().join(format!("xlstm-{}", xlstm_wgpu::files::current_uid()));
    let fallback = |cmd: &mut Command| {
        cmd.env_remove("XLSTM_RUNTIME_DIR")
            .env_remove("XDG_RUNTIME_DIR")
            .env("TMPDIR", tmp.path());
    };
    for user in [None, Some("someone-else"), Some("")] {
        let mut cmd = Command::new(XLTOP);
        cmd.arg("--json");
        fallback(&mut cmd);
        match user {
            None => cmd.env_remove("USER").env_remove("LOGNAME").env_remove("USERNAME"),
            Some(u) => cmd.env("USER", u).env("LOGNAME", u),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let o = wait_bounded(child, "xltop --json");
        assert!(o.status.success(), "USER {user:?}: {}", text(&o.stderr));
        let snap: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(snap["dir"].as_str(), Some(expected.to_str().unwrap()), "USER {user:?}");
    }
    // A run without USER creates that same directory, private to us.
    let mut cmd = Command::new(XLSTM);
    cmd.args(["generate", "--prompt", "hi", "--max-new-tokens", "2", "--model"])
        .arg(model())
        .env_remove("USER")
        .env_remove("LOGNAME");
    fallback(&mut cmd);
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let o = wait_bounded(child, "xlstm generate");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let meta = std::fs::symlink_metadata(&expected).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert!(!tmp.path().join("xlstm-user").exists());
}

#[test]
fn xltop_refuses_to_read_or_act_on_an_unsafe_runtime_dir() {
    let root = tempfile::tempdir().unwrap();
    for (why, dir) in unsafe_dirs(root.path()) {
        for args in [&["--json"][..], &["--no-curses", "--count", "1"][..]] {
            let o = xltop(&dir, args);
            let err = text(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{why} {args:?}: {err}");
            assert!(
                err.starts_with("xltop: error: invalid input: unsafe runtime directory: ")
                    && err.contains(why)
                    && err.lines().count() == 1,
                "{why}: {err}"
            );
            assert!(o.stdout.is_empty(), "{why}: nothing read: {}", text(&o.stdout));
        }
    }
    // An absent directory is simply empty.
    let snap: Value = serde_json::from_slice(&xltop(&root.path().join("none"), &["--json"]).stdout).unwrap();
    assert_eq!(snap["processes"].as_array().unwrap().len(), 0);
}

#[test]
fn a_run_ignores_planted_fifos_device_links_and_big_command_files_and_ends_normally() {
    let dir = tempfile::tempdir().unwrap();
    let child = generate(dir.path(), "24");
    let pid = child.id();
    // Planted before the watchdog's first sample: a FIFO used to hang the run at exit, a link to
    // /dev/zero used to grow it without bound.
    mkfifo(&dir.path().join(format!("{pid}.cmd.fifo")));
    std::os::unix::fs::symlink("/dev/zero", dir.path().join(format!("{pid}.cmd.zero"))).unwrap();
    std::fs::write(dir.path().join(format!("{pid}.cmd.big")), "stop\n".repeat(2000)).unwrap();
    let o = wait_bounded(child, "xlstm generate with planted command files");
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "none of them is a `stop`: {err}");
    for needle in ["FIFO", "symbolic link", "bytes, more than the 4096 accepted"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("xlstm: warning: control command ignored: ") && l.contains(needle)),
            "`{needle}` missing: {err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the run removes its record and the planted files: {left:?}"
    );
}

#[test]
fn command_files_must_be_small_regular_files_of_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pid = 4_000_000_001;
    std::fs::write(d.join(format!("{pid}.cmd.1")), "empty_cache\n").unwrap();
    mkfifo(&d.join(format!("{pid}.cmd.2")));
    std::os::unix::fs::symlink("/dev/zero", d.join(format!("{pid}.cmd.3"))).unwrap();
    std::fs::write(d.join(format!("{pid}.cmd.4")), vec![b'x'; 5000]).unwrap();
    std::fs::write(d.join(format!("{pid}.cmd.5")), b"st\xffop\n").unwrap();
    std::fs::write(d.join(format!("{pid}.cmd.6")), "stop\n").unwrap();
    if is_root() {
        let foreign = d.join(format!("{pid}.cmd.7"));
        std::fs::write(&foreign, "stop\n").unwrap();
        std::os::unix::fs::chown(&foreign, Some(OTHER_UID), None).unwrap();
        let e = read_command_file(&foreign).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
    }
    for (n, needle) in [(2, "FIFO"), (3, "symbolic link"), (4, "5000 bytes"), (5, "not UTF-8")] {
        let e = read_command_file(&d.join(format!("{pid}.cmd.{n}")))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{n}: {e}");
    }
    let t0 = Instant::now();
    assert_eq!(take_commands(d, pid), vec!["empty_cache", "stop"]);
    assert!(t0.elapsed() < Duration::from_secs(5), "the FIFO must not block");
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "every command file is taken");
}

#[test]
fn xltop_reads_only_small_regular_record_files_of_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = StatusRecord {
        pid: 4_000_000_010,
        command: "score".into(),
        updated_unix: unix_now(),
        ..Default::default()
    };
    write_record(d, &good).unwrap();
    mkfifo(&d.join("200.json"));
    std::os::unix::fs::symlink("/dev/zero", d.join("201.json")).unwrap();
    std::os::unix::fs::symlink(d.join(format!("{}.json", good.pid)), d.join("202.json")).unwrap();
    let big = serde_json::json!({ "command": "x".repeat(100_000) });
    std::fs::write(d.join("203.json"), big.to_string()).unwrap();
    if is_root() {
        let foreign = d.join("204.json");
        std::fs::write(&foreign, serde_json::to_vec(&good).unwrap()).unwrap();
        std::os::unix::fs::chown(&foreign, Some(OTHER_UID), None).unwrap();
        assert!(read_record(&foreign)
            .unwrap_err()
            .to_string()
            .contains("owned by uid 65534"));
    }
    for (name, needle) in [
        ("200.json", "FIFO"),
        ("201.json", "symbolic link"),
        ("202.json", "symbolic link"),
        ("203.json", "more than the 65536 accepted"),
    ] {
        let e = read_record(&d.join(name)).unwrap_err().to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{name}: {e}");
    }
    let o = xltop(d, &["--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let snap: Value = serde_json::from_slice(&o.stdout).unwrap();
    let pids: Vec<u64> = snap["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids, vec![good.pid as u64], "only the real record is listed");
}

/// A process that is not ours to stop: a `sleep` this test starts and always ends.
struct Bystander(Child);

impl Bystander {
    fn start() -> Self {
        Bystander(Command::new("sleep").arg("60").spawn().expect("starting sleep"))
    }
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends `kill <pid>` through `--stdin-commands` with no grace period; returns stderr.
fn xltop_kill(dir: &Path, pid: u32) -> String {
    let mut child = Command::new(XLTOP)
        .args(["--stdin-commands", "--poll", "0.05", "--kill-grace", "0"])
        .env("XLSTM_RUNTIME_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "kill {pid}").unwrap();
    // Long enough for a grace period of 0 to run out and the escalation to be decided.
    std::thread::sleep(Duration::from_millis(600));
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let o = wait_bounded(child, "xltop kill");
    assert!(o.status.success());
    text(&o.stderr)
}

#[test]
fn xltop_kill_refuses_a_process_that_is_not_the_run_of_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut sleeper = Bystander::start();
    let pid = sleeper.0.id();
    let real = process_identity(pid).expect("the sleep can be inspected");
    let base = StatusRecord {
        pid,
        command: "generate".into(),
        phase: "decode".into(),
        poll_ms: 200,
        updated_unix: unix_now(),
        ..Default::default()
    };
    let mut forged_start = real.clone();
    forged_start.start_time += 1;
    let mut forged_exe = real.clone();
    forged_exe.exe = XLSTM.into();
    let mut forged_uid = real.clone();
    forged_uid.uid = Some(OTHER_UID);
    let cases = [
        (None, "does not say which process wrote it"),
        (Some(forged_start), "started at another time"),
        (Some(forged_exe), "not the record's"),
        (Some(forged_uid), "its user differs"),
    ];
    for (identity, needle) in cases {
        write_record(
            dir.path(),
            &StatusRecord {
                identity,
                ..base.clone()
            },
        )
        .unwrap();
        let snap: Value = serde_json::from_slice(&xltop(dir.path(), &["--json"]).stdout).unwrap();
        let listed_stale = snap["processes"][0]["stale"].as_bool();
        let want_stale = needle != "does not say which process wrote it";
        assert_eq!(listed_stale, Some(want_stale), "{needle}: a reused pid reads as stale");
        let err = xltop_kill(dir.path(), pid);
        assert!(
            err.contains(&format!(
                "refusing to stop process {pid}: it is not the xlstm run of its record: "
            )) && err.contains(needle),
            "{needle}: {err}"
        );
        assert!(!err.contains("SIGTERM") && !err.contains("stop sent"), "{err}");
        assert!(sleeper.alive(), "{needle}: the bystander must not be signalled");
        let cmds: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".cmd."))
            .collect();
        assert!(cmds.is_empty(), "{needle}: no stop command is sent either");
    }
}

#[test]
fn record_text_cannot_inject_terminal_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let evil = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}txt\r\n";
    let rec = StatusRecord {
        pid: 4_000_000_020,
        command: evil.into(),
        phase: evil.into(),
        model: format!("/m/{evil}"),
        adapter: evil.into(),
        backend: evil.into(),
        last_command: Some(evil.into()),
        updated_unix: unix_now(),
        ..Default::default()
    };
    write_record(dir.path(), &rec).unwrap();
    let o = xltop(dir.path(), &["--no-curses", "--count", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let bad: Vec<char> = out
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || c == '\u{202e}')
        .collect();
    assert!(bad.is_empty(), "raw control characters {bad:?} in:\n{out}");
    assert!(out.contains("?[2J?]0;pwned?"), "{out}");
    // Every row stays one line.
    assert_eq!(out.lines().filter(|l| !l.is_empty()).count(), 3, "{out}");
    // JSON keeps the text, escaped.
    let o = xltop(dir.path(), &["--json"]);
    assert!(!o.stdout.contains(&0x1b));
    let snap: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snap["processes"][0]["command"], evil);
}

#[test]
fn intervals_out_of_range_are_refused_at_parse_time() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--poll", "1e308"][..],
        &["--poll", "1e-300"],
        &["--poll", "0"],
        &["--poll", "NaN"],
        &["--poll=-1"],
        &["--kill-grace", "inf"],
        &["--kill-grace=-1"],
        &["--kill-grace", "1e308"],
    ] {
        let mut a = vec!["--no-curses", "--count", "1"];
        a.extend_from_slice(args);
        let o = xltop(dir.path(), &a);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("invalid value") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // On stdin: an error line, the interval is left as it was, and `quit` still works.
    let mut child = Command::new(XLTOP)
        .args(["--stdin-commands", "--poll", "0.5"])
        .env("XLSTM_RUNTIME_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "interval 1e-300\ninterval 1e308\ninterval inf\ninterval 0.01").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let o = wait_bounded(child, "xltop with bad intervals");
    assert!(o.status.success());
    let err = text(&o.stderr);
    for v in ["1e-300", "1e308", "inf", "0.01"] {
        assert!(
            err.contains(&format!("xltop: `interval {v}`: ")) && err.contains("interval unchanged"),
            "{v}: {err}"
        );
    }
    assert!(!err.contains("refreshing every"), "{err}");
    // At 0.5 s, about four tables in 1.5 s (not millions).
    let tables = text(&o.stdout).matches("xltop  ").count();
    assert!((1..=8).contains(&tables), "{tables} tables");
}

/// A small seeded generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// One random edit of a record's or command's bytes.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    const INTERESTING: [&[u8]; 14] = [
        b"\x1b[2J",
        b"\\u001b]0;t\\u0007",
        b"\x00",
        b"\xff\xfe",
        b"\"",
        b"{",
        b"]",
        b"1e308",
        b"-1",
        b"18446744073709551616",
        b"null",
        b"\"identity\":{\"uid\":0,\"start_time\":1,\"exe\":\"/bin/sh\"},",
        b"\n",
        b"stop\n",
    ];
    let at = rng.below(bytes.len() + 1);
    match rng.below(6) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => {
            let ins = rng.pick(&INTERESTING);
            bytes.splice(at..at, ins.iter().copied());
        }
        2 if at < bytes.len() => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            bytes.drain(at..end);
        }
        3 => bytes.truncate(at),
        4 if at < bytes.len() => {
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            let copy = bytes[at..end].to_vec();
            bytes.splice(at..at, copy);
        }
        _ => {
            let n = rng.below(8);
            for _ in 0..n {
                bytes.insert(at.min(bytes.len()), rng.next() as u8);
            }
        }
    }
}

#[test]
fn fuzzed_records_and_command_files_never_panic_hang_or_print_raw_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = 0x5eed_0018_u64;
    let mut rng = Rng(seed);
    let base = serde_json::to_vec_pretty(&StatusRecord {
        pid: 1,
        command: "generate".into(),
        model: "/models/m \u{1b}[31m".into(),
        phase: "decode".into(),
        total_tokens: Some(10),
        progress: Some(0.5),
        tok_per_s: 3.5,
        poll_ms: 200,
        updated_unix: unix_now(),
        last_command: Some("stop".into()),
        identity: process_identity(std::process::id()),
        ..Default::default()
    })
    .unwrap();
    for round in 0..8 {
        for i in 0..40u32 {
            let mut bytes = base.clone();
            for _ in 0..1 + rng.below(6) {
                mutate(&mut rng, &mut bytes);
            }
            let path = d.join(format!("{}.json", 3_000_000_000 + round * 100 + i));
            std::fs::write(&path, &bytes).unwrap();
            if let Err(e) = read_record(&path) {
                assert!(!e.to_string().contains('\n'), "seed {seed:#x}: {e}");
            }
        }
        assert!(read_records(d).len() <= 40);
        let o = xltop(d, &["--json"]);
        assert!(o.status.success(), "seed {seed:#x}: {}", text(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).expect("one JSON snapshot");
        let o = xltop(d, &["--no-curses", "--count", "1"]);
        assert!(o.status.success(), "seed {seed:#x}: {}", text(&o.stderr));
        assert!(
            !text(&o.stdout).chars().any(|c| c.is_control() && c != '\n'),
            "seed {seed:#x}: raw control characters in:\n{}",
            text(&o.stdout)
        );
        for e in std::fs::read_dir(d).unwrap().flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    // Command files: random edits of real commands, some past the size cap.
    let pid = 4_000_000_030;
    for i in 0..300 {
        let mut bytes = rng
            .pick(&[&b"stop\n"[..], b"empty_cache\n", b"stop\nempty_cache\n"])
            .to_vec();
        for _ in 0..rng.below(8) {
            mutate(&mut rng, &mut bytes);
        }
        if rng.below(20) == 0 {
            bytes = bytes.repeat(1 + 5000 / bytes.len().max(1));
        }
        let path = d.join(format!("{pid}.cmd.{i:04}"));
        std::fs::write(&path, &bytes).unwrap();
        match read_command_file(&path) {
            Ok(lines) => assert!(lines.iter().all(|l| !l.contains('\n') && !l.is_empty())),
            Err(e) => assert!(!e.to_string().contains('\n'), "seed {seed:#x}: {e}"),
        }
        if i % 30 == 29 {
            let cmds = take_commands(d, pid);
            assert!(cmds.iter().all(|l| !l.contains('\n') && l.len() <= 4096));
            assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "all taken");
        }
    }
}
