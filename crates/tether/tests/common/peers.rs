//! Peers the tests start as child processes: oidc-provider-mock on a free port
//! ([`Provider`]), and [`Output`], which collects what a child process prints. Shared by the
//! browser and OpenID Connect sign-in tests.
//!
//! Use it from an integration test with
//!
//! ```ignore
//! #[path = "common/peers.rs"]
//! mod peers;
//! use peers::Provider;
//!
//! let provider = Provider::start();                  // killed when dropped
//! let issuer = &provider.url;                        // http://127.0.0.1:PORT
//! ```
//!
//! `TETHER_PEERS_BIN` names the directory with the provider's Python (`scripts/peers/install`
//! installs it and prints the variable; scripts/test does both); a test run without it fails
//! with a message saying so.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long the provider may take to listen.
const PROVIDER_START: Duration = Duration::from_secs(60);

/// Everything a child process writes on a pipe, collected by a thread.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    fn push(&self, line: &str) {
        let mut text = self.0.lock().unwrap();
        text.push_str(line);
        text.push('\n');
    }

    /// All lines collected so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Collects `pipe` line by line; `each` sees every line too.
    pub fn collect(
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

/// oidc-provider-mock (from `$TETHER_PEERS_BIN`) on a free port, as
/// `app(require_nonce=True)`; killed (by its id) when dropped.
pub struct Provider {
    child: Child,
    /// Its base URL, which is its issuer.
    pub url: String,
    /// What it printed (stdout and stderr), for failure messages.
    pub log: Output,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts the provider and waits until it listens.
    pub fn start() -> Provider {
        let bin = match std::env::var("TETHER_PEERS_BIN") {
            Ok(bin) if !bin.is_empty() => bin,
            _ => panic!(
                "TETHER_PEERS_BIN is not set, so the test cannot start its OpenID provider \
                 (oidc-provider-mock): run `eval \"$(scripts/peers/install | tail -n 1)\"`, \
                 or scripts/test, which does it"
            ),
        };
        let script = r#"
import sys, threading, werkzeug.serving
from oidc_provider_mock import app
server = werkzeug.serving.make_server("127.0.0.1", 0, app(require_nonce=True), threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"listening http://127.0.0.1:{server.server_port}", flush=True)
sys.stdin.read()
"#;
        let mut child = Command::new(format!("{bin}/python"))
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}/python (oidc-provider-mock): {e}"));
        let log = Output::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        let ready_tx = Mutex::new(ready_tx);
        let _ = log.collect(child.stdout.take().unwrap(), move |line| {
            if let Some(url) = line.strip_prefix("listening ") {
                let _ = ready_tx.lock().unwrap().send(url.trim().to_owned());
            }
        });
        let _ = log.collect(child.stderr.take().unwrap(), |_| {});
        let mut provider = Provider {
            child,
            url: String::new(),
            log,
        };
        match ready_rx.recv_timeout(PROVIDER_START) {
            Ok(url) => {
                provider.url = url;
                provider
            }
            Err(_) => panic!(
                "oidc-provider-mock did not listen within {PROVIDER_START:?} (exit status: \
                 {:?}); its output:\n{}",
                provider.child.try_wait().ok().flatten(),
                provider.log.text()
            ),
        }
    }
}
