//! Pull jobs end to end through the command line, on both stores: `tether pull` links users
//! from a real source (a file source, read through tether-sources), marks accounts a complete
//! pull no longer returns as not seen, the mass-change safeguard holds a job until it is
//! approved (applies) or rejected (applies nothing), and undo reverts the changes nobody
//! touched since and lists the others.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod jobs_common;

use jobs_common::*;

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

async fn pull_links_converges_and_marks_unseen(db: Db) {
    let (users, accounts) = write_org(&db, 20, 4, 2);
    ok(&db, &["import", "users", path(&users)]);
    file_source(&db, "dir", &accounts).await;

    let dry = json(&db, &["pull", "--source", "dir", "--dry-run"]);
    assert_eq!(dry["state"], "succeeded", "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["report"]["planned"], 4);
    assert_eq!(
        dry["report"]["store"]["inserted"], 0,
        "a dry run stores nothing"
    );
    assert_eq!(linked_count(&db), 0, "a dry run writes nothing");

    let job = json(&db, &["pull", "--source", "dir"]);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1);
    let report = &job["report"];
    assert_eq!(report["fetch"]["accounts"], 6);
    assert_eq!(report["fetch"]["complete"], true);
    assert_eq!(report["store"]["inserted"], 6);
    assert_eq!(report["summary"]["new_link"], 4);
    assert_eq!(report["summary"]["no_match"], 16);
    assert_eq!(report["applied"], 4);
    assert_eq!(job["progress"]["changes_applied"], 4);
    assert_eq!(job["progress"]["phase"], "report");
    let ids = external_ids(&db);
    for n in 1..=4 {
        assert_eq!(
            ids[&format!("u{n:05}")].as_deref(),
            Some(format!("acc-{n:05}").as_str())
        );
    }
    assert_eq!(linked_count(&db), 4);

    // Pulling again converges: nothing new to store or write.
    let again = json(&db, &["pull", "--source", "dir"]);
    assert_eq!(again["state"], "succeeded");
    assert_eq!(again["report"]["planned"], 0);
    assert_eq!(again["report"]["store"]["unchanged"], 6);
    assert_eq!(again["report"]["summary"]["linked"], 4);

    // The directory no longer returns acc-00004 and one extra account: kept, not seen, and
    // not used for matching (u00004's link is now an orphaned link, not silently kept green).
    write_accounts(&accounts, (1..=3).chain(900_000..900_001));
    let third = json(&db, &["pull", "--source", "dir"]);
    assert_eq!(third["state"], "succeeded");
    assert_eq!(third["report"]["store"]["unseen"], 2, "{third}");
    assert_eq!(third["report"]["summary"]["orphaned_link"], 1);
    assert_eq!(
        third["report"]["accounts"], 4,
        "the plan uses seen accounts only"
    );
    assert_eq!(
        external_ids(&db)["u00004"].as_deref(),
        Some("acc-00004"),
        "a link is never removed by a pull"
    );

    // The report, as CSV: the job's situation counts and one row per change.
    let id = job["id"].as_i64().unwrap().to_string();
    let csv = ok(&db, &["jobs", "report", &id, "--format", "csv"]);
    assert!(csv.starts_with("section,name,value,user_id,email,old_external_id,new_external_id"));
    assert!(csv.contains("situation,new_link,4,"), "{csv}");
    assert!(
        csv.contains("change,new_link,,u00001,User00001@Example.com,,acc-00001,acc-00001"),
        "{csv}"
    );
    assert_eq!(csv.lines().filter(|l| l.starts_with("change,")).count(), 4);
    let listed = json(&db, &["jobs", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");
}

async fn safeguard_holds_then_approve_applies(db: Db) {
    let (users, accounts) = write_org(&db, 10, 5, 0);
    ok(&db, &["import", "users", path(&users)]);
    file_source(&db, "dir", &accounts).await;

    let held = json(&db, &["pull", "--source", "dir"]);
    assert_eq!(held["state"], "awaiting_approval", "{held}");
    let report = &held["report"];
    assert_eq!(report["safeguard"]["held"], true);
    assert_eq!(report["safeguard"]["threshold_percent"], 20);
    assert_eq!(report["safeguard"]["share_percent"], 50.0);
    assert_eq!(report["planned_sample"].as_array().unwrap().len(), 5);
    assert_eq!(report["planned_sample"][0]["user_id"], "u00001");
    assert_eq!(linked_count(&db), 0, "a held job writes nothing");

    // The source has its one job: another pull is refused, naming it.
    let refused = tether(&db, &["pull", "--source", "dir"]);
    assert_eq!(refused.status.code(), Some(3));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("already has an active job"), "{message}");

    let id = held["id"].as_i64().unwrap().to_string();
    let approved = ok(&db, &["jobs", "approve", &id]);
    assert!(
        approved.contains("5 of 5 External IDs written"),
        "{approved}"
    );
    let job = json(&db, &["jobs", "show", &id]);
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["decided_by"], "cli:tester");
    assert_eq!(job["approved_changes"], 5);
    assert_eq!(job["attempts"], 2, "held, then claimed again to apply");
    assert_eq!(job["report"]["fetch"]["accounts"], 5, "the fetch is kept");
    assert_eq!(linked_count(&db), 5);

    // `--approve` gives the approval up front.
    let (more_users, _) = write_org(&db, 20, 10, 0);
    write_accounts(&accounts, 1..=20);
    ok(&db, &["import", "users", path(&more_users)]);
    let direct = json(&db, &["pull", "--source", "dir", "--approve"]);
    assert_eq!(direct["state"], "succeeded", "{direct}");
    assert_eq!(direct["report"]["applied"], 15);
    assert_eq!(linked_count(&db), 20);
}

async fn safeguard_reject_applies_nothing(db: Db) {
    let (users, accounts) = write_org(&db, 10, 5, 0);
    ok(&db, &["import", "users", path(&users)]);
    file_source(&db, "dir", &accounts).await;
    let held = json(&db, &["pull", "--source", "dir"]);
    assert_eq!(held["state"], "awaiting_approval");
    let id = held["id"].as_i64().unwrap().to_string();
    ok(&db, &["jobs", "reject", &id]);
    let job = json(&db, &["jobs", "show", &id]);
    assert_eq!(job["state"], "cancelled");
    assert_eq!(job["decided_by"], "cli:tester");
    assert_eq!(job["approved_changes"], serde_json::Value::Null);
    assert_eq!(linked_count(&db), 0, "a rejected job applies nothing");
    // Approving a rejected job is refused.
    let late = tether(&db, &["jobs", "approve", &id]);
    assert_eq!(late.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&late.stderr).contains("not awaiting approval"));
    // The source is free again.
    let next = json(&db, &["pull", "--source", "dir"]);
    assert_eq!(next["state"], "awaiting_approval");
}

async fn undo_reverts_untouched_changes_and_lists_the_rest(db: Db) {
    let (users, accounts) = write_org(&db, 10, 2, 0);
    ok(&db, &["import", "users", path(&users)]);
    file_source(&db, "dir", &accounts).await;
    let job = json(&db, &["pull", "--source", "dir"]);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(linked_count(&db), 2);

    // Someone sets u00002's External ID by hand after the job.
    let edit = db.path("edit.csv");
    std::fs::write(
        &edit,
        "id,username,email,display_name,active,external_id\n\
         u00002,user2,User00002@Example.com,User 2,true,hand-set\n",
    )
    .unwrap();
    ok(
        &db,
        &["import", "users", path(&edit), "--replace-external-ids"],
    );

    let id = job["id"].as_i64().unwrap().to_string();
    let undo = json(&db, &["jobs", "undo", &id]);
    assert_eq!(undo["changes"], 2, "{undo}");
    assert_eq!(undo["reverted"], 1);
    assert_eq!(undo["kept"].as_array().unwrap().len(), 1);
    assert_eq!(undo["kept"][0]["user_id"], "u00002");
    assert_eq!(undo["kept"][0]["job_value"], "acc-00002");
    assert_eq!(undo["kept"][0]["current"], "hand-set");
    let ids = external_ids(&db);
    assert_eq!(ids["u00001"], None, "the untouched change is reverted");
    assert_eq!(
        ids["u00002"].as_deref(),
        Some("hand-set"),
        "the edit is kept"
    );

    // Audited as an undo by the CLI user.
    let audit = ok(&db, &["audit", "--user", "u00001", "--format", "jsonl"]);
    let newest: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(newest["reason"], "undo");
    assert_eq!(newest["old_value"], "acc-00001");
    assert_eq!(newest["new_value"], serde_json::Value::Null);

    let twice = tether(&db, &["jobs", "undo", &id]);
    assert_eq!(twice.status.code(), Some(3), "a job is undone once");
    let shown = json(&db, &["jobs", "show", &id]);
    assert_eq!(shown["undone_by"], "cli:tester");
    assert_eq!(shown["undo_report"]["reverted"], 1);
    let report = json(&db, &["jobs", "report", &id]);
    let reasons: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, vec!["new_link", "new_link", "undo"]);
}

async fn failed_fetch_fails_the_job_cleanly(db: Db) {
    let (users, accounts) = write_org(&db, 5, 5, 0);
    ok(&db, &["import", "users", path(&users)]);
    file_source(&db, "dir", &db.path("missing.csv")).await;
    let out = tether(&db, &["pull", "--source", "dir", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "a failed job fails the command");
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["state"], "failed");
    assert!(
        job["error"].as_str().unwrap().contains("missing.csv"),
        "the error names the file: {job}"
    );
    assert_eq!(linked_count(&db), 0);
    // The source is free for the next job, which works once the file is there.
    point_source(&db, "dir", &accounts).await;
    let next = json(&db, &["pull", "--source", "dir", "--approve"]);
    assert_eq!(next["state"], "succeeded");
    assert_eq!(linked_count(&db), 5);
}

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Db::postgres()).await;
                }
            )*
        }
    };
}

on_both_stores!(
    pull_links_converges_and_marks_unseen,
    safeguard_holds_then_approve_applies,
    safeguard_reject_applies_nothing,
    undo_reverts_untouched_changes_and_lists_the_rest,
    failed_fetch_fails_the_job_cleanly,
);
