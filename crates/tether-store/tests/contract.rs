//! The store contract: every case in `cases/` runs against both stores, as
//! `sqlite::<case>` (a fresh temp-file database) and `postgres::<case>` (a fresh database on
//! the server named by `TETHER_TEST_PG_URL`; without it those tests fail and say how to
//! start one). A case is written once, over `&impl Store` (or over the test database when
//! it needs a raw connection beside the store), and listed once below.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cases;
mod support;

/// Calls one case with the store (`store`) or with the whole test database (`db`).
macro_rules! call_case {
    ($db:ident, $area:ident :: $case:ident, store) => {
        crate::cases::$area::$case(&$db.store).await
    };
    ($db:ident, $area:ident :: $case:ident, db) => {
        crate::cases::$area::$case(&$db).await
    };
}

/// Instantiates every case once per store.
macro_rules! contract_tests {
    ($($area:ident :: $case:ident ($with:ident)),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::support::TestDb::sqlite().await;
                    call_case!(db, $area::$case, $with);
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::support::TestDb::postgres(stringify!($case)).await;
                    call_case!(db, $area::$case, $with);
                    db.finish().await;
                }
            )*
        }
    };
}

contract_tests! {
    misc::migrations_are_idempotent(db),
    admin::admins_and_sessions(store), admin::settings_default_and_change_with_an_event(store), admin::tokens_list_use_and_revoke(store), admin::source_connection_round_trip(store), admin::hand_edits_follow_the_rules(store), admin::search_users_without_case(store), admin::audit_filters_by_origin_actor_and_page(store), admin::search_users_broad_query_pages_like_a_narrow_one(store), admin::setting_documents_compare_and_set_beside_the_settings(store),
    misc::empty_store_and_empty_batches(store),
    misc::timestamps_round_trip_to_the_microsecond(store),
    misc::missing_records_are_not_found(store),
    sources::sources_insert_find_list_update(store),
    import::import_users_then_reimport_is_unchanged(store),
    import::import_users_counts_updates(store),
    import::import_users_audits_external_ids(store),
    import::import_users_refuses_a_taken_external_id(store),
    import::import_users_replaces_only_when_asked(store),
    import::import_users_moves_an_external_id_in_file_order(store),
    import::import_accounts_idempotent_per_source(store),
    linking::load_link_input_shapes(db),
    linking::full_loop_converges(store),
    linking::plan_input_plans_like_link_input(store),
    linking::apply_refuses_a_changed_external_id(store),
    linking::apply_reports_a_taken_value(store),
    linking::apply_reports_already_set(store),
    linking::apply_skips_excluded_and_gone_users(db),
    linking::concurrent_applies_never_double_link(store),
    audit::audit_is_append_only(db),
    reading::list_users_pages_and_filters(store),
    reading::find_users_by_id_username_email(store),
    reading::get_records_by_pk(store),
    reading::list_audit_newest_first(store),
    misc::tokens_insert_and_conflict(store),
    misc::list_runs_records_runs(store),
    misc::bulk_round_trip(store),
    scim::scim_user_round_trip_and_audit(store),
    scim::scim_refusals_write_nothing(store),
    scim::scim_username_is_unique_regardless_of_case(store),
    scim::scim_external_id_clash_names_the_holder(store),
    scim::scim_username_keys_follow_imports(store),
    scim::scim_delete_hides_and_keeps_the_record(store),
    scim::scim_groups_hold_users(store),
    scim::scim_users_page_in_order(store),
    signin::sign_in_facts_find_holder_and_email_profiles(store), signin::sign_in_link_writes_once_and_audits(store), signin::sign_in_link_skips_excluded_users(db), signin::sign_in_racing_a_run_links_once(store), signin::sign_in_events_record_refusals(db), signin::oidc_logins_are_taken_once(store), signin::record_sign_in_writes_settles_and_records(store),
    jobs::jobs_one_active_per_source(store), jobs::jobs_claim_lease_heartbeat_takeover(db), jobs::jobs_concurrent_claims_and_inserts_take_one(db), jobs::jobs_cancel_approve_reject(store), jobs::jobs_changes_undo_and_unseen_accounts(store), jobs::jobs_schedules_enqueue_due_sources(store),
}
