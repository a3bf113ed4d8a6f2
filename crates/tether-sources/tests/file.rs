//! The file source on temporary CSV and JSON Lines files: pages, mapping, and a bad row
//! refusing the whole file with its line and column.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use tether_core::AccountType;
use tether_sources::{connect, NewAccount, Page, SourceError, SourceSettings};

async fn fetch(
    path: &std::path::Path,
    page_size: u32,
) -> (Result<u64, SourceError>, Vec<usize>, Vec<NewAccount>) {
    let settings = SourceSettings {
        path: Some(path.to_str().unwrap().to_owned()),
        page_size: Some(page_size),
        ..SourceSettings::default()
    };
    let source = connect("file", &settings, None).unwrap();
    let pages = Mutex::new(Vec::new());
    let accounts = Mutex::new(Vec::new());
    let sink = |page: Page| {
        pages.lock().unwrap().push(page.accounts.len());
        accounts.lock().unwrap().extend(page.accounts);
        Ok(())
    };
    let result = source
        .fetch(&sink, &AtomicBool::new(false))
        .await
        .map(|report| {
            assert!(report.complete);
            report.accounts
        });
    (
        result,
        pages.into_inner().unwrap(),
        accounts.into_inner().unwrap(),
    )
}

#[tokio::test]
async fn csv_and_json_lines_files_are_read_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("accounts.csv");
    let mut text = String::from("account_id,username,key,email,display_name,active,account_type\n");
    for i in 0..25 {
        text.push_str(&format!(
            "557058:{i:04},user{i},JIRAUSER{i},User{i}@Example.com,User {i},{},{}\n",
            if i == 3 { "false" } else { "true" },
            if i == 5 { "app" } else { "atlassian" }
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let (result, pages, accounts) = fetch(&csv, 10).await;
    assert_eq!(result.unwrap(), 25);
    assert_eq!(pages, [10, 10, 5]);
    assert_eq!(accounts[0].account_id, "557058:0000");
    assert_eq!(accounts[0].username.as_deref(), Some("user0"));
    assert_eq!(accounts[0].key.as_deref(), Some("JIRAUSER0"));
    assert_eq!(accounts[0].email.as_deref(), Some("User0@Example.com"));
    assert_eq!(accounts[0].email_key.as_deref(), Some("user0@example.com"));
    assert!(!accounts[3].active);
    assert_eq!(accounts[5].account_type, AccountType::App);

    let jsonl = dir.path().join("accounts.jsonl");
    std::fs::write(
        &jsonl,
        "{\"account_id\":\"a1\",\"email\":\"a@example.com\",\"active\":true}\n\n\
         {\"account_id\":\"a2\",\"email\":null,\"account_type\":\"customer\"}\n",
    )
    .unwrap();
    let (result, _, accounts) = fetch(&jsonl, 1000).await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(accounts[1].email, None);
    assert_eq!(accounts[1].account_type, AccountType::Customer);
}

#[tokio::test]
async fn a_bad_row_refuses_the_whole_file_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "account_id,email,active\na1,a@example.com,true\na2,b@example.com,perhaps\n",
    )
    .unwrap();
    let (result, pages, _) = fetch(&csv, 1).await;
    let message = match result {
        Err(SourceError::File(message)) => message,
        other => panic!("{other:?}"),
    };
    assert!(
        message.contains("bad.csv: line 3, column active: 'perhaps' is not a boolean"),
        "{message}"
    );
    assert!(
        pages.is_empty(),
        "nothing is handed over from a refused file"
    );

    let jsonl = dir.path().join("bad.jsonl");
    std::fs::write(
        &jsonl,
        "{\"account_id\":\"a1\",\"email\":\"a@example.com\"}\n{\"account_id\":\"a1\",\"email\":\"b@example.com\"}\n{oops\n",
    )
    .unwrap();
    let (result, pages, _) = fetch(&jsonl, 1).await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("line 2, column account_id: 'a1' is already the account_id on line 1"),
        "{message}"
    );
    assert!(message.contains("line 3: not a JSON object"), "{message}");
    assert!(pages.is_empty());

    let missing = dir.path().join("missing.csv");
    let (result, _, _) = fetch(&missing, 1).await;
    assert!(
        matches!(&result, Err(SourceError::File(m)) if m.contains("missing.csv: cannot open")),
        "{result:?}"
    );
}
