//! `tether`: keeps an application's users linked to an identity platform's accounts.
//!
//! Layers: `files` reads import files; `app` holds the use cases; `cli` parses arguments and
//! renders; `clock` is the only reader of the clock. SQL lives in tether-store, matching in
//! tether-core.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod app;
mod cli;
mod clock;
mod demo;
mod error;
mod files;
mod jobs;
mod oidc;
mod web;

use clap::Parser;
use tether_store::{redact_url, AnyStore};

/// Structured request logs on stderr: JSON with `TETHER_LOG_FORMAT=json`, else text;
/// the level from `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("TETHER_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tether: cannot start: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        let store = match AnyStore::open(&cli.database).await {
            Ok(store) => store,
            Err(e) => {
                eprintln!(
                    "tether: cannot open database {}: {e}",
                    redact_url(&cli.database)
                );
                return 1;
            }
        };
        let actor = format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
        );
        let mut app = app::App::new(store, actor);
        app.secret_key = match app::admin::SecretKey::locate(&cli.database) {
            Ok(key) => key,
            Err(e) => {
                eprintln!("tether: {e}");
                return e.exit_code();
            }
        };
        if let cli::Command::Serve {
            listen,
            demo,
            public_url,
        } = cli.command
        {
            init_logging();
            let demo_hint = if demo {
                match demo::seed(&app, &cli.database, clock::now()).await {
                    Ok(hint) => Some(hint),
                    Err(e) => {
                        eprintln!("tether: demo: {e}");
                        return e.exit_code();
                    }
                }
            } else {
                None
            };
            app.actor = "server".to_owned();
            let options = web::ServeOptions {
                listen,
                public_url,
                demo_hint,
            };
            return match web::serve(app, options).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("tether: {e:#}");
                    1
                }
            };
        }
        match cli::run(&app, cli.command).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("tether: {e}");
                e.exit_code()
            }
        }
    });
    std::process::exit(code);
}
