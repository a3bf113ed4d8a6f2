//! The Jira Cloud and Data Center sources against the simulator (served on 127.0.0.1:0):
//! paging, faults, authentication, the Data Center search cap, cancellation, and `connect`'s
//! setting checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tether_core::AccountType;
use tether_sources::simulator::{generate_accounts, Flavor, SimConfig, Simulator};
use tether_sources::{
    connect, FetchReport, JiraDataCenter, NewAccount, Page, ProgressCounter, Secret, Source,
    SourceError, SourceSettings,
};

async fn fetch_all(source: &dyn Source) -> Result<(Vec<NewAccount>, FetchReport), SourceError> {
    let accounts = Mutex::new(Vec::new());
    let progress = ProgressCounter::new();
    let sink = |page: Page| {
        progress.record(&page);
        accounts.lock().unwrap().extend(page.accounts);
        Ok(())
    };
    let cancel = AtomicBool::new(false);
    let report = source.fetch(&sink, &cancel).await?;
    let accounts = accounts.into_inner().unwrap();
    assert_eq!(progress.get().accounts, accounts.len() as u64);
    assert_eq!(progress.get().pages, report.pages);
    assert_eq!(report.accounts, accounts.len() as u64);
    Ok((accounts, report))
}

fn cloud_settings(sim: &Simulator) -> SourceSettings {
    SourceSettings {
        base_url: Some(sim.url().to_owned()),
        user: Some("sim@example.com".to_owned()),
        ..SourceSettings::default()
    }
}

fn token() -> Option<Secret> {
    Some(Secret("sim-token".to_owned()))
}

fn ids(accounts: &[NewAccount]) -> HashSet<String> {
    accounts.iter().map(|a| a.account_id.clone()).collect()
}

#[tokio::test]
async fn cloud_reads_every_page_and_maps_fields() {
    let generated = generate_accounts(2345, 42, true);
    let sim = Simulator::start(SimConfig::new(Flavor::Cloud, generated.clone()))
        .await
        .unwrap();
    let source = connect("jira_cloud", &cloud_settings(&sim), token()).unwrap();
    let (accounts, report) = fetch_all(source.as_ref()).await.unwrap();

    assert_eq!(accounts.len(), 2345);
    assert_eq!(
        ids(&accounts),
        generated.iter().map(|a| a.account_id.clone()).collect()
    );
    assert!(report.complete);
    assert_eq!(report.pages, 3, "1000 + 1000 + 345");
    // Speculative paging stops at the short page: offsets 0, 1000, 2000, 3000 at most.
    assert!(sim.stats().requests <= 4, "{:?}", sim.stats());

    let by_id = |i: usize| {
        accounts
            .iter()
            .find(|a| a.account_id == generated[i].account_id)
            .unwrap()
    };
    let plain = by_id(0);
    assert_eq!(plain.email.as_deref(), Some("user0@example.com"));
    assert_eq!(plain.email_key.as_deref(), Some("user0@example.com"));
    assert_eq!(plain.account_type, AccountType::Atlassian);
    assert!(plain.active);
    assert_eq!(
        (plain.username.as_deref(), plain.key.as_deref()),
        (None, None)
    );
    assert_eq!(plain.display_name, generated[0].display_name);
    let hidden = by_id(7);
    assert_eq!(
        (hidden.email.as_deref(), hidden.email_key.as_deref()),
        (None, None)
    );
    assert_eq!(by_id(13).account_type, AccountType::App);
    assert_eq!(by_id(29).account_type, AccountType::Customer);
    assert!(!by_id(3).active);
    let mixed = by_id(11);
    assert_eq!(mixed.email.as_deref(), Some("User11@Example.COM"));
    assert_eq!(mixed.email_key.as_deref(), Some("user11@example.com"));
}

#[tokio::test]
async fn cloud_stops_at_the_short_page_and_after_an_empty_one() {
    for (count, expected_requests) in [(250, 3), (200, 3), (0, 1)] {
        let sim = Simulator::start(SimConfig::new(
            Flavor::Cloud,
            generate_accounts(count, 1, false),
        ))
        .await
        .unwrap();
        let settings = SourceSettings {
            page_size: Some(100),
            concurrency: Some(1),
            ..cloud_settings(&sim)
        };
        let source = connect("jira_cloud", &settings, token()).unwrap();
        let (accounts, report) = fetch_all(source.as_ref()).await.unwrap();
        assert_eq!(accounts.len(), count);
        assert!(report.complete);
        assert_eq!(sim.stats().requests, expected_requests, "{count} accounts");
    }
}

#[tokio::test]
async fn cloud_honours_429_retry_after_in_seconds_and_as_a_date() {
    for as_date in [false, true] {
        let mut config = SimConfig::new(Flavor::Cloud, generate_accounts(450, 3, true));
        config.rate_limit_every = Some(3);
        config.retry_after_seconds = 1;
        config.retry_after_as_date = as_date;
        let sim = Simulator::start(config).await.unwrap();
        let settings = SourceSettings {
            page_size: Some(100),
            concurrency: Some(1),
            ..cloud_settings(&sim)
        };
        let source = connect("jira_cloud", &settings, token()).unwrap();
        let (accounts, report) = fetch_all(source.as_ref()).await.unwrap();
        let stats = sim.stats();
        assert_eq!(accounts.len(), 450);
        assert!(stats.rate_limited >= 1, "{stats:?}");
        assert_eq!(
            stats.early_retries, 0,
            "retried before Retry-After: {stats:?}"
        );
        assert!(
            report.warnings.iter().any(|w| w.contains("(429)")),
            "{:?}",
            report.warnings
        );
    }
}

#[tokio::test]
async fn cloud_retries_server_errors() {
    let mut config = SimConfig::new(Flavor::Cloud, generate_accounts(1000, 4, true));
    config.server_error_every = Some(2);
    let sim = Simulator::start(config).await.unwrap();
    let settings = SourceSettings {
        page_size: Some(100),
        ..cloud_settings(&sim)
    };
    let source = connect("jira_cloud", &settings, token()).unwrap();
    let (accounts, report) = fetch_all(source.as_ref()).await.unwrap();
    assert_eq!(accounts.len(), 1000);
    assert!(sim.stats().server_errors >= 5, "{:?}", sim.stats());
    assert!(
        report.warnings.iter().any(|w| w.contains("retried")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test]
async fn cloud_gives_up_on_a_server_that_always_fails() {
    let mut config = SimConfig::new(Flavor::Cloud, generate_accounts(10, 4, true));
    config.server_error_every = Some(1);
    let sim = Simulator::start(config).await.unwrap();
    let source = connect("jira_cloud", &cloud_settings(&sim), token()).unwrap();
    let error = fetch_all(source.as_ref()).await.unwrap_err();
    assert!(
        matches!(&error, SourceError::Remote(m) if m.contains("503") && m.contains("gave up")),
        "{error:?}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_never_shown() {
    let sim = Simulator::start(SimConfig::new(
        Flavor::Cloud,
        generate_accounts(10, 1, true),
    ))
    .await
    .unwrap();
    let secret = Secret("wrong-secret-value".to_owned());
    let typed =
        tether_sources::JiraCloud::new(&cloud_settings(&sim), Some(secret.clone())).unwrap();
    assert!(!format!("{typed:?}").contains("wrong-secret-value"));
    let source = connect("jira_cloud", &cloud_settings(&sim), Some(secret)).unwrap();
    let error = fetch_all(source.as_ref()).await.unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized(_)), "{error:?}");
    assert!(!error.to_string().contains("wrong-secret-value"));
    assert!(error.to_string().contains("401"), "{error}");

    let dc = Simulator::start(SimConfig::new(
        Flavor::DataCenter,
        generate_accounts(10, 1, true),
    ))
    .await
    .unwrap();
    let settings = SourceSettings {
        base_url: Some(dc.url().to_owned()),
        ..SourceSettings::default()
    };
    let source = connect("jira_dc", &settings, Some(Secret("nope".to_owned()))).unwrap();
    let error = fetch_all(source.as_ref()).await.unwrap_err();
    assert!(matches!(error, SourceError::Unauthorized(_)), "{error:?}");
}

#[tokio::test]
async fn cancelling_stops_between_pages() {
    let mut config = SimConfig::new(Flavor::Cloud, generate_accounts(5000, 1, true));
    config.latency = std::time::Duration::from_millis(20);
    let sim = Simulator::start(config).await.unwrap();
    let settings = SourceSettings {
        page_size: Some(100),
        concurrency: Some(2),
        ..cloud_settings(&sim)
    };
    let source = connect("jira_cloud", &settings, token()).unwrap();
    let cancel = AtomicBool::new(false);
    let pages = Mutex::new(0);
    let sink = |_page: Page| {
        *pages.lock().unwrap() += 1;
        cancel.store(true, Ordering::Relaxed);
        Ok(())
    };
    let error = source.fetch(&sink, &cancel).await.unwrap_err();
    assert!(matches!(error, SourceError::Cancelled), "{error:?}");
    assert_eq!(*pages.lock().unwrap(), 1);
    assert!(sim.stats().requests <= 3, "{:?}", sim.stats());
}

#[tokio::test]
async fn a_sink_error_stops_the_fetch() {
    let sim = Simulator::start(SimConfig::new(
        Flavor::Cloud,
        generate_accounts(500, 1, true),
    ))
    .await
    .unwrap();
    let settings = SourceSettings {
        page_size: Some(100),
        ..cloud_settings(&sim)
    };
    let source = connect("jira_cloud", &settings, token()).unwrap();
    let sink = |_page: Page| Err(SourceError::Remote("store is full".to_owned()));
    let error = source
        .fetch(&sink, &AtomicBool::new(false))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "store is full");
}

fn dc_settings(sim: &Simulator) -> SourceSettings {
    SourceSettings {
        base_url: Some(sim.url().to_owned()),
        ..SourceSettings::default()
    }
}

#[tokio::test]
async fn data_center_splits_capped_searches_until_everyone_is_read() {
    let generated = generate_accounts(1500, 9, true);
    let sim = Simulator::start(SimConfig::new(Flavor::DataCenter, generated.clone()))
        .await
        .unwrap();
    let source = connect("jira_dc", &dc_settings(&sim), token()).unwrap();
    let (accounts, report) = fetch_all(source.as_ref()).await.unwrap();

    assert_eq!(accounts.len(), 1500, "{:?}", report.warnings);
    assert_eq!(
        ids(&accounts),
        generated.iter().map(|a| a.key.clone()).collect()
    );
    assert!(report.complete, "{:?}", report.warnings);
    assert!(
        report.warnings.iter().any(|w| w.contains("capped at 100")),
        "{:?}",
        report.warnings
    );
    let first = accounts
        .iter()
        .find(|a| a.account_id == "JIRAUSER10000")
        .unwrap();
    assert_eq!(first.username.as_deref(), Some("user0"));
    assert_eq!(first.key.as_deref(), Some("JIRAUSER10000"));
    assert_eq!(first.email_key.as_deref(), Some("user0@example.com"));
    let inactive = accounts
        .iter()
        .find(|a| a.account_id == "JIRAUSER10003")
        .unwrap();
    assert!(
        !inactive.active,
        "includeInactive=true reads inactive users"
    );
    // Data Center shows every address (no Cloud privacy setting).
    let seven = accounts
        .iter()
        .find(|a| a.account_id == "JIRAUSER10007")
        .unwrap();
    assert_eq!(seven.email.as_deref(), Some("user7@example.com"));
}

#[tokio::test]
async fn data_center_reports_a_cap_it_cannot_split_as_incomplete() {
    let sim = Simulator::start(SimConfig::new(
        Flavor::DataCenter,
        generate_accounts(1500, 9, true),
    ))
    .await
    .unwrap();
    let source = JiraDataCenter::new(&dc_settings(&sim), token())
        .unwrap()
        .with_max_prefix_length(3);
    let (accounts, report) = fetch_all(&source).await.unwrap();
    assert!(!report.complete);
    assert!(accounts.len() < 1500 && accounts.len() >= 100);
    let warning = report
        .warnings
        .iter()
        .find(|w| w.contains("could not be read completely"))
        .unwrap_or_else(|| panic!("{:?}", report.warnings));
    assert!(warning.contains("'use'"), "{warning}");
}

#[tokio::test]
async fn data_center_pages_without_a_cap_and_can_use_the_username() {
    let mut config = SimConfig::new(Flavor::DataCenter, generate_accounts(2500, 5, true));
    config.search_cap = None;
    let sim = Simulator::start(config).await.unwrap();
    let settings = SourceSettings {
        account_id_attribute: Some("name".to_owned()),
        ..dc_settings(&sim)
    };
    let source = connect("jira_dc", &settings, token()).unwrap();
    let (accounts, report) = fetch_all(source.as_ref()).await.unwrap();
    assert_eq!(accounts.len(), 2500);
    assert!(report.complete);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(sim.stats().requests, 3, "one search, three pages");
    assert!(accounts.iter().any(|a| a.account_id == "user2499"));
}

#[test]
fn connect_names_the_setting_that_is_wrong() {
    let field = |kind: &str, settings: SourceSettings, secret: Option<Secret>| match connect(
        kind, &settings, secret,
    ) {
        Err(SourceError::Settings { field, message }) => (field, message),
        Err(other) => panic!("{kind}: {other:?}"),
        Ok(_) => panic!("{kind}: accepted"),
    };
    let url = || Some("https://example.atlassian.net".to_owned());
    assert_eq!(field("ldap", SourceSettings::default(), token()).0, "kind");
    assert_eq!(
        field("jira_cloud", SourceSettings::default(), token()).0,
        "base_url"
    );
    let cloud = SourceSettings {
        base_url: url(),
        ..SourceSettings::default()
    };
    assert_eq!(field("jira_cloud", cloud.clone(), token()).0, "user");
    let cloud = SourceSettings {
        user: Some("me@example.com".to_owned()),
        ..cloud
    };
    assert_eq!(field("jira_cloud", cloud.clone(), None).0, "secret");
    assert_eq!(
        field("jira_cloud", cloud.clone(), Some(Secret("  ".into()))).0,
        "secret"
    );
    assert!(connect("jira_cloud", &cloud, token()).is_ok());
    for (settings, name) in [
        (
            SourceSettings {
                page_size: Some(1001),
                ..cloud.clone()
            },
            "page_size",
        ),
        (
            SourceSettings {
                page_size: Some(0),
                ..cloud.clone()
            },
            "page_size",
        ),
        (
            SourceSettings {
                concurrency: Some(0),
                ..cloud.clone()
            },
            "concurrency",
        ),
        (
            SourceSettings {
                timeout_seconds: Some(0),
                ..cloud.clone()
            },
            "timeout_seconds",
        ),
        (
            SourceSettings {
                account_id_attribute: Some("name".into()),
                ..cloud.clone()
            },
            "account_id_attribute",
        ),
        (
            SourceSettings {
                base_url: Some("ftp://x".into()),
                ..cloud.clone()
            },
            "base_url",
        ),
    ] {
        assert_eq!(field("jira_cloud", settings, token()).0, name);
    }
    let (name, message) = field(
        "jira_dc",
        SourceSettings {
            base_url: Some("https://admin:pa55word@jira.example.com".into()),
            ..SourceSettings::default()
        },
        token(),
    );
    assert_eq!(name, "base_url");
    assert!(!message.contains("pa55word"), "{message}");
    assert_eq!(
        field(
            "jira_dc",
            SourceSettings {
                base_url: url(),
                account_id_attribute: Some("email".into()),
                ..SourceSettings::default()
            },
            token()
        )
        .0,
        "account_id_attribute"
    );
    assert_eq!(
        field(
            "scim",
            SourceSettings {
                base_url: url(),
                account_id_attribute: Some("userName".into()),
                ..SourceSettings::default()
            },
            token()
        )
        .0,
        "account_id_attribute"
    );
    assert_eq!(field("file", SourceSettings::default(), None).0, "path");
    assert_eq!(
        field(
            "file",
            SourceSettings {
                path: Some("accounts.xlsx".into()),
                ..SourceSettings::default()
            },
            None
        )
        .0,
        "path"
    );
}

#[tokio::test]
async fn data_center_split_survives_rate_limits_and_server_errors() {
    let mut config = SimConfig::new(Flavor::DataCenter, generate_accounts(600, 2, true));
    config.rate_limit_every = Some(10);
    config.retry_after_seconds = 0;
    config.server_error_every = Some(7);
    let sim = Simulator::start(config).await.unwrap();
    let source = connect("jira_dc", &dc_settings(&sim), token()).unwrap();
    let (accounts, report) = fetch_all(source.as_ref()).await.unwrap();
    assert_eq!(accounts.len(), 600, "{:?}", report.warnings);
    assert!(report.complete);
    let stats = sim.stats();
    assert!(
        stats.rate_limited > 0 && stats.server_errors > 0,
        "{stats:?}"
    );
}

/// The `jira-sim` binary prints its URL alone on the first line and serves a source.
#[tokio::test]
async fn jira_sim_binary_prints_its_url_first() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jira-sim"))
        .args(["--flavor", "cloud", "--accounts", "1234", "--seed", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("jira-sim printed nothing within 30 s")
        .unwrap()
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let settings = SourceSettings {
        base_url: Some(url),
        user: Some("sim@example.com".to_owned()),
        ..SourceSettings::default()
    };
    let source = connect("jira_cloud", &settings, token()).unwrap();
    let (accounts, _) = fetch_all(source.as_ref()).await.unwrap();
    assert_eq!(
        ids(&accounts),
        ids_of(&generate_accounts(1234, 5, true)),
        "the binary serves generate_accounts(N, seed)"
    );
    child.kill().await.unwrap();
}

fn ids_of(accounts: &[tether_sources::simulator::SimAccount]) -> HashSet<String> {
    accounts.iter().map(|a| a.account_id.clone()).collect()
}
