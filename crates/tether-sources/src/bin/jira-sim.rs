//! `jira-sim`: the Jira simulator of `tether_sources::simulator` as a process, for end-to-end
//! tests, demos and benchmarks. Prints its base URL alone on the first line of stdout, then
//! serves until killed (or Ctrl-C).
//!
//! ```text
//! jira-sim --flavor cloud|dc --accounts N [--latency-ms 50] [--listen 127.0.0.1:0]
//!          [--seed S] [--plain] [--emails-from FILE | --accounts-file FILE]
//!          [--user EMAIL] [--token TOKEN] [--rate-limit-every N] [--retry-after S]
//!          [--retry-after-date] [--error-every M] [--no-cap | --cap 100]
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tether_sources::simulator::{
    accounts_from_emails, accounts_from_file, generate_accounts, Flavor, SimConfig, Simulator,
};

const USAGE: &str = "usage: jira-sim --flavor cloud|dc [--accounts N (default 1000)] \
[--latency-ms MS] [--listen ADDR (default 127.0.0.1:0)] [--seed S] [--plain (no hidden e-mails, \
app/customer/inactive accounts)] [--emails-from FILE (one account per line; a CSV with an email \
column also works)] [--accounts-file FILE (.csv/.jsonl, tether's accounts header)] \
[--user EMAIL (default sim@example.com)] [--token TOKEN (default sim-token)] \
[--rate-limit-every N] [--retry-after SECONDS (default 1)] [--retry-after-date] \
[--error-every M] [--cap N (DC search cap, default 100) | --no-cap]";

struct Args {
    flavor: Flavor,
    accounts: usize,
    latency_ms: u64,
    listen: SocketAddr,
    seed: u64,
    quirks: bool,
    emails_from: Option<PathBuf>,
    accounts_file: Option<PathBuf>,
    user: Option<String>,
    token: Option<String>,
    rate_limit_every: Option<u64>,
    retry_after: u64,
    retry_after_date: bool,
    error_every: Option<u64>,
    cap: Option<Option<usize>>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        flavor: Flavor::Cloud,
        accounts: 1000,
        latency_ms: 0,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        seed: 1,
        quirks: true,
        emails_from: None,
        accounts_file: None,
        user: None,
        token: None,
        rate_limit_every: None,
        retry_after: 1,
        retry_after_date: false,
        error_every: None,
        cap: None,
    };
    let mut flavor_given = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, text: String) -> Result<T, String> {
            text.parse()
                .map_err(|_| format!("{flag}: '{text}' is not a number"))
        }
        match flag.as_str() {
            "--flavor" => {
                args.flavor = value("--flavor")?.parse()?;
                flavor_given = true;
            }
            "--accounts" => args.accounts = num(&flag, value(&flag)?)?,
            "--latency-ms" => args.latency_ms = num(&flag, value(&flag)?)?,
            "--listen" => args.listen = num(&flag, value(&flag)?)?,
            "--seed" => args.seed = num(&flag, value(&flag)?)?,
            "--plain" => args.quirks = false,
            "--emails-from" => args.emails_from = Some(value(&flag)?.into()),
            "--accounts-file" => args.accounts_file = Some(value(&flag)?.into()),
            "--user" => args.user = Some(value(&flag)?),
            "--token" => args.token = Some(value(&flag)?),
            "--rate-limit-every" => args.rate_limit_every = Some(num(&flag, value(&flag)?)?),
            "--retry-after" => args.retry_after = num(&flag, value(&flag)?)?,
            "--retry-after-date" => args.retry_after_date = true,
            "--error-every" => args.error_every = Some(num(&flag, value(&flag)?)?),
            "--cap" => args.cap = Some(Some(num(&flag, value(&flag)?)?)),
            "--no-cap" => args.cap = Some(None),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if !flavor_given {
        return Err("--flavor cloud|dc is required".to_owned());
    }
    Ok(args)
}

/// Addresses from a file: one per line, or a CSV whose header has an `email` column.
fn read_emails(path: &PathBuf) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns.len() > 1 {
        let index = columns
            .iter()
            .position(|c| *c == "email")
            .ok_or_else(|| format!("{}: the CSV header has no email column", path.display()))?;
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut emails = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(email) = record.get(index).map(str::trim).filter(|e| !e.is_empty()) {
                emails.push(email.to_owned());
            }
        }
        return Ok(emails);
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "email")
        .map(str::to_owned)
        .collect())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("jira-sim: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let accounts = if let Some(path) = &args.accounts_file {
        match accounts_from_file(path) {
            Ok(accounts) => accounts,
            Err(e) => {
                eprintln!("jira-sim: {e}");
                return ExitCode::from(2);
            }
        }
    } else if let Some(path) = &args.emails_from {
        match read_emails(path) {
            Ok(emails) => accounts_from_emails(&emails, args.seed, args.quirks),
            Err(e) => {
                eprintln!("jira-sim: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        generate_accounts(args.accounts, args.seed, args.quirks)
    };
    let count = accounts.len();
    let mut config = SimConfig::new(args.flavor, accounts);
    config.latency = Duration::from_millis(args.latency_ms);
    if let Some(user) = args.user {
        config.user = user;
    }
    if let Some(token) = args.token {
        config.token = token;
    }
    config.rate_limit_every = args.rate_limit_every;
    config.retry_after_seconds = args.retry_after;
    config.retry_after_as_date = args.retry_after_date;
    config.server_error_every = args.error_every;
    if let Some(cap) = args.cap {
        config.search_cap = cap;
    }
    let simulator = match Simulator::start_on(config, args.listen).await {
        Ok(simulator) => simulator,
        Err(e) => {
            eprintln!("jira-sim: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", simulator.url());
    let _ = stdout.flush();
    let config = simulator.config();
    eprintln!(
        "jira-sim: {} flavor, {count} accounts, {} ms latency; auth: {}",
        match config.flavor {
            Flavor::Cloud => "cloud",
            Flavor::DataCenter => "dc",
        },
        args.latency_ms,
        match config.flavor {
            Flavor::Cloud => format!("basic {} / {}", config.user, config.token),
            Flavor::DataCenter => format!("bearer {}", config.token),
        }
    );
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("jira-sim: {:?}", simulator.stats());
    ExitCode::SUCCESS
}
