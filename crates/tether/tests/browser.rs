//! The admin UI in a real browser (issue 3): `tether serve --demo` on a fresh SQLite database,
//! driven by Debian's chromium through npm `playwright-core` (tests/browser/admin_flow.mjs):
//! sign in, switch Auto-populate on, preview and run Pull User Data, read a duplicate_accounts
//! explanation, set an External ID by hand, with no CSP violation or script error.
//!
//! Needs `TETHER_NODE_PATH` (node_modules with playwright-core) and `TETHER_CHROMIUM`;
//! `scripts/peers/install` installs both and prints them (scripts/test does this).
//! Screenshots of every screen land in `target/screenshots/`; with
//! `TETHER_UPDATE_SCREENSHOTS=1` they are also copied to `docs/screenshots/` for the README.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long the server may take to fill the demo and listen (a debug build on two cores).
const SERVER_START: Duration = Duration::from_secs(300);
/// How long the whole browser flow may take; the script's own waits are shorter.
const FLOW: Duration = Duration::from_secs(900);

/// The screens every run photographs, in order (the README shows them). A run held by the
/// mass-change safeguard adds `06a-pull-held-for-approval.png`.
const SCREENSHOTS: &[&str] = &[
    "01-login.png",
    "02-dashboard-before.png",
    "03-settings-security-saved.png",
    "04-sources.png",
    "05-pull-user-data.png",
    "06-pull-preview.png",
    "07-pull-run-result.png",
    "08-dashboard-after.png",
    "09-users-duplicate-accounts.png",
    "10-user-duplicate-accounts.png",
    "11-user-no-match.png",
    "12-user-manual-set.png",
    "13-audit-log.png",
    "14-api-tokens.png",
];

fn peer_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: the browser test needs playwright-core and chromium. Run \
             `eval \"$(scripts/peers/install | tail -n 1)\"` (or scripts/test, which does it)"
        ),
    }
}

fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `target/` of this build (the binary lives in `target/debug/`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tether"))
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Everything a child process writes on a pipe, collected by a thread.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<String>>);

impl Output {
    fn push(&self, line: &str) {
        let mut text = self.0.lock().unwrap();
        text.push_str(line);
        text.push('\n');
    }
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
    /// Collects `pipe` line by line; `each` sees every line too.
    fn collect(
        &self,
        pipe: impl Read + Send + 'static,
        each: impl Fn(&str) + Send + 'static,
    ) -> thread::JoinHandle<()> {
        let out = self.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                each(&line);
                out.push(&line);
            }
        })
    }
}

/// `tether serve --demo`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    password: String,
    log: Output,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the server prints when it is ready: the URL and the demo admin's password.
fn ready_line(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("tether: open ")?;
    let (url, rest) = rest.split_once(' ')?;
    let password = rest
        .split_once("password '")?
        .1
        .split_once('\'')?
        .0
        .to_owned();
    Some((url.trim_end_matches('/').to_owned(), password))
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("t.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "--database",
            &database,
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Output::default();
    let _ = log.collect(child.stdout.take().unwrap(), |_| {});
    let (ready_tx, ready_rx) = mpsc::channel();
    let ready_tx = Mutex::new(ready_tx);
    let _ = log.collect(child.stderr.take().unwrap(), move |line| {
        if let Some(ready) = ready_line(line) {
            let _ = ready_tx.lock().unwrap().send(ready);
        }
    });
    let mut server = Server {
        child,
        url: String::new(),
        password: String::new(),
        log,
        _dir: dir,
    };
    match ready_rx.recv_timeout(SERVER_START) {
        Ok((url, password)) => {
            server.url = url;
            server.password = password;
            server
        }
        Err(_) => panic!(
            "tether serve --demo did not print its URL and password within {SERVER_START:?} \
             (exit status: {:?}); its output:\n{}",
            server.child.try_wait().ok().flatten(),
            server.log.text()
        ),
    }
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path)
        .map(|bytes| bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
        .unwrap_or(false)
}

#[test]
fn admin_flow_in_chromium() {
    let node_path = peer_env("TETHER_NODE_PATH");
    let chromium = peer_env("TETHER_CHROMIUM");
    assert!(
        Path::new(&node_path).join("playwright-core").is_dir(),
        "TETHER_NODE_PATH={node_path} has no playwright-core: run scripts/peers/install"
    );

    let shots = target_dir().join("screenshots");
    if shots.exists() {
        std::fs::remove_dir_all(&shots).unwrap();
    }
    std::fs::create_dir_all(&shots).unwrap();

    let server = start_server();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/admin_flow.mjs");
    let mut node = Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &node_path)
        .env("TETHER_URL", &server.url)
        .env("TETHER_ADMIN_PASSWORD", &server.password)
        .env("TETHER_CHROMIUM", &chromium)
        .env("TETHER_SCREENSHOTS", &shots)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start node (is Node.js installed?): {e}"));
    let output = Output::default();
    let readers = [
        output.collect(node.stdout.take().unwrap(), |_| {}),
        output.collect(node.stderr.take().unwrap(), |_| {}),
    ];
    let pid = node.id();
    let (done_tx, done_rx) = mpsc::channel::<std::io::Result<ExitStatus>>();
    thread::spawn(move || {
        let _ = done_tx.send(node.wait());
    });
    let status = match done_rx.recv_timeout(FLOW) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // The script's own waits should have ended it long ago; stop it (and so chromium).
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!(
                "the browser flow did not finish within {FLOW:?}; its output:\n{}\n\
                 server log:\n{}",
                output.text(),
                server.log.text()
            );
        }
    };
    // The readers end when node's pipes close; then the output is complete.
    for reader in readers {
        let _ = reader.join();
    }
    let flow_output = output.text();
    assert!(
        status.success(),
        "the browser flow failed ({status}); screenshots in {}.\n--- admin_flow.mjs ---\n{}\
         --- tether serve --demo ---\n{}",
        shots.display(),
        flow_output,
        server.log.text()
    );
    drop(server);
    // Shown with --nocapture: every step and screenshot.
    eprint!("{flow_output}");

    for name in SCREENSHOTS {
        assert!(
            is_png(&shots.join(name)),
            "the flow passed but {name} is missing or not a PNG in {}; its output:\n{flow_output}",
            shots.display()
        );
    }

    if std::env::var("TETHER_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        update_docs(&shots, &workspace().join("docs/screenshots"));
    }
}

/// Replaces the README's screenshots with this run's.
fn update_docs(shots: &Path, docs: &Path) {
    std::fs::create_dir_all(docs).unwrap();
    for entry in std::fs::read_dir(docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let mut copied = 0;
    for entry in std::fs::read_dir(shots).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.extension().is_some_and(|e| e == "png") && name != "failure.png" {
            std::fs::copy(&path, docs.join(&name)).unwrap();
            copied += 1;
        }
    }
    eprintln!("browser: copied {copied} screenshots to {}", docs.display());
}
