//! `--model ORG/NAME[@REVISION]`: models by Hugging Face Hub id, through the Hugging Face cache.
//!
//! The cache is built here as `huggingface_hub` lays it out (blobs named by hash, snapshot files
//! as relative links to `../../blobs/...`, `refs/<branch>` holding the commit hash) from the
//! models shipped in models/, and `xlstm generate` by id must print what it prints for the
//! directory. Downloads go to a small Hub-shaped HTTP server on 127.0.0.1 (`HF_ENDPOINT`) that
//! serves the shipped files the way the Hub does (file list, `resolve/` with ranges, etag and
//! commit headers), including a transfer broken off half way and a partial file left by an
//! earlier run, both resumed.
//!
//! Run with `WGPU_BACKEND=vulkan cargo test --release --test hub`.

// The cache is built with Unix symbolic links, as `huggingface_hub` builds it there.
#![cfg(unix)]

use safetensors::tensor::{SafeTensors, TensorView};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use tempfile::TempDir;
use xlstm_wgpu::hub::{Hub, HubId, ModelRef, NoProgress};

const BIN: &str = env!("CARGO_BIN_EXE_xlstm");
const PROMPT: &str = "It is a truth";
/// Commits of the cached repository: `main` and the `v1` branch.
const COMMIT_A: &str = "0123456789abcdef0123456789abcdef01234567";
const COMMIT_B: &str = "fedcba9876543210fedcba9876543210fedcba98";
/// The commit the test server reports.
const COMMIT_REMOTE: &str = "aaaabbbbccccddddeeeeffff0000111122223333";
const TOKEN: &str = "hf_test_token";

fn shipped(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(name)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The files of a shipped model that a checkpoint on the Hub holds.
fn model_files(name: &str) -> BTreeMap<String, Vec<u8>> {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(shipped(name).join(f)).unwrap()))
        .collect()
}

/// The same files with the weights split into two shards and an index, as large checkpoints are
/// published.
fn sharded_files(name: &str) -> BTreeMap<String, Vec<u8>> {
    let mut files = model_files(name);
    let weights = files.remove("model.safetensors").unwrap();
    let st = SafeTensors::deserialize(&weights).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let half = names.len() / 2;
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let shard = format!("model-{:05}-of-00002.safetensors", i + 1);
        let views: Vec<(String, TensorView)> = part.iter().map(|n| (n.clone(), st.tensor(n).unwrap())).collect();
        for n in part {
            weight_map.insert(n.clone(), shard.clone().into());
        }
        files.insert(shard, safetensors::serialize(views, None).unwrap());
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    files.insert(
        "model.safetensors.index.json".into(),
        serde_json::to_vec_pretty(&index).unwrap(),
    );
    files
}

/// A Hugging Face cache under construction.
struct Cache {
    root: PathBuf,
}

impl Cache {
    fn repo(&self, repo: &str) -> PathBuf {
        self.root.join(format!("models--{}", repo.replace('/', "--")))
    }

    /// Adds `files` as the snapshot of `commit`: contents in blobs/<sha256>, the snapshot's
    /// entries relative links to them.
    fn snapshot(&self, repo: &str, commit: &str, files: &BTreeMap<String, Vec<u8>>) {
        let dir = self.repo(repo);
        let snap = dir.join("snapshots").join(commit);
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        for (name, bytes) in files {
            let hash = sha256(bytes);
            std::fs::write(dir.join("blobs").join(&hash), bytes).unwrap();
            std::os::unix::fs::symlink(format!("../../blobs/{hash}"), snap.join(name)).unwrap();
        }
    }

    fn set_ref(&self, repo: &str, name: &str, commit: &str) {
        let refs = self.repo(repo).join("refs");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join(name), commit).unwrap();
    }
}

/// A scratch area: the cache, an empty HF_HOME (no token file), a working directory.
struct Scratch {
    dir: TempDir,
    cache: Cache,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache {
            root: dir.path().join("hub-cache"),
        };
        std::fs::create_dir_all(&cache.root).unwrap();
        std::fs::create_dir_all(dir.path().join("hf-home")).unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        Scratch { dir, cache }
    }

    /// The binary with the Hugging Face settings of this scratch area and none from the
    /// environment the tests run in.
    fn xlstm(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path().join("work"))
            .env("HF_HUB_CACHE", &self.cache.root)
            .env("HF_HOME", self.dir.path().join("hf-home"))
            .env("XLSTM_PROGRESS", "plain");
        for var in [
            "HF_TOKEN",
            "HF_TOKEN_PATH",
            "HF_ENDPOINT",
            "HF_HUB_OFFLINE",
            "XDG_CACHE_HOME",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }
}

fn generate_args(model: &str) -> Vec<&str> {
    vec![
        "generate",
        "--model",
        model,
        "--prompt",
        PROMPT,
        "--max-new-tokens",
        "4",
    ]
}

/// Runs the command and returns its output, failing with its stderr when it fails.
fn ok(mut cmd: Command) -> Output {
    let o = cmd.output().expect("running the xlstm binary");
    assert!(
        o.status.success(),
        "{cmd:?} failed ({:?}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What `xlstm generate` prints for the shipped model's directory.
fn reference_text(s: &Scratch, name: &str) -> String {
    let dir = shipped(name).display().to_string();
    let text = stdout(&ok(s.xlstm(&generate_args(&dir))));
    assert!(!text.trim().is_empty(), "no text generated by {name}");
    text
}

/// Asserts one `xlstm: error:` line and exit code 1; returns the line.
fn one_line_error(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("xlstm: error: "), "{stderr}");
    lines[0].to_string()
}

/// An endpoint where nothing listens (the port of a listener just closed).
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

// ---------------------------------------------------------------------------------------------
// From the cache, offline.

#[test]
fn cached_ids_load_like_their_directories() {
    let s = Scratch::new();
    let repo = "test-org/mini";
    s.cache.snapshot(repo, COMMIT_A, &model_files("xlstm-large-mini"));
    s.cache.snapshot(repo, COMMIT_B, &sharded_files("xlstm-v1-mini"));
    s.cache.set_ref(repo, "main", COMMIT_A);
    s.cache.set_ref(repo, "v1", COMMIT_B);
    let large = reference_text(&s, "xlstm-large-mini");
    let v1 = reference_text(&s, "xlstm-v1-mini");
    assert_ne!(large, v1, "the two snapshots must be told apart by their output");
    let by_id = |model: &str| {
        let mut cmd = s.xlstm(&generate_args(model));
        // No network: everything must come from the cache.
        cmd.env("HF_HUB_OFFLINE", "1").env("HF_ENDPOINT", dead_endpoint());
        stdout(&ok(cmd))
    };
    // refs/main -> snapshot A.
    assert_eq!(by_id(repo), large, "{repo}");
    // A branch name: refs/v1 -> snapshot B (sharded: index and two shards, all links).
    assert_eq!(by_id(&format!("{repo}@v1")), v1, "{repo}@v1");
    // A commit hash names the snapshot directly.
    assert_eq!(by_id(&format!("{repo}@{COMMIT_B}")), v1, "{repo}@{COMMIT_B}");

    // A directory of the same name wins over the id.
    let shadow = s.dir.path().join("work").join(repo);
    std::fs::create_dir_all(&shadow).unwrap();
    for (name, bytes) in model_files("xlstm-v1-mini") {
        std::fs::write(shadow.join(name), bytes).unwrap();
    }
    assert_eq!(by_id(repo), v1, "the directory ./{repo}");
}

#[test]
fn a_missing_id_offline_is_one_line_naming_the_cache() {
    let s = Scratch::new();
    let looked_in = s.cache.repo("test-org/absent").display().to_string();
    for args in [
        generate_args("test-org/absent"),
        vec!["quantize", "--model", "test-org/absent", "--out", "q", "--dtype", "q8"],
        vec!["bench", "--model", "test-org/absent"],
    ] {
        let mut cmd = s.xlstm(&args);
        cmd.env("HF_HUB_OFFLINE", "1");
        let line = one_line_error(&cmd.output().unwrap());
        assert!(line.contains(&looked_in), "{args:?}: {line}");
        assert!(line.contains("HF_HUB_OFFLINE"), "{args:?}: {line}");
    }
    // Nothing was created in the cache.
    assert!(!Path::new(&looked_in).exists());
}

#[test]
fn an_incomplete_snapshot_offline_names_what_it_lacks() {
    let s = Scratch::new();
    let repo = "test-org/partial";
    let mut files = sharded_files("xlstm-v1-mini");
    files.remove("model-00002-of-00002.safetensors");
    s.cache.snapshot(repo, COMMIT_A, &files);
    s.cache.set_ref(repo, "main", COMMIT_A);
    let mut cmd = s.xlstm(&generate_args(repo));
    cmd.env("HF_HUB_OFFLINE", "1");
    let line = one_line_error(&cmd.output().unwrap());
    assert!(line.contains("model-00002-of-00002.safetensors"), "{line}");
    assert!(line.contains(COMMIT_A), "{line}");
}

#[test]
fn no_network_is_one_line_naming_the_cache() {
    let s = Scratch::new();
    let mut cmd = s.xlstm(&generate_args("test-org/unreachable"));
    cmd.env("HF_ENDPOINT", dead_endpoint());
    let line = one_line_error(&cmd.output().unwrap());
    assert!(
        line.contains(&s.cache.repo("test-org/unreachable").display().to_string()),
        "{line}"
    );
    assert!(line.contains("cannot reach"), "{line}");
}

#[test]
fn the_library_resolves_ids_and_directories() {
    assert_eq!(
        HubId::parse("NX-AI/xLSTM-7b").map(|i| (i.repo().to_string(), i.revision().to_string())),
        Some(("NX-AI/xLSTM-7b".into(), "main".into()))
    );
    let pinned = HubId::parse(&format!("NX-AI/xLSTM-7b@{COMMIT_A}")).unwrap();
    assert_eq!(pinned.revision(), COMMIT_A);
    assert_eq!(pinned.folder_name(), "models--NX-AI--xLSTM-7b");
    assert_eq!(HubId::parse("org/name@refs/pr/1").unwrap().revision(), "refs/pr/1");
    for bad in [
        "xLSTM-7b",
        "/abs/path",
        "./org/name",
        "org/name/extra",
        "org/-name",
        "org/na--me",
        "org/name@",
        "org/name@../../x",
        "org/name@a b",
        "org/name.git",
    ] {
        assert_eq!(HubId::parse(bad), None, "{bad}");
    }
    // An existing directory is a directory, whatever its name looks like.
    let shipped_dir = shipped("xlstm-v1-mini");
    assert_eq!(ModelRef::parse(&shipped_dir), ModelRef::Dir(shipped_dir.clone()));
    assert!(matches!(ModelRef::parse(Path::new("org/name")), ModelRef::Hub(_)));

    let s = Scratch::new();
    s.cache
        .snapshot("test-org/lib", COMMIT_A, &model_files("xlstm-large-mini"));
    s.cache.set_ref("test-org/lib", "main", COMMIT_A);
    let hub = Hub::new(&s.cache.root).with_offline(true);
    let snap = s.cache.repo("test-org/lib").join("snapshots").join(COMMIT_A);
    let id = HubId::parse("test-org/lib").unwrap();
    assert_eq!(hub.cached(&id).unwrap(), Some(snap.clone()));
    assert_eq!(hub.resolve(&id, &mut NoProgress).unwrap(), snap);
    let err = hub
        .resolve(&HubId::parse("test-org/lib@v9").unwrap(), &mut NoProgress)
        .unwrap_err();
    assert!(matches!(err, xlstm_wgpu::Error::Hub(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Downloads from a Hub-shaped server.

/// One request the server received.
#[derive(Clone, Debug)]
struct Logged {
    path: String,
    range: Option<String>,
}

/// What the server serves: one repository at one commit.
struct Served {
    repo: String,
    commit: String,
    files: BTreeMap<String, Vec<u8>>,
    /// Files listed by the API but never to be fetched (the loader does not need them).
    listed_only: Vec<String>,
    /// The first whole-file transfer of this file sends half its bytes, then closes.
    break_off: Option<String>,
}

struct HubServer {
    endpoint: String,
    log: Arc<Mutex<Vec<Logged>>>,
}

impl HubServer {
    /// Serves `served` on 127.0.0.1 (until the test process ends), requiring `Bearer TOKEN`.
    fn start(served: Served) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        let mut served = served;
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that hangs up mid-answer is what the break-off test does; go on.
                let _ = answer(stream, &mut served, &seen);
            }
        });
        HubServer { endpoint, log }
    }

    fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Answers one request the way the Hub does: `GET /api/models/REPO/revision/main` with the file
/// list and commit, `GET /REPO/resolve/main/FILE` with `Range` support (206 and Content-Range),
/// `ETag` (the SHA-256 of the contents, as for weight files) and `X-Repo-Commit`.
fn answer(mut stream: TcpStream, served: &mut Served, log: &Mutex<Vec<Logged>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut range, mut auth) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => auth = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    log.lock().unwrap().push(Logged {
        path: path.clone(),
        range: range.clone(),
    });
    if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return respond(
            &mut stream,
            "401 Unauthorized",
            &[],
            b"{\"error\":\"gated repository\"}",
        );
    }
    if path == format!("/api/models/{}/revision/main", served.repo) {
        let siblings: Vec<_> = served
            .files
            .keys()
            .chain(&served.listed_only)
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let body = serde_json::json!({ "id": served.repo, "sha": served.commit, "siblings": siblings });
        let body = serde_json::to_vec(&body).unwrap();
        let headers = [
            ("Content-Type", "application/json".to_string()),
            ("Content-Length", body.len().to_string()),
        ];
        return respond(&mut stream, "200 OK", &headers, &body);
    }
    let prefix = format!("/{}/resolve/main/", served.repo);
    let Some(bytes) = path.strip_prefix(&prefix).and_then(|f| served.files.get(f)) else {
        return respond(&mut stream, "404 Not Found", &[("Content-Length", "0".into())], b"");
    };
    let file = path[prefix.len()..].to_string();
    let len = bytes.len();
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap();
            let a: usize = a.parse().unwrap();
            let b: usize = if b.is_empty() {
                len - 1
            } else {
                b.parse::<usize>().unwrap().min(len - 1)
            };
            (a, b)
        }
        None => (0, len - 1),
    };
    if start >= len {
        return respond(
            &mut stream,
            "416 Range Not Satisfiable",
            &[("Content-Length", "0".into())],
            b"",
        );
    }
    let body = &bytes[start..=end];
    let headers = [
        ("Content-Length", body.len().to_string()),
        ("Content-Range", format!("bytes {start}-{end}/{len}")),
        ("Accept-Ranges", "bytes".into()),
        ("ETag", format!("\"{}\"", sha256(bytes))),
        ("X-Repo-Commit", served.commit.clone()),
    ];
    let status = if range.is_some() {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    if served.break_off.as_deref() == Some(file.as_str()) && start == 0 && body.len() > 1 {
        served.break_off = None;
        // The announced length, half the bytes, then the connection closes.
        return respond(&mut stream, status, &headers, &body[..body.len() / 2]);
    }
    respond(&mut stream, status, &headers, body)
}

/// The requests for `file` that asked for the rest of it from an offset above 0.
fn resumed_ranges(requests: &[Logged], file: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.path.ends_with(&format!("/resolve/main/{file}")))
        .filter_map(|r| r.range.clone())
        .filter(|r| r != "bytes=0-0" && !r.starts_with("bytes=0-"))
        .collect()
}

/// Checks the downloaded repository's layout: `refs/main` holds the commit; every file of
/// `files` is a relative link in the snapshot to a blob named by its SHA-256 with its contents;
/// no partial file is left.
fn assert_cache_layout(cache: &Cache, repo: &str, files: &BTreeMap<String, Vec<u8>>) {
    let dir = cache.repo(repo);
    assert_eq!(
        std::fs::read_to_string(dir.join("refs").join("main")).unwrap().trim(),
        COMMIT_REMOTE
    );
    let snap = dir.join("snapshots").join(COMMIT_REMOTE);
    for (name, bytes) in files {
        let link = std::fs::read_link(snap.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(link.is_relative(), "{name} -> {}", link.display());
        assert_eq!(link, Path::new("../../blobs").join(sha256(bytes)), "{name}");
        assert_eq!(&std::fs::read(snap.join(name)).unwrap(), bytes, "{name}");
    }
    let mut in_snapshot: Vec<String> = std::fs::read_dir(&snap)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    in_snapshot.sort();
    let expected: Vec<String> = files.keys().cloned().collect();
    assert_eq!(in_snapshot, expected, "exactly the files the loader needs");
    for e in std::fs::read_dir(dir.join("blobs")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "partial download left: {name}");
    }
}

#[test]
fn downloads_into_the_cache_and_resumes_a_broken_transfer() {
    let s = Scratch::new();
    let repo = "test-org/remote";
    let mut files = model_files("xlstm-large-mini");
    files.insert("tokenizer_config.json".into(), b"{\"add_bos_token\": true}".to_vec());
    let server = HubServer::start(Served {
        repo: repo.into(),
        commit: COMMIT_REMOTE.into(),
        files: files.clone(),
        listed_only: vec!["README.md".into(), "eval.json".into(), "pytorch_model.bin".into()],
        break_off: Some("model.safetensors".into()),
    });
    let reference = reference_text(&s, "xlstm-large-mini");

    let mut cmd = s.xlstm(&generate_args(repo));
    cmd.env("HF_ENDPOINT", &server.endpoint).env("HF_TOKEN", TOKEN);
    let o = ok(cmd);
    assert_eq!(stdout(&o), reference);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("xlstm: downloading test-org/remote model.safetensors"),
        "a progress line per file: {stderr}"
    );
    assert_cache_layout(&s.cache, repo, &files);
    let requests = server.requests();
    // The broken-off transfer was resumed from where it stopped, not started over.
    let half = files["model.safetensors"].len() / 2;
    assert_eq!(
        resumed_ranges(&requests, "model.safetensors"),
        vec![format!("bytes={half}-")],
        "{requests:?}"
    );
    for never in ["README.md", "eval.json", "pytorch_model.bin"] {
        assert!(
            !requests.iter().any(|r| r.path.ends_with(never)),
            "{never} fetched: {requests:?}"
        );
    }

    // Now cached: offline, no request, the same text.
    let mut cmd = s.xlstm(&generate_args(repo));
    cmd.env("HF_ENDPOINT", &server.endpoint).env("HF_HUB_OFFLINE", "1");
    assert_eq!(stdout(&ok(cmd)), reference);
    let mut cmd = s.xlstm(&generate_args(repo));
    cmd.env("HF_ENDPOINT", &server.endpoint).env("HF_TOKEN", TOKEN);
    assert_eq!(stdout(&ok(cmd)), reference);
    assert_eq!(
        server.requests().len(),
        requests.len(),
        "a cached model needs no network"
    );
}

#[test]
fn a_partial_download_from_an_earlier_run_is_resumed() {
    let s = Scratch::new();
    let repo = "test-org/sharded";
    let files = sharded_files("xlstm-v1-mini");
    let shard = "model-00002-of-00002.safetensors";
    let bytes = &files[shard];
    // An earlier run stopped a third of the way through the second shard.
    let blobs = s.cache.repo(repo).join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let kept = bytes.len() / 3;
    std::fs::write(blobs.join(format!("{}.part", sha256(bytes))), &bytes[..kept]).unwrap();
    let server = HubServer::start(Served {
        repo: repo.into(),
        commit: COMMIT_REMOTE.into(),
        files: files.clone(),
        listed_only: vec![],
        break_off: None,
    });
    let reference = reference_text(&s, "xlstm-v1-mini");
    let mut cmd = s.xlstm(&generate_args(repo));
    cmd.env("HF_ENDPOINT", &server.endpoint).env("HF_TOKEN", TOKEN);
    assert_eq!(stdout(&ok(cmd)), reference);
    assert_cache_layout(&s.cache, repo, &files);
    let requests = server.requests();
    assert_eq!(
        resumed_ranges(&requests, shard),
        vec![format!("bytes={kept}-")],
        "{requests:?}"
    );
    // The index and both shards were fetched.
    for f in files.keys() {
        assert!(
            requests.iter().any(|r| r.path.ends_with(&format!("/resolve/main/{f}"))),
            "{f} not fetched: {requests:?}"
        );
    }
}

#[test]
fn an_incomplete_snapshot_online_downloads_only_what_it_lacks() {
    let s = Scratch::new();
    let repo = "test-org/half";
    let files = sharded_files("xlstm-v1-mini");
    let lacking = "model-00002-of-00002.safetensors";
    let mut cached = files.clone();
    cached.remove(lacking);
    s.cache.snapshot(repo, COMMIT_REMOTE, &cached);
    s.cache.set_ref(repo, "main", COMMIT_REMOTE);
    let server = HubServer::start(Served {
        repo: repo.into(),
        commit: COMMIT_REMOTE.into(),
        files: files.clone(),
        listed_only: vec![],
        break_off: None,
    });
    let reference = reference_text(&s, "xlstm-v1-mini");
    let mut cmd = s.xlstm(&generate_args(repo));
    cmd.env("HF_ENDPOINT", &server.endpoint).env("HF_TOKEN", TOKEN);
    assert_eq!(stdout(&ok(cmd)), reference);
    assert_cache_layout(&s.cache, repo, &files);
    let fetched: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.path.split("/resolve/main/").nth(1).map(str::to_string))
        .collect();
    assert!(
        !fetched.is_empty() && fetched.iter().all(|f| f == lacking),
        "{fetched:?}"
    );
}

#[test]
fn a_gated_repository_without_a_token_is_one_line() {
    let s = Scratch::new();
    let server = HubServer::start(Served {
        repo: "test-org/gated".into(),
        commit: COMMIT_REMOTE.into(),
        files: model_files("xlstm-large-mini"),
        listed_only: vec![],
        break_off: None,
    });
    let mut cmd = s.xlstm(&generate_args("test-org/gated"));
    cmd.env("HF_ENDPOINT", &server.endpoint);
    let line = one_line_error(&cmd.output().unwrap());
    assert!(line.contains("401") && line.contains("HF_TOKEN"), "{line}");
    assert!(
        line.contains(&s.cache.repo("test-org/gated").display().to_string()),
        "{line}"
    );
    // A token file where `huggingface-cli login` writes it is used too.
    std::fs::write(s.dir.path().join("hf-home").join("token"), format!("{TOKEN}\n")).unwrap();
    let mut cmd = s.xlstm(&["quantize", "--model", "test-org/gated", "--out", "q8", "--dtype", "q8"]);
    cmd.env("HF_ENDPOINT", &server.endpoint);
    ok(cmd);
    assert!(s.dir.path().join("work").join("q8").join("model.safetensors").is_file());
}
