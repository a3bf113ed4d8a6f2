//! Fetch-only benchmark: reads every account of a simulated Jira through a source, once with
//! one request at a time and once with bounded concurrency, and prints pages, accounts,
//! seconds and the speed-up.
//!
//! ```text
//! cargo run --release -p tether-sources --example fetch_bench -- \
//!     [--flavor cloud|dc] [--accounts 150000] [--latency-ms 50] [--page-size 1000] \
//!     [--concurrency 4] [--url URL (a running jira-sim; default: one in this process)]
//! ```

use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tether_sources::simulator::{generate_accounts, Flavor, SimConfig, Simulator};
use tether_sources::{connect, FetchReport, Page, ProgressCounter, Secret, SourceSettings};

struct Args {
    flavor: Flavor,
    accounts: usize,
    latency_ms: u64,
    page_size: u32,
    concurrency: u32,
    url: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        flavor: Flavor::Cloud,
        accounts: 150_000,
        latency_ms: 50,
        page_size: 1000,
        concurrency: 4,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("{flag}: '{value}' is not valid");
        match flag.as_str() {
            "--flavor" => args.flavor = value.parse()?,
            "--accounts" => args.accounts = value.parse().map_err(bad)?,
            "--latency-ms" => args.latency_ms = value.parse().map_err(bad)?,
            "--page-size" => args.page_size = value.parse().map_err(bad)?,
            "--concurrency" => args.concurrency = value.parse().map_err(bad)?,
            "--url" => args.url = Some(value),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(args)
}

async fn run(args: &Args, url: &str, concurrency: u32) -> Result<(FetchReport, Duration), String> {
    let settings = SourceSettings {
        base_url: Some(url.to_owned()),
        user: Some("sim@example.com".to_owned()),
        page_size: Some(args.page_size),
        concurrency: Some(concurrency),
        ..SourceSettings::default()
    };
    let kind = match args.flavor {
        Flavor::Cloud => "jira_cloud",
        Flavor::DataCenter => "jira_dc",
    };
    let source = connect(kind, &settings, Some(Secret("sim-token".to_owned())))
        .map_err(|e| e.to_string())?;
    let progress = ProgressCounter::new();
    let sink = |page: Page| {
        progress.record(&page);
        Ok(())
    };
    let cancel = AtomicBool::new(false);
    // A benchmark measures elapsed time; tokio's monotonic clock, not the wall clock.
    let started = tokio::time::Instant::now();
    let report = source
        .fetch(&sink, &cancel)
        .await
        .map_err(|e| e.to_string())?;
    Ok((report, started.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse()?;
    let simulator;
    let url = match &args.url {
        Some(url) => url.clone(),
        None => {
            let mut config = SimConfig::new(args.flavor, generate_accounts(args.accounts, 1, true));
            config.latency = Duration::from_millis(args.latency_ms);
            simulator = Simulator::start(config).await.map_err(|e| e.to_string())?;
            simulator.url().to_owned()
        }
    };
    println!(
        "fetch_bench: {} accounts, {} ms latency per request, page size {}, simulator {url}",
        args.accounts, args.latency_ms, args.page_size
    );
    let mut times = Vec::new();
    for concurrency in [1, args.concurrency] {
        let (report, elapsed) = run(&args, &url, concurrency).await?;
        println!(
            "concurrency {concurrency:>2}: {:>4} pages, {:>7} accounts, {:>6.2} s, complete {}",
            report.pages,
            report.accounts,
            elapsed.as_secs_f64(),
            report.complete
        );
        for warning in &report.warnings {
            println!("    {warning}");
        }
        times.push(elapsed.as_secs_f64());
    }
    if let [sequential, concurrent] = times[..] {
        println!(
            "speed-up: {:.2}x",
            sequential / concurrent.max(f64::EPSILON)
        );
    }
    Ok(())
}
