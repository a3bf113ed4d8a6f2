//! Reading users and accounts from CSV and JSON Lines files (DESIGN §5).
//!
//! Parsing collects every problem with its line and column instead of stopping at the first,
//! and never writes: the caller decides whether to refuse the whole file (the default) or to
//! import the rows that are valid. Nothing here panics on any input. The record reader, and
//! the accounts format, are the file source's (`tether_sources::file`), so `tether import
//! accounts` and a pull of a file source read a file alike; users are read here.

use std::io::Read;
use tether_core::EmailNormalizer;
pub use tether_sources::file::{read_accounts, Format, Parsed};
use tether_sources::file::{read_records, Claims};
use tether_store::NewUser;

pub const USER_COLUMNS: &[&str] = &[
    "id",
    "username",
    "email",
    "display_name",
    "active",
    "external_id",
];
const REQUIRED_USER_COLUMNS: &[&str] = &["id", "username", "email"];

/// Reads users. Duplicate ids and duplicate External IDs within the file are problems.
pub fn read_users(input: impl Read, format: Format) -> Parsed<NewUser> {
    let mut parsed = Parsed::default();
    let mut rows = Vec::new();
    let mut normalizer = EmailNormalizer::new();
    let (mut ids, mut external_ids) = (Claims::default(), Claims::default());
    read_records(
        input,
        format,
        USER_COLUMNS,
        REQUIRED_USER_COLUMNS,
        &mut parsed,
        |fields| {
            let id = fields.identifier("id", true);
            let username = fields.identifier("username", true);
            let email = fields.email();
            let display_name = fields.text("display_name").unwrap_or_default();
            let active = fields.boolean("active");
            let external_id = fields.identifier("external_id", false);
            ids.claim(fields, "id", id.as_ref(), "already the id");
            external_ids.claim(
                fields,
                "external_id",
                external_id.as_ref(),
                "already the External ID",
            );
            if let (true, Some(id), Some(username)) = (fields.ok, id, username) {
                let email_key = normalizer.key(email.as_deref()).key().map(str::to_owned);
                rows.push(NewUser {
                    id,
                    username,
                    email,
                    email_key,
                    display_name,
                    active,
                    external_id,
                });
            }
        },
    );
    parsed.rows = rows;
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_csv_parses_and_normalizes() {
        let csv = "id,username,email,display_name,active,external_id\n\
                   u1,alice,Alice@Example.COM,Alice,true,\n\
                   u2,bob,,Bob,false,5b10a2844c20165700ede21g\n";
        let parsed = read_users(csv.as_bytes(), Format::Csv);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(
            parsed.rows[0].email_key.as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(parsed.rows[1].email, None);
        assert!(!parsed.rows[1].active);
        assert_eq!(
            parsed.rows[1].external_id.as_deref(),
            Some("5b10a2844c20165700ede21g")
        );
    }

    #[test]
    fn bad_rows_name_line_and_column() {
        let csv = "id,username,email,active,external_id\n\
                   u1,alice,a@example.com,maybe,\n\
                   u2,,b@example.com,true,X\n\
                   u3,carol,c@example.com,true,X\n\
                   u1,dave,d@example.com,true,\n";
        let parsed = read_users(csv.as_bytes(), Format::Csv);
        let text: Vec<String> = parsed.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "line 2, column active: 'maybe' is not a boolean; use true or false",
                "line 3, column username: is empty",
                "line 4, column external_id: 'X' is already the External ID on line 3",
                "line 5, column id: 'u1' is already the id on line 2",
            ]
        );
        // Line 3 claimed External ID X first (though refused), so line 4 cannot take it.
        assert!(parsed.rows.is_empty());
    }

    #[test]
    fn duplicate_external_ids_are_refused() {
        let jsonl = "{\"id\":\"u1\",\"username\":\"a\",\"email\":\"a@x.org\",\"external_id\":\"E\"}\n\
                     {\"id\":\"u2\",\"username\":\"b\",\"email\":\"b@x.org\",\"external_id\":\"E\"}\n";
        let parsed = read_users(jsonl.as_bytes(), Format::JsonLines);
        assert_eq!(
            parsed.problems[0].to_string(),
            "line 2, column external_id: 'E' is already the External ID on line 1"
        );
    }

    #[test]
    fn unknown_columns_and_junk_are_refused_without_panic() {
        let parsed = read_users("id,username,email,externalid\n".as_bytes(), Format::Csv);
        assert_eq!(parsed.problems[0].column.as_deref(), Some("externalid"));
        let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let parsed = read_users(junk.as_slice(), Format::Csv);
        assert!(parsed.rows.is_empty() && parsed.problem_count > 0);
        let parsed = read_accounts(junk.as_slice(), Format::JsonLines);
        assert!(parsed.rows.is_empty() && parsed.problem_count > 0);
    }

    #[test]
    fn accounts_parse_types() {
        let csv = "account_id,username,key,email,display_name,active,account_type\n\
                   5b10,,,a@example.com,A,true,atlassian\n\
                   5c22,,,b@example.com,B,true,robot\n";
        let parsed = read_accounts(csv.as_bytes(), Format::Csv);
        assert_eq!(parsed.rows.len(), 1);
        assert_eq!(
            parsed.problems[0].to_string(),
            "line 3, column account_type: unknown account type 'robot': expected one of atlassian, app, customer, unknown"
        );
    }
}
