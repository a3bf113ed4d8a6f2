//! The admin UI in a real browser: `tether serve --demo` on a fresh SQLite database, driven by
//! Debian's chromium through npm `playwright-core`, with no CSP violation or script error.
//!
//! - `admin_flow_in_chromium` (issue 3, tests/browser/admin_flow.mjs): sign in, switch
//!   Auto-populate on, preview and run Pull User Data, read a duplicate_accounts explanation,
//!   set an External ID by hand.
//! - `sign_in_flow_in_chromium` (issue 5, tests/browser/signin_flow.mjs): the admin configures
//!   OpenID Connect sign-in under Settings › Security (the server has no `TETHER_OIDC_*`
//!   variable) against oidc-provider-mock; a user signs in with their e-mail in another case,
//!   gets linked and sees it on "My account"; the admin sees the link with origin `login` in
//!   the audit log; a second sign-in with a changed e-mail matches by External ID.
//!
//! Needs `TETHER_NODE_PATH` (node_modules with playwright-core), `TETHER_CHROMIUM` and, for
//! the sign-in flow, `TETHER_PEERS_BIN` (oidc-provider-mock); `scripts/peers/install`
//! installs them and prints them (scripts/test does this). Screenshots land in
//! `target/screenshots/` (the sign-in flow's in `target/screenshots/signin/`); with
//! `TETHER_UPDATE_SCREENSHOTS=1` they are also copied to `docs/screenshots/` for the README.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/peers.rs"]
mod peers;

use peers::{Output, Provider};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
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

/// The sign-in flow's screens, in `target/screenshots/signin/` and in `docs/screenshots/`.
const SIGNIN_SCREENSHOTS: &[&str] = &[
    "15-settings-sign-in.png",
    "16-provider-sign-in.png",
    "17-my-account-linked.png",
    "18-audit-login.png",
];

fn peer_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: the browser tests need playwright-core, chromium and \
             oidc-provider-mock. Run `eval \"$(scripts/peers/install | tail -n 1)\"` (or \
             scripts/test, which does it)"
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

/// `tether serve --demo` on a fresh SQLite database and a free port. Sign-in is configured
/// from the admin UI only: no `TETHER_OIDC_*` variable (nor a public URL) reaches the server.
fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("t.db").display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
    command
        .args([
            "--database",
            &database,
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .env_remove("TETHER_PUBLIC_URL");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TETHER_OIDC_") {
            command.env_remove(name);
        }
    }
    let mut child = command
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

/// Empties `dir` of this flow's files (PNGs, not the other flow's subdirectory).
fn fresh_screenshots(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// Runs `tests/browser/{script}` with node against `server`, the flow's screenshots going to
/// `shots` and `extra` in its environment; panics with its output and the server's log
/// unless it exits 0. Returns its output.
fn run_flow(script: &str, server: &Server, shots: &Path, extra: &[(&str, &str)]) -> String {
    let node_path = peer_env("TETHER_NODE_PATH");
    let chromium = peer_env("TETHER_CHROMIUM");
    assert!(
        Path::new(&node_path).join("playwright-core").is_dir(),
        "TETHER_NODE_PATH={node_path} has no playwright-core: run scripts/peers/install"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let mut node = Command::new("node")
        .arg(&path)
        .env("NODE_PATH", &node_path)
        .env("TETHER_URL", &server.url)
        .env("TETHER_ADMIN_PASSWORD", &server.password)
        .env("TETHER_CHROMIUM", &chromium)
        .env("TETHER_SCREENSHOTS", shots)
        .envs(extra.iter().copied())
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
                "the browser flow {script} did not finish within {FLOW:?}; its output:\n{}\n\
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
        "the browser flow failed ({status}); screenshots in {}.\n--- {script} ---\n{}\
         --- tether serve --demo ---\n{}",
        shots.display(),
        flow_output,
        server.log.text()
    );
    flow_output
}

fn assert_screenshots(shots: &Path, names: &[&str], flow_output: &str) {
    for name in names {
        assert!(
            is_png(&shots.join(name)),
            "the flow passed but {name} is missing or not a PNG in {}; its output:\n{flow_output}",
            shots.display()
        );
    }
}

fn updating_docs() -> bool {
    std::env::var("TETHER_UPDATE_SCREENSHOTS").as_deref() == Ok("1")
}

#[test]
fn admin_flow_in_chromium() {
    let shots = target_dir().join("screenshots");
    fresh_screenshots(&shots);

    let server = start_server();
    let flow_output = run_flow("admin_flow.mjs", &server, &shots, &[]);
    drop(server);
    // Shown with --nocapture: every step and screenshot.
    eprint!("{flow_output}");
    assert_screenshots(&shots, SCREENSHOTS, &flow_output);

    if updating_docs() {
        update_docs(&shots, &workspace().join("docs/screenshots"));
    }
}

#[test]
fn sign_in_flow_in_chromium() {
    let shots = target_dir().join("screenshots").join("signin");
    fresh_screenshots(&shots);

    let provider = Provider::start();
    let server = start_server();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_flow(
            "signin_flow.mjs",
            &server,
            &shots,
            &[("TETHER_OIDC_PROVIDER", provider.url.as_str())],
        )
    }));
    let flow_output = match result {
        Ok(output) => output,
        Err(panic) => {
            eprintln!(
                "--- oidc-provider-mock ({}) ---\n{}",
                provider.url,
                provider.log.text()
            );
            std::panic::resume_unwind(panic);
        }
    };
    drop(server);
    drop(provider);
    eprint!("{flow_output}");
    assert_screenshots(&shots, SIGNIN_SCREENSHOTS, &flow_output);

    if updating_docs() {
        let docs = workspace().join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        for name in SIGNIN_SCREENSHOTS {
            std::fs::copy(shots.join(name), docs.join(name)).unwrap();
        }
        eprintln!(
            "browser: copied {} sign-in screenshots to {}",
            SIGNIN_SCREENSHOTS.len(),
            docs.display()
        );
    }
}

/// Replaces the README's screenshots of the admin flow with this run's; the sign-in flow's
/// (`SIGNIN_SCREENSHOTS`, written by `sign_in_flow_in_chromium`, maybe at the same time) stay.
fn update_docs(shots: &Path, docs: &Path) {
    std::fs::create_dir_all(docs).unwrap();
    for entry in std::fs::read_dir(docs).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "png") && !SIGNIN_SCREENSHOTS.contains(&&*name) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let mut copied = 0;
    for entry in std::fs::read_dir(shots).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if path.is_file()
            && path.extension().is_some_and(|e| e == "png")
            && !name.to_string_lossy().starts_with("failure")
        {
            std::fs::copy(&path, docs.join(&name)).unwrap();
            copied += 1;
        }
    }
    eprintln!("browser: copied {copied} screenshots to {}", docs.display());
}
