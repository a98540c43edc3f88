//! Models named by their Hugging Face Hub id, `ORG/NAME[@REVISION]`, as other LLM tools accept
//! them: `--model NX-AI/xLSTM-7b`.
//!
//! An id is resolved to a directory the loader reads like any other: a snapshot in the Hugging
//! Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`), laid out as `huggingface_hub` and `huggingface-cli download` lay
//! it out:
//!
//! ```text
//! models--ORG--NAME/refs/main                      the commit hash the branch points at
//! models--ORG--NAME/snapshots/<commit>/config.json  -> ../../blobs/<etag> (relative links)
//! models--ORG--NAME/blobs/<etag>                    the file contents
//! ```
//!
//! The cache is looked at first, without touching the network: a snapshot with everything the
//! loader needs is used as it is. Otherwise, unless `HF_HUB_OFFLINE` is set, the missing files
//! are downloaded into the same layout (the `hf-hub` crate's blocking client: `HF_ENDPOINT`,
//! `HF_TOKEN`, a partial download kept as `blobs/<etag>.part` and resumed by the next attempt).
//! What is fetched: config.json, tokenizer.json and tokenizer_config.json when the repository
//! has them, and the weights: `model.safetensors.index.json` with every shard it names, else
//! `model.safetensors`, else the `xlstm` package's `model_0.safetensors`, `model_1...`.
//!
//! A path that exists always wins over an id ([`ModelRef::parse`]).

use crate::error::{Error, Result};
use std::cell::Cell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The revision of an id without `@REVISION`.
pub const DEFAULT_REVISION: &str = "main";
/// The Hub, unless `HF_ENDPOINT` names another.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
const INDEX: &str = "model.safetensors.index.json";
const WEIGHTS: &str = "model.safetensors";
/// The largest JSON file (config, index, ref) read from the cache.
const MAX_JSON_BYTES: u64 = 64 << 20;
/// Attempts at one file's download; each resumes where the previous one stopped.
const ATTEMPTS: u32 = 3;

/// A model repository on the Hub and the revision wanted: `ORG/NAME[@REVISION]`, where REVISION
/// is a branch or tag name (looked up in `refs/`) or a 40-digit commit hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    repo: String,
    revision: Option<String>,
}

impl HubId {
    /// Parses `ORG/NAME[@REVISION]`; `None` when `text` is not shaped like one. Names follow the
    /// Hub's rules (`huggingface_hub`'s `validate_repo_id`): letters, digits, `-`, `_` and `.`,
    /// starting and ending with a letter, digit or `_`, no `--` or `..`, at most 96 characters.
    /// A revision may contain `/` (`refs/pr/1`) but no `..`, spaces or control characters.
    pub fn parse(text: &str) -> Option<HubId> {
        let (repo, revision) = match text.split_once('@') {
            Some((r, rev)) => (r, Some(rev)),
            None => (text, None),
        };
        let (org, name) = repo.split_once('/')?;
        if !valid_name(org) || !valid_name(name) || repo.len() > 96 || name.ends_with(".git") {
            return None;
        }
        if let Some(rev) = revision {
            if !valid_revision(rev) {
                return None;
            }
        }
        Some(HubId {
            repo: repo.to_string(),
            revision: revision.map(str::to_string),
        })
    }

    /// `ORG/NAME`.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The revision asked for, [`DEFAULT_REVISION`] when none was.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    /// The repository's directory name in the cache: `models--ORG--NAME`.
    pub fn folder_name(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.revision {
            Some(rev) => write!(f, "{}@{rev}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

fn valid_name(s: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    !s.is_empty()
        && s.chars().all(|c| word(c) || c == '-' || c == '.')
        && s.starts_with(word)
        && s.ends_with(word)
        && !s.contains("--")
        && !s.contains("..")
}

fn valid_revision(s: &str) -> bool {
    // It becomes a path under refs/ (and part of a URL), so nothing that could leave that
    // directory or needs escaping beyond `/`.
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '+'))
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.split('/').any(|part| part.is_empty() || part == "." || part == "..")
        && !s.contains("..")
}

/// Whether `s` is a full commit hash (40 lowercase hex digits), which names a snapshot directly.
pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a `--model` argument names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// A checkpoint directory (or a path that is not one, or names nothing and is not shaped like
    /// an id: the loader then reports it).
    Dir(PathBuf),
    /// A model on the Hub.
    Hub(HubId),
}

impl ModelRef {
    /// A path that exists wins (a directory, or a file the loader then refuses as one); else a
    /// Hub id; else the path as given.
    pub fn parse(arg: &Path) -> ModelRef {
        if arg.exists() {
            return ModelRef::Dir(arg.to_path_buf());
        }
        match arg.to_str().and_then(HubId::parse) {
            Some(id) => ModelRef::Hub(id),
            None => ModelRef::Dir(arg.to_path_buf()),
        }
    }
}

/// Resolves a `--model` argument to the directory to load: a directory as given, a Hub id from
/// the cache or downloaded into it (settings from the environment, see [`Hub::from_env`];
/// progress on stderr, see [`StderrProgress`]). What every `xlstm` command and the examples call.
pub fn resolve_model(arg: &Path) -> Result<PathBuf> {
    match ModelRef::parse(arg) {
        ModelRef::Dir(dir) => Ok(dir),
        ModelRef::Hub(id) => Hub::from_env()?.resolve(&id, &mut StderrProgress::new("xlstm")),
    }
}

/// Reports a download's progress, one file at a time: [`start`](Self::start), any number of
/// [`update`](Self::update)s, [`finish`](Self::finish). A file whose transfer is retried is
/// started again.
pub trait DownloadProgress {
    /// `file` of `repo` starts downloading; `total` bytes (0 when unknown).
    fn start(&mut self, repo: &str, file: &str, total: u64);
    /// `done` bytes of the file are on disk (a resumed download starts above 0).
    fn update(&mut self, done: u64);
    /// The file is complete.
    fn finish(&mut self);
}

/// Reports nothing.
pub struct NoProgress;

impl DownloadProgress for NoProgress {
    fn start(&mut self, _: &str, _: &str, _: u64) {}
    fn update(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// Where the Hub's files are kept and fetched from.
#[derive(Clone, Debug)]
pub struct Hub {
    cache: PathBuf,
    endpoint: String,
    token: Option<String>,
    offline: bool,
}

impl Hub {
    /// The settings `huggingface_hub` reads: the cache directory (`HF_HUB_CACHE`, `HF_HOME`,
    /// `XDG_CACHE_HOME`, home), `HF_ENDPOINT`, the token (`HF_TOKEN`, else the file
    /// `HF_TOKEN_PATH`, else `$HF_HOME/token` as `huggingface-cli login` writes it) and
    /// `HF_HUB_OFFLINE` (`1`, `true`, `yes` or `on`: never use the network).
    pub fn from_env() -> Result<Hub> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let hf_home = var("HF_HOME")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("huggingface")))
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface")));
        let cache = var("HF_HUB_CACHE")
            .or_else(|| hf_home.as_ref().map(|h| h.join("hub")))
            .ok_or_else(|| {
                Error::Hub("no home directory to find the Hugging Face cache in: set HF_HUB_CACHE or HF_HOME".into())
            })?;
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| {
                let file = var("HF_TOKEN_PATH").or_else(|| hf_home.as_ref().map(|h| h.join("token")))?;
                let bytes = crate::files::read_input(&file, 64 << 10).ok()?;
                String::from_utf8(bytes).ok()
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        Ok(Hub::new(cache)
            .with_endpoint(endpoint)
            .with_token(token)
            .with_offline(offline))
    }

    /// A cache at `cache`, the public Hub, no token, online.
    pub fn new(cache: impl Into<PathBuf>) -> Hub {
        let cache = cache.into();
        // The download client links snapshot files to blobs by a path relative to both, which
        // it computes from absolute paths.
        let cache = std::path::absolute(&cache).unwrap_or(cache);
        Hub {
            cache,
            endpoint: DEFAULT_ENDPOINT.into(),
            token: None,
            offline: false,
        }
    }

    /// Fetches from `endpoint` (e.g. a mirror) instead of the public Hub.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Hub {
        self.endpoint = endpoint.into().trim().trim_end_matches('/').to_string();
        self
    }

    /// Sends `token` (`Authorization: Bearer`), needed for gated and private repositories.
    pub fn with_token(mut self, token: Option<String>) -> Hub {
        self.token = token;
        self
    }

    /// `true`: use the cache alone, never the network.
    pub fn with_offline(mut self, offline: bool) -> Hub {
        self.offline = offline;
        self
    }

    /// The cache directory (`.../huggingface/hub`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The repository's directory in the cache.
    pub fn repo_dir(&self, id: &HubId) -> PathBuf {
        self.cache.join(id.folder_name())
    }

    /// The cached snapshot of `id` when it holds everything the loader needs (config.json, the
    /// weights, tokenizer.json); `None` when there is no such snapshot. Never uses the network.
    pub fn cached(&self, id: &HubId) -> Result<Option<PathBuf>> {
        let Some(snap) = self.cached_snapshot(id)? else {
            return Ok(None);
        };
        Ok(missing_files(&snap)?.is_empty().then_some(snap))
    }

    /// The snapshot directory `id`'s revision names in the cache, complete or not.
    fn cached_snapshot(&self, id: &HubId) -> Result<Option<PathBuf>> {
        let repo_dir = self.repo_dir(id);
        let commit = if is_commit_hash(id.revision()) {
            id.revision().to_string()
        } else {
            let reference = repo_dir.join("refs").join(id.revision());
            if !reference.exists() {
                return Ok(None);
            }
            let bytes = crate::files::read_input(&reference, MAX_JSON_BYTES).map_err(|e| Error::io(&reference, e))?;
            let commit = String::from_utf8_lossy(&bytes).trim().to_string();
            if !is_commit_hash(&commit) {
                return Err(Error::Hub(format!(
                    "{} does not hold a commit hash",
                    reference.display()
                )));
            }
            commit
        };
        let snap = repo_dir.join("snapshots").join(commit);
        Ok(snap.is_dir().then_some(snap))
    }

    /// The directory of `id`: the cached snapshot when complete, else (online) the snapshot after
    /// downloading what it lacks, reported to `progress`. A snapshot that lacks only
    /// tokenizer.json is used as it is when offline or when the download fails (a repository may
    /// have none; `generate` then says so).
    pub fn resolve(&self, id: &HubId, progress: &mut dyn DownloadProgress) -> Result<PathBuf> {
        let snapshot = self.cached_snapshot(id)?;
        if let Some(snap) = &snapshot {
            let missing = missing_files(snap)?;
            if missing.is_empty() || (self.offline && missing == [TOKENIZER]) {
                return Ok(snap.clone());
            }
        }
        if self.offline {
            return Err(Error::Hub(match &snapshot {
                Some(snap) => format!(
                    "{id} is only partly in the Hugging Face cache ({} lacks {}) and HF_HUB_OFFLINE is set",
                    snap.display(),
                    missing_files(snap)?.join(", ")
                ),
                None => format!(
                    "{id} is not a directory and not in the Hugging Face cache (looked in {}); HF_HUB_OFFLINE is set",
                    self.repo_dir(id).display()
                ),
            }));
        }
        let result = self.download(id, progress);
        if let (Err(_), Some(snap)) = (&result, &snapshot) {
            // Loadable without the tokenizer the repository may not have: as offline.
            if missing_files(snap)? == [TOKENIZER] {
                return Ok(snap.clone());
            }
        }
        result.map_err(|e| match (e, &snapshot) {
            (Error::Hub(msg), None) => Error::Hub(format!(
                "{id} is not a directory and not in the Hugging Face cache (looked in {}), and downloading it failed: {msg}",
                self.repo_dir(id).display()
            )),
            (Error::Hub(msg), Some(snap)) => Error::Hub(format!(
                "{id} is only partly in the Hugging Face cache ({}), and downloading the rest failed: {msg}",
                snap.display()
            )),
            (other, _) => other,
        })
    }

    /// Downloads the files the loader needs of `id` into the cache; returns the snapshot.
    fn download(&self, id: &HubId, progress: &mut dyn DownloadProgress) -> Result<PathBuf> {
        use hf_hub::api::sync::ApiBuilder;
        let api = ApiBuilder::from_cache(hf_hub::Cache::new(self.cache.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(false)
            // Retries are ours (`fetch`): the client's own restart a transfer that failed before
            // writing a byte from offset 0, appending to what a resumed `.part` already holds.
            .with_retries(0)
            .build()
            .map_err(|e| Error::Hub(one_line(&e.to_string())))?;
        let repo = api.repo(hf_hub::Repo::with_revision(
            id.repo().to_string(),
            hf_hub::RepoType::Model,
            id.revision().to_string(),
        ));
        let info = repo.info().map_err(|e| describe_api_error(&self.endpoint, e))?;
        if !is_commit_hash(&info.sha) {
            return Err(Error::Hub(format!("the Hub answered a bad commit hash `{}`", info.sha)));
        }
        let listed: HashSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
        let snap = self.repo_dir(id).join("snapshots").join(&info.sha);
        // A commit-hash revision is not a ref: the client records one under refs/ anyway, which
        // `huggingface_hub` never does, so one it adds is removed again.
        let stray_ref = self.repo_dir(id).join("refs").join(id.revision());
        let stray_ref = (is_commit_hash(id.revision()) && !stray_ref.exists()).then_some(stray_ref);
        let result = self.download_files(id, &repo, &listed, &snap, progress);
        if let Some(r) = stray_ref {
            let _ = std::fs::remove_file(r);
        }
        result?;
        if !is_commit_hash(id.revision()) {
            // What `huggingface_hub` records: the branch or tag now points at this commit.
            let reference = self.repo_dir(id).join("refs").join(id.revision());
            if let Some(dir) = reference.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            crate::files::write_atomic(&reference, info.sha.as_bytes(), crate::files::Visibility::Shared)?;
        }
        Ok(snap)
    }

    fn download_files(
        &self,
        id: &HubId,
        repo: &hf_hub::api::sync::ApiRepo,
        listed: &HashSet<&str>,
        snap: &Path,
        progress: &mut dyn DownloadProgress,
    ) -> Result<()> {
        if !listed.contains(CONFIG) {
            return Err(Error::Hub(format!(
                "{} has no {CONFIG}: not a model xlstm-wgpu can load",
                id.repo()
            )));
        }
        let mut files: Vec<String> = [CONFIG, TOKENIZER, TOKENIZER_CONFIG]
            .into_iter()
            .filter(|f| listed.contains(f))
            .map(str::to_string)
            .collect();
        if listed.contains(INDEX) {
            self.fetch(id, repo, INDEX, snap, progress)?;
            files.extend(shard_names(&snap.join(INDEX))?);
        } else if listed.contains(WEIGHTS) {
            files.push(WEIGHTS.into());
        } else if listed.contains("model_0.safetensors") {
            files.extend(
                (0..)
                    .map(|i| format!("model_{i}.safetensors"))
                    .take_while(|f| listed.contains(f.as_str())),
            );
        } else {
            return Err(Error::Hub(format!(
                "{} has no {WEIGHTS} or {INDEX}: xlstm-wgpu reads safetensors checkpoints",
                id.repo()
            )));
        }
        for file in &files {
            self.fetch(id, repo, file, snap, progress)?;
        }
        // Everything the loader reads is there now (tokenizer.json only if the repository has one).
        let missing: Vec<String> = missing_files(snap)?
            .into_iter()
            .filter(|f| f != TOKENIZER || listed.contains(TOKENIZER))
            .collect();
        if !missing.is_empty() {
            return Err(Error::Hub(format!(
                "{} still lacks {} after the download",
                snap.display(),
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// Downloads `file` into the snapshot `snap` unless it is there already.
    fn fetch(
        &self,
        id: &HubId,
        repo: &hf_hub::api::sync::ApiRepo,
        file: &str,
        snap: &Path,
        progress: &mut dyn DownloadProgress,
    ) -> Result<()> {
        let target = snap.join(file);
        if target.is_file() {
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            let total = Cell::new(None);
            let forward = Forward {
                repo: id.repo(),
                progress: &mut *progress,
                total: &total,
                done: 0,
                started: false,
            };
            match repo.download_with_progress(file, forward) {
                Ok(path) => return check_download(&path, &target, file, total.get()),
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                    // The partial file stays as `blobs/<etag>.part`; the next attempt asks for
                    // the rest (an HTTP range from its length).
                    std::thread::sleep(Duration::from_secs(1 << (attempt - 1)));
                    attempt += 1;
                }
                Err(e) => {
                    return Err(match describe_api_error(&self.endpoint, e) {
                        Error::Hub(msg) => Error::Hub(format!("{file}: {msg}")),
                        other => other,
                    })
                }
            }
        }
    }
}

/// Checks a finished download: it landed in the snapshot being assembled (the revision did not
/// move to another commit between files) and has the size the Hub announced (a server that
/// ignored the resume range would have appended the whole file).
fn check_download(path: &Path, target: &Path, file: &str, announced: Option<u64>) -> Result<()> {
    if path != target {
        return Err(Error::Hub(format!(
            "the revision moved to another commit during the download ({} instead of {}); run again",
            path.display(),
            target.display()
        )));
    }
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    match announced {
        Some(n) if n != len => {
            // Remove the bad blob and its link so that the next run downloads it afresh.
            if let Ok(blob) = std::fs::canonicalize(path) {
                let _ = std::fs::remove_file(blob);
            }
            let _ = std::fs::remove_file(path);
            Err(Error::Hub(format!(
                "{file}: downloaded {len} bytes, the Hub announced {n}; removed it, run again"
            )))
        }
        _ => Ok(()),
    }
}

/// Transfer errors and broken-off bodies are retried; answers (404, 401, ...) are not.
fn retryable(e: &hf_hub::api::sync::ApiError) -> bool {
    use hf_hub::api::sync::ApiError;
    match e {
        ApiError::RequestError(e) => matches!(**e, ureq::Error::Transport(_)),
        ApiError::IoError(_) => true,
        _ => false,
    }
}

/// The client's error as one line, with what to do about the common answers.
fn describe_api_error(endpoint: &str, e: hf_hub::api::sync::ApiError) -> Error {
    use hf_hub::api::sync::ApiError;
    // The client's own wording ("request error: ...") adds nothing to the request's.
    let text = match &e {
        ApiError::RequestError(inner) => one_line(&inner.to_string()),
        _ => one_line(&e.to_string()),
    };
    let msg = match &e {
        ApiError::RequestError(inner) => match &**inner {
            // The Hub answers 401 for a repository that does not exist, too.
            ureq::Error::Status(401 | 403, _) => format!(
                "{text} (no such repository, or a gated or private one: check the id; for a gated one accept its terms on the Hub and set HF_TOKEN)"
            ),
            ureq::Error::Status(404, _) => format!("{text} (no such repository, revision or file)"),
            ureq::Error::Status(..) => text,
            ureq::Error::Transport(_) => format!("cannot reach {endpoint}: {text}"),
        },
        ApiError::InvalidResume => {
            format!("{text}: a partial download (blobs/*.part) is larger than the file; delete it")
        }
        _ => text,
    };
    Error::Hub(msg)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The client's progress calls turned into [`DownloadProgress`] ones, noting the announced size.
struct Forward<'a> {
    repo: &'a str,
    progress: &'a mut dyn DownloadProgress,
    total: &'a Cell<Option<u64>>,
    done: u64,
    started: bool,
}

impl hf_hub::api::Progress for Forward<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        // Called once before the transfer and again when it starts, followed by an update of
        // the bytes a resumed download already has.
        self.total.set(Some(size as u64));
        self.done = 0;
        if !self.started {
            self.progress.start(self.repo, filename, size as u64);
            self.started = true;
        }
    }
    fn update(&mut self, size: usize) {
        self.done += size as u64;
        self.progress.update(self.done);
    }
    fn finish(&mut self) {
        self.progress.finish();
    }
}

/// Which of the files the loader reads are absent from `snap` (a link to a missing blob counts
/// as absent): config.json, tokenizer.json, and the weights (the index and every shard it names,
/// else model.safetensors, else model_0.safetensors).
fn missing_files(snap: &Path) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    if !snap.join(CONFIG).is_file() {
        missing.push(CONFIG.to_string());
    }
    let index = snap.join(INDEX);
    if index.is_file() {
        missing.extend(shard_names(&index)?.into_iter().filter(|f| !snap.join(f).is_file()));
    } else if !snap.join(WEIGHTS).is_file() && !snap.join("model_0.safetensors").is_file() {
        missing.push(WEIGHTS.to_string());
    }
    if !snap.join(TOKENIZER).is_file() {
        missing.push(TOKENIZER.to_string());
    }
    Ok(missing)
}

/// The shard files a safetensors index names (its `weight_map` values), each once.
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let bad = |what: &str| Error::Checkpoint(format!("{}: {what}", index.display()));
    let bytes = crate::files::read_input(index, MAX_JSON_BYTES).map_err(|e| Error::io(index, e))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object"))?;
    let mut names = Vec::new();
    for v in map.values() {
        let f = v.as_str().ok_or_else(|| bad("file names must be strings"))?;
        // Shards are fetched by this name and written under the snapshot: plain names only.
        if f.is_empty() || f.contains('/') || f.contains('\\') || f.contains("..") {
            return Err(bad(&format!("bad shard name `{f}`")));
        }
        names.push(f.to_string());
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// How [`StderrProgress`] shows itself (`XLSTM_PROGRESS`, as for the `xlstm` commands' progress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Off,
    /// A live bar per file on a terminal.
    Bar,
    /// Plain lines (stderr is not a terminal, or `XLSTM_PROGRESS=plain`).
    Plain,
}

/// The shortest interval between two plain progress lines of one file.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// A download's progress on stderr: a bar per file on a terminal (indicatif), plain lines
/// otherwise (`PREFIX: downloading ORG/NAME FILE: DONE/TOTAL (P%), RATE, ETA`, at most one every
/// two seconds, plus a line when each file starts and ends). `XLSTM_PROGRESS=off` shows nothing,
/// `XLSTM_PROGRESS=plain` plain lines also on a terminal. Never writes stdout.
pub struct StderrProgress {
    prefix: String,
    mode: Mode,
    bar: Option<indicatif::ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    first_done: u64,
    started: Instant,
    last_line: Instant,
}

impl StderrProgress {
    /// Lines start with `prefix:` (e.g. `xlstm`).
    pub fn new(prefix: &str) -> StderrProgress {
        use std::io::IsTerminal;
        let mode = match std::env::var("XLSTM_PROGRESS").unwrap_or_default().trim() {
            "off" | "0" | "none" => Mode::Off,
            "plain" => Mode::Plain,
            _ if std::io::stderr().is_terminal() => Mode::Bar,
            _ => Mode::Plain,
        };
        StderrProgress {
            prefix: prefix.to_string(),
            mode,
            bar: None,
            label: String::new(),
            total: 0,
            done: 0,
            first_done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }
}

fn bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}

impl DownloadProgress for StderrProgress {
    fn start(&mut self, repo: &str, file: &str, total: u64) {
        self.label = format!("{repo} {file}");
        (self.total, self.done, self.first_done) = (total, 0, 0);
        self.started = Instant::now();
        self.last_line = self.started;
        match self.mode {
            Mode::Off => {}
            Mode::Bar => {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "downloading {msg} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(self.label.clone());
                self.bar = Some(bar);
            }
            Mode::Plain => eprintln!("{}: downloading {} ({})", self.prefix, self.label, bytes(total)),
        }
    }

    fn update(&mut self, done: u64) {
        if self.done == 0 && done > 0 && self.first_done == 0 {
            // What a resumed download already had: not part of this transfer's rate.
            self.first_done = done;
        }
        self.done = done;
        match self.mode {
            Mode::Off => {}
            Mode::Bar => {
                if let Some(bar) = &self.bar {
                    bar.set_position(done);
                }
            }
            Mode::Plain => {
                let now = Instant::now();
                if now - self.last_line < LINE_EVERY {
                    return;
                }
                self.last_line = now;
                let secs = (now - self.started).as_secs_f64().max(1e-3);
                let rate = (done.saturating_sub(self.first_done)) as f64 / secs;
                let pct = (100 * done).checked_div(self.total).unwrap_or(0);
                let eta = if rate > 0.0 {
                    format!("{:.0}s", self.total.saturating_sub(done) as f64 / rate)
                } else {
                    "?".into()
                };
                eprintln!(
                    "{}: downloading {}: {}/{} ({pct}%), {}/s, ETA {eta}",
                    self.prefix,
                    self.label,
                    bytes(done),
                    bytes(self.total),
                    bytes(rate as u64)
                );
            }
        }
    }

    fn finish(&mut self) {
        match self.mode {
            Mode::Off => {}
            Mode::Bar => {
                if let Some(bar) = self.bar.take() {
                    bar.finish();
                }
            }
            Mode::Plain => eprintln!(
                "{}: downloaded {} ({} in {:.1} s)",
                self.prefix,
                self.label,
                bytes(self.done),
                self.started.elapsed().as_secs_f64()
            ),
        }
    }
}
