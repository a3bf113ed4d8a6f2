//! `tether`: keeps an application's users linked to an identity platform's accounts.
//!
//! Layers: `files` reads import files; `app` holds the use cases; `cli` parses arguments and
//! renders; `clock` is the only reader of the clock. SQL lives in tether-store, matching in
//! tether-core.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod app;
mod cli;
mod clock;
mod error;
mod files;

use clap::Parser;
use tether_store::{redact_url, AnyStore};

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
        let app = app::App::new(store, actor);
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
