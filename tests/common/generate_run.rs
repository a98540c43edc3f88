//! A long `xlstm generate` on the shipped Large model in its own runtime directory, for the
//! monitor's tests (tests/xltop.rs, tests/xltop_serve.rs); killed when dropped, so a failing
//! test leaves nothing running.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub struct GenerateRun {
    child: Child,
    dir: TempDir,
}

impl GenerateRun {
    pub fn start() -> GenerateRun {
        let dir = tempfile::tempdir().unwrap();
        let model = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join("xlstm-large-mini");
        let child = Command::new(env!("CARGO_BIN_EXE_xlstm"))
            .args([
                "generate",
                "--max-new-tokens",
                "1000000",
                "--ignore-eos",
                "--mem-every",
                "100",
                "--model",
            ])
            .arg(&model)
            .env("XLSTM_RUNTIME_DIR", dir.path())
            .env_remove("XLSTM_MEM_WATCHDOG")
            .env_remove("XLSTM_TELEMETRY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting xlstm generate");
        GenerateRun { child, dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its runtime directory (where its status record is).
    pub fn rt(&self) -> &Path {
        self.dir.path()
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code and stderr.
    pub fn wait(mut self, timeout: Duration) -> (Option<i32>, String) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return (st.code(), err);
            }
            assert!(t0.elapsed() < timeout, "xlstm generate did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GenerateRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
