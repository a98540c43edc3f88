//! `xltop --serve [ADDR]`: the monitor as a web page. One page (served from this binary: no CDN,
//! nothing from the internet) lists the processes and charts the selected one's tok/s, GPU pool
//! memory and resident memory against its limits; JSON endpoints mirror `--json` and a
//! server-sent-events stream mirrors `--json-stream`; two POST endpoints are the TUI's Kill and
//! Empty-cache actions.
//!
//! Routes:
//!
//!     GET  /                                   the page (index.html, app.js, style.css, favicon.svg)
//!     GET  /api/snapshot                       one snapshot, as `xltop --json` prints it
//!     GET  /api/stream                         text/event-stream, one snapshot per refresh
//!     GET  /api/history                        the samples kept per process, for the charts
//!     POST /api/processes/<pid>/kill           needs the X-Xltop-Token header
//!     POST /api/processes/<pid>/empty-cache    needs the X-Xltop-Token header
//!
//! Defences. Any web page the user opens can send requests to a local port, so:
//! - an action needs the per-server token (random, printed in the terminal only, compared in
//!   constant time) in a request header, which a cross-site form cannot set and a cross-site
//!   script cannot learn: the page gets it from the URL fragment the terminal prints, which is
//!   never sent to the server nor served back;
//! - every request whose Host is not this server's own address is refused, which defeats DNS
//!   rebinding (a foreign name made to resolve to this address), and so is every request that
//!   carries an Origin other than this server's;
//! - the page forbids framing and foreign scripts (Content-Security-Policy), and its script
//!   writes record text only as text, never as markup.

use crate::control::Control;
use crate::stream::{records, snapshot, snapshot_of};
use crate::text::{sanitize, say};
use crate::Args;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};
use xlstm_wgpu::telemetry::status::{unix_now, StatusRecord};

/// Where `--serve` without an address listens: the port of the Ray dashboard, loopback only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8265";

/// Samples kept per process for the charts (ten minutes at the default refresh).
const HISTORY: usize = 600;

/// Event streams served at once; more get 503 (each holds a thread and a connection).
const MAX_STREAMS: usize = 16;

/// The header an action must carry the token in.
const TOKEN_HEADER: &str = "X-Xltop-Token";

/// A comment line sent on an event stream when no snapshot came for this long, so that a stream
/// whose reader went away is noticed (the write fails) and its thread ends.
const KEEPALIVE: Duration = Duration::from_secs(15);

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const STYLE_CSS: &str = include_str!("web/style.css");
const FAVICON_SVG: &str = include_str!("web/favicon.svg");

/// Only this binary's own files: no inline script or style, no other origin, no framing (a
/// foreign page could otherwise frame the dashboard and trick a click on Kill).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The address of `--serve ADDR`: `IP:PORT` (`[v6]:PORT` for IPv6) or `localhost:PORT`. A name
/// other than localhost is refused: the server only answers requests addressed to its own IP (or
/// localhost), see [`Authority`].
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let bad =
        || format!("--serve: `{text}` is not an address to listen on (IP:PORT, e.g. {DEFAULT_ADDR} or 0.0.0.0:8265)");
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let port = text
        .strip_prefix("localhost:")
        .ok_or_else(bad)?
        .parse::<u16>()
        .map_err(|_| bad())?;
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// The per-server secret an action must present.
struct Token(String);

impl Token {
    /// 32 bytes from the operating system's generator, as hex.
    fn new() -> Result<Token, String> {
        use rand::TryRngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| format!("cannot draw a random token: {e}"))?;
        Ok(Token(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// Constant-time comparison, so that the time a refusal takes does not tell how many leading
    /// characters were right.
    fn matches(&self, given: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(given.trim().as_bytes()))
    }
}

/// The `host[:port]` values this server accepts in Host and Origin: its own port, and a host that
/// names the address it listens on (an IP literal cannot be rebound to another address, unlike a
/// DNS name; `localhost` resolves to loopback by the browser's own rules).
struct Authority {
    local: SocketAddr,
}

impl Authority {
    fn allows(&self, authority: &str) -> bool {
        let (host, port) = match split_authority(authority) {
            Some(hp) => hp,
            None => return false,
        };
        if port.unwrap_or(80) != self.local.port() {
            return false;
        }
        let ip = self.local.ip();
        if host.eq_ignore_ascii_case("localhost") {
            return ip.is_loopback() || ip.is_unspecified();
        }
        let Ok(named) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else {
            return false;
        };
        named == ip || (ip.is_unspecified() && !named.is_unspecified())
    }

    /// An Origin header: `http://` and an allowed authority (`null` and other schemes are not).
    fn allows_origin(&self, origin: &str) -> bool {
        origin
            .strip_prefix("http://")
            .is_some_and(|a| !a.contains('/') && self.allows(a))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` into host and port.
fn split_authority(a: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if a.starts_with('[') {
        let end = a.find(']')?;
        let rest = &a[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        (&a[..=end], port)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// One refresh's figures of one process, for the charts.
struct Sample {
    time: f64,
    tok_per_s: f64,
    tokens: u64,
    rss: u64,
    live: u64,
    pooled: u64,
    peak: u64,
}

/// What the sampler thread publishes: the latest snapshot (already serialised, shared by every
/// stream) and the history of each process it has seen running.
struct Shared {
    seq: u64,
    snapshot: Arc<str>,
    history: HashMap<u32, VecDeque<Sample>>,
}

struct State {
    dir: PathBuf,
    clean: bool,
    poll: Duration,
    token: Token,
    authority: Authority,
    control: Mutex<Control>,
    shared: Mutex<Shared>,
    updated: Condvar,
    streams: AtomicUsize,
    /// Request threads running (`dispatch`).
    handlers: AtomicUsize,
    stop: Arc<AtomicBool>,
}

/// A poisoned lock only means another request's thread panicked; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// Reads the records once, publishes the snapshot and extends the histories.
    fn sample(&self) {
        let recs = records(&self.dir, self.clean);
        let snap = snapshot_of(&self.dir, &recs);
        // The snapshot's own time, so that the page can tell a streamed snapshot from one
        // already in the history it loaded.
        let time = snap["time"].as_f64().unwrap_or_else(unix_now);
        let json: Arc<str> = snap.to_string().into();
        let mut shared = lock(&self.shared);
        shared.seq += 1;
        shared.snapshot = json;
        add_samples(&mut shared.history, &recs, time);
        drop(shared);
        self.updated.notify_all();
    }

    /// The history as JSON: per pid, one array per figure (the charts' series).
    fn history_json(&self) -> String {
        let shared = lock(&self.shared);
        let mut procs = serde_json::Map::new();
        for (pid, h) in &shared.history {
            let col =
                |f: &dyn Fn(&Sample) -> serde_json::Value| -> Vec<serde_json::Value> { h.iter().map(f).collect() };
            procs.insert(
                pid.to_string(),
                serde_json::json!({
                    "time": col(&|s| s.time.into()),
                    "tok_per_s": col(&|s| s.tok_per_s.into()),
                    "tokens": col(&|s| s.tokens.into()),
                    "rss_bytes": col(&|s| s.rss.into()),
                    "gpu_live_bytes": col(&|s| s.live.into()),
                    "gpu_pooled_bytes": col(&|s| s.pooled.into()),
                    "gpu_peak_bytes": col(&|s| s.peak.into()),
                }),
            );
        }
        serde_json::json!({
            "interval_s": self.poll.as_secs_f64(),
            "max_samples": HISTORY,
            "processes": procs,
        })
        .to_string()
    }
}

/// Appends this refresh's figures of every running process and forgets processes that are gone.
fn add_samples(history: &mut HashMap<u32, VecDeque<Sample>>, recs: &[StatusRecord], now: f64) {
    for r in recs.iter().filter(|r| !r.stale) {
        let h = history.entry(r.pid).or_default();
        h.push_back(Sample {
            time: now,
            tok_per_s: r.tok_per_s,
            tokens: r.tokens,
            rss: r.rss_bytes,
            live: r.gpu_live_bytes,
            pooled: r.gpu_pooled_bytes,
            peak: r.gpu_peak_bytes,
        });
        while h.len() > HISTORY {
            h.pop_front();
        }
    }
    history.retain(|pid, _| recs.iter().any(|r| r.pid == *pid));
}

fn header(name: &str, value: &str) -> Header {
    // Every name and value here is a constant or ASCII this module built.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("an ASCII header")
}

/// A response with the headers every answer carries.
fn respond(req: Request, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
    let resp = Response::from_data(body.into())
        .with_status_code(StatusCode(status))
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Referrer-Policy", "no-referrer"))
        .with_header(header("Content-Security-Policy", CSP))
        .with_header(header("X-Frame-Options", "DENY"));
    // The client may have gone; nothing to tell it then.
    let _ = req.respond(resp);
}

fn respond_json(req: Request, status: u16, body: String) {
    respond(req, status, "application/json", body);
}

/// An action's or a refusal's answer: `{"ok": .., "message": ..}`.
fn respond_message(req: Request, status: u16, message: &str) {
    let body = serde_json::json!({ "ok": status < 300, "message": message }).to_string();
    respond_json(req, status, body);
}

fn header_value<'a>(req: &'a Request, name: &'static str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Serves until Ctrl-C (SIGINT) or SIGTERM.
pub fn run(args: &Args, dir: &Path, addr: &str) -> Result<(), String> {
    let wanted = parse_addr(addr)?;
    let server = Server::http(wanted).map_err(|e| format!("cannot listen on {wanted}: {e}"))?;
    let local = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("cannot listen on {wanted}: not an IP socket"))?;
    let stop = Arc::new(AtomicBool::new(false));
    // The first Ctrl-C (or SIGTERM) ends the loop below; a second one, should the server not have
    // stopped, ends the process at once with the shell's code for the signal.
    #[cfg(unix)]
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let code = xlstm_wgpu::telemetry::signals::exit_code_for(sig) as i32;
        signal_hook::flag::register_conditional_shutdown(sig, code, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|e| format!("handling Ctrl-C: {e}"))?;
    }
    let state = Arc::new(State {
        dir: dir.to_path_buf(),
        clean: args.clean,
        poll: Duration::from_secs_f64(args.poll),
        token: Token::new()?,
        authority: Authority { local },
        control: Mutex::new(Control::new(dir, args.kill_grace)),
        shared: Mutex::new(Shared {
            seq: 0,
            snapshot: "{}".into(),
            history: HashMap::new(),
        }),
        updated: Condvar::new(),
        streams: AtomicUsize::new(0),
        handlers: AtomicUsize::new(0),
        stop: Arc::clone(&stop),
    });
    state.sample();

    let url = format!("http://{}/", display_authority(local));
    say(&format!("dashboard on {url} (Ctrl-C stops)"));
    say(&format!(
        "actions token: {} (open {url}#token={} to enable Kill and Empty cache)",
        state.token.0, state.token.0
    ));
    if !local.ip().is_loopback() {
        say(&format!(
            "warning: listening on {local}, not loopback: whoever reaches it sees the runs, and plain \
             HTTP shows the token to the network on every action"
        ));
    }

    let sampler = {
        let state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("xltop-sampler".into())
            .spawn(move || sample_loop(&state))
            .map_err(|e| format!("cannot start the sampler thread: {e}"))?
    };
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(req)) => dispatch(&state, req),
            Ok(None) => {}
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                state.updated.notify_all();
                return Err(format!("serving on {local}: {e}"));
            }
        }
    }
    state.updated.notify_all();
    let _ = sampler.join();
    say("stopped serving");
    Ok(())
}

/// `ip:port`, with brackets for IPv6.
fn display_authority(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", a.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", a.port()),
    }
}

fn sample_loop(state: &State) {
    let mut next = Instant::now() + state.poll;
    while !state.stop.load(Ordering::SeqCst) {
        for m in lock(&state.control).tick() {
            say(&m);
        }
        let now = Instant::now();
        if now >= next {
            state.sample();
            next = now + state.poll;
        }
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        );
    }
}

/// Requests answered at once, each on its own thread, so a client that stops reading its answer
/// holds up only itself; past this many, a request gets a 503.
const MAX_HANDLERS: usize = 32;

fn dispatch(state: &Arc<State>, req: Request) {
    if state.handlers.fetch_add(1, Ordering::SeqCst) >= MAX_HANDLERS {
        state.handlers.fetch_sub(1, Ordering::SeqCst);
        return respond_message(req, 503, "busy: too many requests at once");
    }
    let st = Arc::clone(state);
    let spawned = std::thread::Builder::new().name("xltop-request".into()).spawn(move || {
        handle(&st, req);
        st.handlers.fetch_sub(1, Ordering::SeqCst);
    });
    if spawned.is_err() {
        // The request went with the closure; its client sees the connection close.
        state.handlers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn handle(state: &Arc<State>, req: Request) {
    // Host is mandatory in HTTP/1.1; a request without one cannot be shown to be addressed here.
    let host_ok = header_value(&req, "Host").is_some_and(|h| state.authority.allows(h.trim()));
    if !host_ok {
        return respond_message(req, 403, "refused: the Host header does not name this server");
    }
    if let Some(origin) = header_value(&req, "Origin") {
        if !state.authority.allows_origin(origin.trim()) {
            return respond_message(req, 403, "refused: the request comes from another origin");
        }
    }
    let path = req.url().split(['?', '#']).next().unwrap_or("").to_string();
    let method = req.method().clone();
    let is_get = matches!(method, Method::Get | Method::Head);
    match path.as_str() {
        "/" | "/index.html" if is_get => respond(req, 200, "text/html; charset=utf-8", INDEX_HTML),
        "/app.js" if is_get => respond(req, 200, "text/javascript; charset=utf-8", APP_JS),
        "/style.css" if is_get => respond(req, 200, "text/css; charset=utf-8", STYLE_CSS),
        "/favicon.svg" if is_get => respond(req, 200, "image/svg+xml", FAVICON_SVG),
        "/api/snapshot" if is_get => respond_json(req, 200, snapshot(&state.dir, state.clean).to_string()),
        "/api/history" if is_get => {
            let body = state.history_json();
            respond_json(req, 200, body)
        }
        "/api/stream" if method == Method::Get => start_stream(state, req),
        // A stream has no end to answer a HEAD with.
        "/api/stream" if method == Method::Head => respond_message(req, 405, "the event stream is GET only"),
        _ => match action_of(&path) {
            Some(_) if method != Method::Post => respond_message(req, 405, "an action is a POST"),
            Some(Ok((pid, action))) => act(state, req, pid, action),
            Some(Err(why)) => respond_message(req, 404, &why),
            None if is_get => respond_message(req, 404, "not found"),
            None => respond_message(req, 405, "only GET here"),
        },
    }
}

#[derive(Clone, Copy)]
enum Action {
    Kill,
    EmptyCache,
}

/// `/api/processes/<pid>/<action>`: None for any other path.
fn action_of(path: &str) -> Option<Result<(u32, Action), String>> {
    let rest = path.strip_prefix("/api/processes/")?;
    let (pid, action) = rest.split_once('/')?;
    let Ok(pid) = pid.parse::<u32>() else {
        return Some(Err(format!("`{}` is not a pid", sanitize(pid))));
    };
    Some(match action {
        "kill" => Ok((pid, Action::Kill)),
        "empty-cache" => Ok((pid, Action::EmptyCache)),
        other => Err(format!("unknown action `{}` (kill, empty-cache)", sanitize(other))),
    })
}

fn act(state: &State, req: Request, pid: u32, action: Action) {
    let client = req
        .remote_addr()
        .map_or_else(|| "a client".to_string(), |a| a.to_string());
    let authorised = header_value(&req, TOKEN_HEADER).is_some_and(|t| state.token.matches(t));
    if !authorised {
        say(&format!("refused an action from {client}: missing or wrong token"));
        return respond_message(
            req,
            403,
            "refused: this action needs the token xltop printed in its terminal",
        );
    }
    let result = {
        let mut control = lock(&state.control);
        match action {
            Action::Kill => control.kill(pid),
            Action::EmptyCache => control.empty_cache(pid),
        }
    };
    let (status, message) = match result {
        Ok(m) => (200, m),
        Err(m) => (409, m),
    };
    say(&format!("{message} (from the dashboard, {client})"));
    respond_message(req, status, &message);
    // The page sees the effect (the record's phase, a command handled) at the next refresh.
    state.updated.notify_all();
}

/// Counts a stream for as long as it lives.
struct StreamSlot<'a>(&'a AtomicUsize);

impl Drop for StreamSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn start_stream(state: &Arc<State>, req: Request) {
    if state.streams.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        state.streams.fetch_sub(1, Ordering::SeqCst);
        return respond_message(req, 503, "too many event streams open; close a dashboard tab");
    }
    let stream_state = Arc::clone(state);
    let spawned = std::thread::Builder::new().name("xltop-stream".into()).spawn(move || {
        let state = stream_state;
        let _slot = StreamSlot(&state.streams);
        // tiny_http frames a body of unknown length as chunks of 8 KiB and sends a chunk only
        // when it is full, which would hold a snapshot back for several refreshes; so the stream
        // takes the connection (tiny_http's documented way for bodies it does not frame) and
        // writes the head itself, with a body that ends when the connection closes.
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
                    Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
        let mut out = req.into_writer();
        // A reconnecting page waits a refresh, not the browser's default of several seconds.
        let retry_ms = (state.poll.as_millis() as u64).clamp(500, 5000);
        if write!(out, "{head}retry: {retry_ms}\n\n")
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
        let _ = stream_events(&state, &mut out);
    });
    if spawned.is_err() {
        state.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Writes each new snapshot as one event (`data: <the --json-stream line>`) until the reader goes
/// away or the server stops.
fn stream_events(state: &State, out: &mut dyn Write) -> std::io::Result<()> {
    let mut seen = 0;
    loop {
        let mut shared = lock(&state.shared);
        let deadline = Instant::now() + KEEPALIVE;
        while shared.seq == seen && !state.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500));
            shared = state
                .updated
                .wait_timeout(shared, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        if state.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if shared.seq == seen {
            drop(shared);
            out.write_all(b": keep-alive\n\n")?;
        } else {
            seen = shared.seq;
            let json = Arc::clone(&shared.snapshot);
            drop(shared);
            // A snapshot is compact JSON: one line, so one `data:` field.
            write!(out, "data: {json}\n\n")?;
        }
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> Authority {
        Authority {
            local: addr.parse().unwrap(),
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("127.0.0.1:8265").unwrap().port(), 8265);
        assert!(parse_addr("[::1]:80").unwrap().ip().is_loopback());
        assert!(parse_addr("localhost:9000").unwrap().ip().is_loopback());
        for bad in [
            "",
            "8265",
            "example.com:80",
            "127.0.0.1",
            "127.0.0.1:99999",
            "localhost:x",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_and_origin_must_be_this_server() {
        let a = at("127.0.0.1:8265");
        for ok in ["127.0.0.1:8265", "localhost:8265", "LOCALHOST:8265"] {
            assert!(a.allows(ok), "{ok}");
            assert!(a.allows_origin(&format!("http://{ok}")), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:8266",
            "127.0.0.2:8265",
            "evil.example:8265",
            "localhost.evil.example:8265",
            "[::1]:8265",
            ":8265",
            "",
        ] {
            assert!(!a.allows(bad), "{bad}");
        }
        for bad in [
            "null",
            "https://127.0.0.1:8265",
            "http://evil.example:8265",
            "http://127.0.0.1:8265/x",
        ] {
            assert!(!a.allows_origin(bad), "{bad}");
        }
        let any = at("0.0.0.0:80");
        assert!(any.allows("192.168.1.7") && any.allows("localhost:80") && !any.allows("myhost:80"));
        let v6 = at("[::1]:8265");
        assert!(v6.allows("[::1]:8265") && v6.allows("localhost:8265") && !v6.allows("[::1]"));
    }

    #[test]
    fn token_comparison() {
        let t = Token::new().unwrap();
        assert_eq!(t.0.len(), 64);
        assert!(t.matches(&t.0.clone()));
        assert!(!t.matches(""));
        assert!(!t.matches(&t.0[..63]));
        assert!(!t.matches(&format!("{}0", t.0)));
        assert_ne!(t.0, Token::new().unwrap().0);
    }
}
