//! A `tether serve` subprocess for HTTP tests, on a fresh SQLite database in a temporary
//! directory. Shared by the API, security, UI and other web tests.
//!
//! Use it from an integration test with
//!
//! ```ignore
//! #[path = "common/server.rs"]
//! mod server;
//! use server::Server;
//!
//! let server = Server::demo();                       // or Server::start(&[]) for an empty one
//! let token = server.token("admin");                 // `tether token create --scope admin`
//! let client = server.client();                      // reqwest, no redirects followed
//! let r = client.get(server.url("/api/v1/users")).bearer_auth(&token).send().await?;
//! let session = server.sign_in_demo().await;         // an admin's cookie + CSRF token
//! ```
//!
//! The server listens on 127.0.0.1:0 (the port is read back from its
//! `tether: listening on http://…` line) and is killed when the `Server` is dropped. Its
//! stderr is kept: [`Server::log`] returns it, for failure messages.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a server may take to start (a debug build filling the demo database).
const START_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    /// `sqlite:…/t.db`: pass to [`Server::tether`] commands (they do it for you).
    pub database: String,
    /// The demo administrator's password (started with `--demo`).
    pub demo_password: Option<String>,
    log: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

/// An administrator's browser session: the `Cookie` header value and the CSRF token
/// (forms: field `csrf`; API writes: header `X-CSRF-Token`).
#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// The tether binary under test.
pub fn tether_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tether")
}

impl Server {
    /// An empty server: `tether --database sqlite:TMP/t.db serve --listen 127.0.0.1:0 ARGS`.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with(args, |_| {})
    }

    /// A server started with `--demo` (3,000 users, source `demo-directory`, admin `admin`).
    pub fn demo() -> Server {
        Self::start(&["--demo"])
    }

    /// Like [`Server::start`], but `prepare` runs first with the database URL (e.g. to
    /// import files with [`run_tether`]) before the server opens it.
    pub fn start_with(args: &[&str], prepare: impl FnOnce(&str)) -> Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = format!("sqlite:{}", dir.path().join("t.db").display());
        prepare(&database);
        let mut child = Command::new(tether_bin())
            .args(["--database", &database, "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tether serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(Option<String>, Option<String>)>();
        let kept = Arc::clone(&log);
        let demo = args.contains(&"--demo");
        std::thread::spawn(move || {
            let mut base = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("tether: listening on ") {
                    base = Some(url.trim().trim_end_matches('/').to_owned());
                    if !demo {
                        let _ = tx.send((base.clone(), None));
                    }
                }
                if let Some(rest) = line.split("and password '").nth(1) {
                    let password = rest.split('\'').next().map(str::to_owned);
                    let _ = tx.send((base.clone(), password));
                }
                if let Ok(mut log) = kept.lock() {
                    log.push(line);
                }
            }
            // The server exited: wake the waiting test (it then reports the log).
            let _ = tx.send((None, None));
        });
        let (base, demo_password) = match rx.recv_timeout(START_TIMEOUT) {
            Ok((Some(base), password)) => (base, password),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tether serve {args:?} did not start ({other:?}); its stderr:\n{}",
                    log.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
        };
        let server = Server {
            child,
            base,
            database,
            demo_password,
            log,
            dir,
        };
        if args.contains(&"--demo") {
            assert!(
                server.demo_password.is_some(),
                "--demo printed no password; stderr:\n{}",
                server.log()
            );
        }
        server
    }

    /// `BASE + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The temporary directory holding the database (files for imports may go here too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file path inside [`Server::dir`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Runs `tether --database DB ARGS` against this server's database; panics on failure.
    pub fn tether(&self, args: &[&str]) -> Output {
        run_tether(&self.database, args)
    }

    /// A new bearer token of scope `admin` or `scim` (`tether token create`).
    pub fn token(&self, scope: &str) -> String {
        let name = format!(
            "test-{scope}-{}",
            TOKEN_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let out = self.tether(&["token", "create", "--name", &name, "--scope", scope]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("token create prints the token on its last line")
            .trim()
            .to_owned()
    }

    /// An HTTP client that follows no redirects and keeps no cookies (tests send them).
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a client")
    }

    /// Signs in as the demo administrator.
    pub async fn sign_in_demo(&self) -> Session {
        let password = self.demo_password.clone().expect("started with --demo");
        self.sign_in("admin", &password)
            .await
            .unwrap_or_else(|status| panic!("demo sign-in refused with {status}"))
    }

    /// Signs in through the form (GET /login for its CSRF cookie and field, POST /login),
    /// then reads the session's CSRF token from a page's `<meta name="csrf-token">`.
    /// `Err(status)` when the sign-in is refused.
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<Session, u16> {
        let client = self.client();
        let form = client
            .get(self.url("/login"))
            .send()
            .await
            .expect("GET /login");
        let login_cookie = set_cookie(&form, "tether_login").expect("GET /login sets tether_login");
        let html = form.text().await.expect("login page");
        let csrf = attribute_after(&html, "name=\"csrf\"", "value").expect("login form has csrf");
        let response = client
            .post(self.url("/login"))
            .header("cookie", format!("tether_login={login_cookie}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", username),
                ("password", password),
                ("next", "/"),
            ])
            .send()
            .await
            .expect("POST /login");
        let session = ["tether_session", "__Host-tether_session"]
            .iter()
            .find_map(|name| set_cookie(&response, name).map(|v| format!("{name}={v}")));
        let Some(cookie) = session.filter(|c| !c.ends_with('=')) else {
            return Err(response.status().as_u16());
        };
        let page = client
            .get(self.url("/"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET /");
        let html = page.text().await.expect("dashboard");
        let csrf = attribute_after(&html, "name=\"csrf-token\"", "content")
            .expect("admin pages carry <meta name=\"csrf-token\">");
        Ok(Session { cookie, csrf })
    }
}

static TOKEN_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Runs `tether --database DB ARGS`; panics with its output on failure.
pub fn run_tether(database: &str, args: &[&str]) -> Output {
    let out = Command::new(tether_bin())
        .args(["--database", database])
        .args(args)
        .output()
        .expect("tether runs");
    assert!(
        out.status.success(),
        "tether {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The value of cookie `name` in a response's `Set-Cookie` headers.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    set_cookie_header(response, name).and_then(|h| {
        h.split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .map(|(_, v)| v.trim().to_owned())
    })
}

/// The whole `Set-Cookie` header that sets cookie `name` (flags included).
pub fn set_cookie_header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value of attribute `attr` in the first tag containing `marker`.
pub fn attribute_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!("{attr}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(tag[from..from + len].to_owned())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
