//! `xltop --serve` against a real `xlstm generate` run: the dashboard page in headless Chromium
//! (driven over the DevTools protocol: the process row, charts with points, the Empty-cache
//! button, a screenshot), the JSON and event-stream endpoints against `xltop --json`, the
//! refusals of actions without the token or from another origin or Host (the run keeps going),
//! Kill with the token, and the one-line bind errors and the clean Ctrl-C.
//!
//!     WGPU_BACKEND=vulkan cargo test --release --test xltop_serve
//!
//! The browser test needs Chromium (Debian package `chromium`, which ci/setup installs); without
//! it the test is skipped outside CI. The screenshot is written to
//! `<target>/tmp/xltop-dashboard.png`.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const XLTOP: &str = env!("CARGO_BIN_EXE_xltop");
const TIMEOUT: Duration = Duration::from_secs(40);

type Run = common::generate_run::GenerateRun;

/// A running `xltop --serve` on a port the system picked, with the token it printed.
struct Serve {
    child: Child,
    port: u16,
    token: String,
    /// The lines it prints after the first two (action messages), as they come.
    lines: mpsc::Receiver<String>,
}

impl Serve {
    fn start(rt: &Path) -> Serve {
        let mut child = Command::new(XLTOP)
            .args(["--serve", "127.0.0.1:0", "--poll", "0.2", "--kill-grace", "30"])
            .env("XLSTM_RUNTIME_DIR", rt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting xltop --serve");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = |what: &str| {
            let mut l = String::new();
            err.read_line(&mut l).unwrap();
            assert!(!l.is_empty(), "xltop --serve ended before printing {what}");
            l
        };
        let first = line("its address");
        let url = first
            .strip_prefix("xltop: dashboard on http://127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        let port: u16 = url.split('/').next().unwrap().parse().unwrap();
        assert!(first.contains("(Ctrl-C stops)"), "{first}");
        let second = line("the token");
        let token = second
            .strip_prefix("xltop: actions token: ")
            .and_then(|t| t.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected second line: {second}"))
            .to_string();
        assert!(
            second.contains(&format!("http://127.0.0.1:{port}/#token={token}")),
            "{second}"
        );
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in err.lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Serve {
            child,
            port,
            token,
            lines,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn http(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        http(self.port, method, path, headers)
    }

    fn snapshot(&self) -> Value {
        let (status, body) = self.http("GET", "/api/snapshot", &[]);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("/api/snapshot is JSON")
    }

    /// Waits for a printed line containing `needle`.
    fn wait_line(&self, needle: &str) -> String {
        let t0 = Instant::now();
        loop {
            let left = TIMEOUT.saturating_sub(t0.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!("xltop --serve never printed `{needle}`"),
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request (so the answer is never chunked and the connection closes after it);
/// Host is this server's unless `headers` gives one. Returns the status and the body.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to xltop --serve");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req += &format!("Host: 127.0.0.1:{port}\r\n");
    }
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    (status, body.to_string())
}

fn record_of(snap: &Value, pid: u32) -> Option<Value> {
    snap["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"].as_u64() == Some(pid as u64))
        .cloned()
}

/// Polls the dashboard's snapshot until the run decodes.
fn wait_decoding(serve: &Serve, pid: u32) -> Value {
    let t0 = Instant::now();
    loop {
        if let Some(r) = record_of(&serve.snapshot(), pid) {
            if r["phase"] == "decode" && r["tokens"].as_u64() > Some(2) {
                return r;
            }
        }
        assert!(t0.elapsed() < TIMEOUT, "timed out waiting for the generate to decode");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

/// Chromium as Debian ships it.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| PathBuf::from(name))
    })
}

/// Headless Chromium, driven over the DevTools protocol (a WebSocket) with one attached page.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
    _profile: TempDir,
}

impl Browser {
    fn start(exe: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--headless",
                // CI runs as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1440,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        let ws_url = devtools_url(child.stderr.take().unwrap());
        let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("connecting to the DevTools WebSocket");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
        }
        Browser {
            child,
            ws,
            next_id: 1,
            session: None,
            _profile: profile,
        }
    }

    /// Sends one command (to the attached page once there is one) and returns its result,
    /// skipping the events that come in between.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = s.clone().into();
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .expect("sending to the browser");
        loop {
            let m = self.ws.read().expect("reading from the browser");
            let Ok(text) = m.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page of `width` x `height` CSS pixels and attaches to it.
    fn open(&mut self, url: &str, width: u32, height: u32) {
        let target = self.call("Target.createTarget", serde_json::json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("a target id").to_string();
        let attached = self.call(
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target_id, "flatten": true }),
        );
        self.session = Some(attached["sessionId"].as_str().expect("a session id").to_string());
        self.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        self.call("Page.navigate", serde_json::json!({ "url": url }));
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it is true.
    fn wait_for(&mut self, what: &str, expression: &str) {
        let t0 = Instant::now();
        while self.eval(expression) != Value::Bool(true) {
            assert!(
                t0.elapsed() < TIMEOUT,
                "timed out waiting for {what}; page: {}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn screenshot_png(&mut self) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", serde_json::json!({ "format": "png" }));
        data_encoding::BASE64
            .decode(r["data"].as_str().expect("screenshot data").as_bytes())
            .expect("base64 screenshot")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads Chromium's stderr up to `DevTools listening on ws://...`, then keeps draining it.
fn devtools_url(stderr: ChildStderr) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        }
    });
    rx.recv_timeout(TIMEOUT)
        .expect("chromium did not print its DevTools address")
}

#[test]
fn the_dashboard_shows_a_running_generate_in_a_real_browser() {
    let Some(exe) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required in CI (ci/setup installs it)"
        );
        eprintln!("skipping: chromium is not installed");
        return;
    };
    let mut run = Run::start();
    let pid = run.pid();
    let serve = Serve::start(run.rt());
    wait_decoding(&serve, pid);

    let mut browser = Browser::start(&exe);
    let (width, height) = (1440, 900);
    browser.open(&format!("{}#token={}", serve.url(), serve.token), width, height);
    let row = format!("document.querySelector('#process-rows tr[data-pid=\"{pid}\"]')");
    let charts = "[...document.querySelectorAll('svg.chart')].map(c => Number(c.dataset.points))";
    browser.wait_for(
        "the process row and three charts with at least two points",
        &format!("!!{row} && {charts}.length === 3 && {charts}.every(n => n >= 2)"),
    );
    let cells = browser.eval(&format!("[...{row}.cells].map(c => c.textContent)"));
    let cells: Vec<&str> = cells.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(cells[0], pid.to_string(), "{cells:?}");
    assert_eq!(cells[1], "generate", "{cells:?}");
    assert_eq!(cells[2], "decode", "{cells:?}");
    assert!(cells[3].ends_with("/1000000"), "{cells:?}");
    assert!(cells[10].starts_with("xlstm-large-mini ["), "{cells:?}");
    // The token came in the URL fragment, which the page then removed from the address.
    assert_eq!(
        browser.eval("document.getElementById('token-state').textContent"),
        "actions unlocked"
    );
    assert_eq!(browser.eval("location.hash"), "");
    assert_eq!(
        browser.eval("document.getElementById('sel-title').textContent"),
        format!("generate · pid {pid}").as_str()
    );
    // The stream keeps the charts growing.
    let points = browser.eval(&format!("{charts}[0]")).as_u64().unwrap();
    browser.wait_for(
        "more points from the stream",
        &format!("{charts}.every(n => n > {points})"),
    );
    assert_eq!(browser.eval("document.getElementById('conn-text').textContent"), "live");

    // The page's Empty-cache button posts with the token; the run handles the command.
    browser.eval("document.getElementById('btn-empty-cache').click(), true");
    browser.wait_for(
        "the empty-cache answer",
        &format!("document.getElementById('action-message').textContent.startsWith('empty_cache sent to {pid}')"),
    );
    serve.wait_line(&format!("empty_cache sent to {pid}"));
    let t0 = Instant::now();
    while record_of(&serve.snapshot(), pid).is_none_or(|r| r["last_command"] != "empty_cache") {
        assert!(t0.elapsed() < TIMEOUT, "empty_cache was not handled");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The page shows it handled, and a few seconds of history: the picture.
    browser.wait_for(
        "the page to show the command handled",
        "document.getElementById('sel-facts').textContent.includes('1 (last: empty_cache)')",
    );
    browser.wait_for("ten points", &format!("{charts}.every(n => n >= 10)"));
    let png = browser.screenshot_png();
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xltop-dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    let info = png::Decoder::new(std::io::Cursor::new(&png))
        .read_info()
        .expect("the screenshot is a PNG");
    assert_eq!((info.info().width, info.info().height), (width, height));
    eprintln!("screenshot: {}", shot.display());
    assert!(run.running(), "the run keeps going");
}

#[test]
fn actions_need_the_token_and_this_servers_origin_and_kill_works_with_it() {
    let mut run = Run::start();
    let pid = run.pid();
    let serve = Serve::start(run.rt());
    let before = wait_decoding(&serve, pid);

    // The endpoints mirror `xltop --json` and `--json-stream`: the same snapshot and fields.
    let o = Command::new(XLTOP)
        .arg("--json")
        .env("XLSTM_RUNTIME_DIR", run.rt())
        .output()
        .unwrap();
    let cli: Value = serde_json::from_slice(&o.stdout).unwrap();
    let web = serve.snapshot();
    assert_eq!(keys(&web), keys(&cli));
    assert_eq!(web["dir"], cli["dir"]);
    assert_eq!(
        keys(&record_of(&web, pid).unwrap()),
        keys(&record_of(&cli, pid).unwrap())
    );
    let events = read_events(serve.port, 3);
    for e in &events {
        assert_eq!(keys(e), keys(&cli));
        assert_eq!(record_of(e, pid).unwrap()["command"], "generate");
    }
    assert!(events[0]["time"].as_f64() < events[2]["time"].as_f64());
    let (status, history) = serve.http("GET", "/api/history", &[]);
    assert_eq!(status, 200);
    let history: Value = serde_json::from_str(&history).unwrap();
    let h = &history["processes"][pid.to_string()];
    assert!(h["time"].as_array().unwrap().len() >= 2, "{h}");
    assert_eq!(
        h["time"].as_array().unwrap().len(),
        h["rss_bytes"].as_array().unwrap().len()
    );

    let kill = format!("/api/processes/{pid}/kill");
    let own_origin = format!("http://127.0.0.1:{}", serve.port);
    let wrong = "0".repeat(serve.token.len());
    let refused: [(&str, Vec<(&str, &str)>); 6] = [
        ("no token", vec![("Origin", own_origin.as_str())]),
        ("a wrong token", vec![("X-Xltop-Token", wrong.as_str())]),
        ("a shorter token", vec![("X-Xltop-Token", &serve.token[..10])]),
        (
            "a foreign Origin",
            vec![
                ("X-Xltop-Token", serve.token.as_str()),
                ("Origin", "http://evil.example"),
            ],
        ),
        (
            "the null Origin",
            vec![("X-Xltop-Token", serve.token.as_str()), ("Origin", "null")],
        ),
        (
            "a rebound Host",
            vec![("X-Xltop-Token", serve.token.as_str()), ("Host", "evil.example")],
        ),
    ];
    for (what, headers) in &refused {
        let (status, body) = serve.http("POST", &kill, headers);
        assert_eq!(status, 403, "{what}: {body}");
        let (status, _) = serve.http("POST", &format!("/api/processes/{pid}/empty-cache"), headers);
        assert_eq!(status, 403, "{what}");
    }
    serve.wait_line("refused an action from 127.0.0.1:");
    // Reading is refused to a foreign Host too (DNS rebinding would let a page read the runs).
    for path in ["/api/snapshot", "/api/stream", "/"] {
        let (status, _) = serve.http("GET", path, &[("Host", &format!("evil.example:{}", serve.port))]);
        assert_eq!(status, 403, "{path}");
    }
    // A GET on an action, and a token in the URL instead of the header, do nothing.
    assert_eq!(serve.http("GET", &kill, &[("X-Xltop-Token", &serve.token)]).0, 405);
    assert_eq!(serve.http("POST", &format!("{kill}?token={}", serve.token), &[]).0, 403);

    // None of that reached the run: it keeps decoding and took no command. (Its record moves
    // on once per decode submission, which on a busy CPU adapter can take seconds.)
    let t0 = std::time::Instant::now();
    let now = loop {
        std::thread::sleep(Duration::from_millis(200));
        assert!(run.running());
        let now = record_of(&serve.snapshot(), pid).expect("still listed");
        if now["tokens"].as_u64() > before["tokens"].as_u64() || t0.elapsed() > Duration::from_secs(30) {
            break now;
        }
    };
    assert_eq!(now["stale"], false);
    assert_eq!(now["commands_handled"], 0, "{now}");
    assert!(now["tokens"].as_u64() > before["tokens"].as_u64(), "{now}");

    // With the token, from the page's own origin, Kill stops it (exit code 4).
    let (status, body) = serve.http(
        "POST",
        &kill,
        &[("X-Xltop-Token", &serve.token), ("Origin", &own_origin)],
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["ok"], true);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("stop sent to {pid}")),
        "{answer}"
    );
    let (code, err) = run.wait(TIMEOUT);
    assert_eq!(code, Some(4), "{err}");
    serve.wait_line(&format!("stop sent to {pid}"));
    let t0 = Instant::now();
    while record_of(&serve.snapshot(), pid).is_some() {
        assert!(t0.elapsed() < TIMEOUT, "the record stays listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // An action on a process that is gone is an error, not a success.
    let (status, body) = serve.http("POST", &kill, &[("X-Xltop-Token", &serve.token)]);
    assert_eq!(status, 409, "{body}");
}

/// Reads `n` events of /api/stream; each is one snapshot.
fn read_events(port: u16, n: usize) -> Vec<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(s).lines();
    let status = lines.next().unwrap().unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut head = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        if l.is_empty() {
            break;
        }
        head.push(l.to_ascii_lowercase());
    }
    assert!(
        head.iter().any(|h| h.starts_with("content-type: text/event-stream")),
        "{head:?}"
    );
    let mut events = Vec::new();
    for l in lines {
        let l = l.unwrap();
        if let Some(data) = l.strip_prefix("data: ") {
            events.push(serde_json::from_str(data).expect("each event is one JSON snapshot"));
            if events.len() == n {
                break;
            }
        }
    }
    events
}

#[test]
fn bind_errors_are_one_line_and_ctrl_c_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (addr, why) in [
        (format!("127.0.0.1:{port}"), "cannot listen on 127.0.0.1:"),
        ("nowhere:80".to_string(), "is not an address to listen on"),
        ("127.0.0.1".to_string(), "is not an address to listen on"),
    ] {
        let o = Command::new(XLTOP)
            .args(["--serve", &addr])
            .env("XLSTM_RUNTIME_DIR", dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{addr}: {err}");
        assert_eq!(err.lines().count(), 1, "{addr}: {err}");
        assert!(err.starts_with("xltop: error: ") && err.contains(why), "{addr}: {err}");
    }

    // No process: the page and the snapshot say so; SIGINT ends the server with exit code 0.
    let mut serve = Serve::start(dir.path());
    let snap = serve.snapshot();
    assert!(snap["processes"].as_array().unwrap().is_empty(), "{snap}");
    let (status, page) = serve.http("GET", "/", &[]);
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"/app.js\""), "{page}");
    assert_eq!(serve.http("GET", "/nothing-here", &[]).0, 404);
    #[cfg(unix)]
    {
        let pid = serve.child.id() as i32;
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = serve.child.try_wait().unwrap() {
                break st;
            }
            assert!(t0.elapsed() < TIMEOUT, "xltop --serve ignored SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0));
        serve.wait_line("xltop: stopped serving");
    }
}
