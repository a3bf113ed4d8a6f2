//! The file source: accounts from a CSV or JSON Lines file (DESIGN §5 accounts header:
//! `account_id,username,key,email,display_name,active,account_type`), chosen by extension.
//!
//! The record reader here is also what `tether import users|accounts` uses
//! (crates/tether/src/files.rs), so both read a file alike: every problem is collected with
//! its line and column, nothing panics on any input, and the file is all or nothing: one bad
//! row refuses the whole file and no page is handed over. [`read_accounts`] is public so
//! that an uploaded file can be checked before it is stored.

use crate::connect::{defaults, invalid};
use crate::fetch::Fetch;
use crate::{BoxFuture, FetchReport, PageSink, Source, SourceError, SourceSettings};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use tether_core::{AccountType, EmailNormalizer};
use tether_store::NewAccount;

pub const ACCOUNT_COLUMNS: &[&str] = &[
    "account_id",
    "username",
    "key",
    "email",
    "display_name",
    "active",
    "account_type",
];
const REQUIRED_ACCOUNT_COLUMNS: &[&str] = &["account_id", "email"];
/// Problems listed before the rest are only counted.
const MAX_PROBLEMS: usize = 20;
/// Accounts per page handed to the sink.
pub const DEFAULT_PAGE_SIZE: u32 = 5000;

/// One bad value: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    /// The column's name, when the problem is in one column.
    pub column: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(column) => write!(f, "line {}, column {column}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// The rows that parsed, and the problems of those that did not.
#[derive(Debug)]
pub struct Parsed<T> {
    pub rows: Vec<T>,
    pub problems: Vec<Problem>,
    /// How many problems there were in all (`problems` keeps the first few).
    pub problem_count: usize,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            rows: Vec::new(),
            problems: Vec::new(),
            problem_count: 0,
        }
    }
}

impl<T> Parsed<T> {
    fn problem(&mut self, line: u64, column: Option<&str>, message: impl Into<String>) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                line,
                column: column.map(str::to_owned),
                message: message.into(),
            });
        }
    }

    /// The problems as lines for a terminal, naming `file`.
    pub fn report(&self, file: &Path) -> String {
        let mut lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("{}: {p}", file.display()))
            .collect();
        if self.problem_count > self.problems.len() {
            lines.push(format!(
                "… and {} more problems",
                self.problem_count - self.problems.len()
            ));
        }
        lines.join("\n")
    }
}

/// The file kinds we read, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, String> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl") | Some("ndjson") => Ok(Format::JsonLines),
            _ => Err(format!(
                "{}: unknown file type; name the file .csv or .jsonl (JSON Lines)",
                path.display()
            )),
        }
    }
}

/// A record read from either format: (line, column name → value).
struct Record {
    line: u64,
    fields: HashMap<String, Option<String>>,
}

/// Reads `input` as records with the given allowed and required columns.
pub fn read_records<T>(
    input: impl Read,
    format: Format,
    allowed: &[&str],
    required: &[&str],
    parsed: &mut Parsed<T>,
    mut each: impl FnMut(&mut Fields<'_, T>),
) {
    match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
            let headers: Vec<String> = match reader.headers() {
                Ok(headers) => headers
                    .iter()
                    .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
                    .collect(),
                Err(e) => {
                    parsed.problem(
                        1,
                        None,
                        format!("cannot read the header: {}", csv_message(&e)),
                    );
                    return;
                }
            };
            if !check_columns(
                headers.iter().map(String::as_str),
                allowed,
                required,
                1,
                parsed,
            ) {
                return;
            }
            let mut record = csv::StringRecord::new();
            loop {
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        let line = record.position().map(|p| p.line()).unwrap_or(0);
                        let fields = headers
                            .iter()
                            .zip(record.iter())
                            .map(|(h, v)| {
                                (
                                    h.clone(),
                                    if v.is_empty() {
                                        None
                                    } else {
                                        Some(v.to_owned())
                                    },
                                )
                            })
                            .collect();
                        let mut record = Record { line, fields };
                        each(&mut Fields {
                            record: &mut record,
                            parsed,
                            ok: true,
                        });
                    }
                    Err(e) => {
                        let line = e.position().map(|p| p.line()).unwrap_or(0);
                        parsed.problem(line, None, csv_message(&e));
                        // A broken encoding or quoting makes every later line suspect.
                        if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                            return;
                        }
                    }
                }
            }
        }
        Format::JsonLines => {
            let reader = BufReader::new(input);
            for (index, line) in reader.split(b'\n').enumerate() {
                let number = index as u64 + 1;
                let bytes = match line {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        parsed.problem(number, None, format!("cannot read: {e}"));
                        return;
                    }
                };
                let text = match std::str::from_utf8(&bytes) {
                    Ok(text) => text.trim(),
                    Err(e) => {
                        parsed.problem(
                            number,
                            None,
                            format!("not UTF-8 text (byte {})", e.valid_up_to() + 1),
                        );
                        continue;
                    }
                };
                if text.is_empty() {
                    continue;
                }
                let object: serde_json::Map<String, serde_json::Value> =
                    match serde_json::from_str(text) {
                        Ok(object) => object,
                        Err(e) => {
                            parsed.problem(number, None, format!("not a JSON object: {e}"));
                            continue;
                        }
                    };
                if !check_columns(
                    object.keys().map(String::as_str),
                    allowed,
                    required,
                    number,
                    parsed,
                ) {
                    continue;
                }
                let mut fields = HashMap::new();
                let mut ok = true;
                for (key, value) in object {
                    let text = match value {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) if s.is_empty() => None,
                        serde_json::Value::String(s) => Some(s),
                        serde_json::Value::Bool(b) => Some(b.to_string()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => {
                            parsed.problem(
                                number,
                                Some(&key),
                                "expected a string, a number or a boolean",
                            );
                            ok = false;
                            continue;
                        }
                    };
                    fields.insert(key, text);
                }
                if ok {
                    let mut record = Record {
                        line: number,
                        fields,
                    };
                    each(&mut Fields {
                        record: &mut record,
                        parsed,
                        ok: true,
                    });
                }
            }
        }
    }
}

fn csv_message(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Utf8 { err, .. } => {
            format!(
                "not UTF-8 text (field {}, byte {})",
                err.field() + 1,
                err.valid_up_to() + 1
            )
        }
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields like the header, found {len}")
        }
        _ => error.to_string(),
    }
}

fn check_columns<'a, T>(
    present: impl Iterator<Item = &'a str>,
    allowed: &[&str],
    required: &[&str],
    line: u64,
    parsed: &mut Parsed<T>,
) -> bool {
    let present: Vec<&str> = present.collect();
    let mut ok = true;
    for column in &present {
        if !allowed.contains(column) {
            parsed.problem(
                line,
                Some(column),
                format!("unknown column; expected {}", allowed.join(",")),
            );
            ok = false;
        }
    }
    for column in required {
        if !present.contains(column) {
            parsed.problem(line, Some(column), "required column is missing");
            ok = false;
        }
    }
    ok
}

/// One record's fields while a row is read; `ok` is false once a problem was recorded.
pub struct Fields<'a, T> {
    record: &'a mut Record,
    parsed: &'a mut Parsed<T>,
    pub ok: bool,
}

impl<T> Fields<'_, T> {
    fn fail(&mut self, column: &str, message: impl Into<String>) {
        self.parsed.problem(self.record.line, Some(column), message);
        self.ok = false;
    }

    /// A text value; control characters are refused.
    pub fn text(&mut self, column: &str) -> Option<String> {
        let value = self.record.fields.remove(column).flatten()?;
        if value.chars().any(|c| c.is_control() && c != '\t') {
            self.fail(column, "contains a control character");
            return None;
        }
        Some(value)
    }

    /// An identifier: required when `required`, and never padded with white space (it is
    /// compared exactly, so a stray space would make a different value).
    pub fn identifier(&mut self, column: &str, required: bool) -> Option<String> {
        match self.text(column) {
            None if required => {
                if self.ok {
                    self.fail(column, "is empty");
                }
                None
            }
            Some(value) if value.trim() != value => {
                self.fail(
                    column,
                    format!("'{value}' has leading or trailing white space"),
                );
                None
            }
            value => value,
        }
    }

    /// An e-mail as given, trimmed; `None` when blank. Invalid addresses are kept: they are
    /// a situation to explain (`invalid_email`), not a reason to refuse the file.
    pub fn email(&mut self) -> Option<String> {
        self.text("email")
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
    }

    pub fn boolean(&mut self, column: &str) -> bool {
        match self
            .text(column)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("true") | Some("1") | Some("yes") => true,
            Some("false") | Some("0") | Some("no") => false,
            Some(other) => {
                self.fail(
                    column,
                    format!("'{other}' is not a boolean; use true or false"),
                );
                true
            }
        }
    }
}

/// The first line that named each value of one column. A value is claimed by the first row
/// that names it, even if that row has other problems: two rows claiming one id or External
/// ID are never resolved by guessing.
#[derive(Default)]
pub struct Claims(HashMap<String, u64>);

impl Claims {
    pub fn claim<T>(
        &mut self,
        fields: &mut Fields<'_, T>,
        column: &str,
        value: Option<&String>,
        what: &str,
    ) {
        let Some(value) = value else { return };
        match self.0.get(value) {
            Some(first) => fields.fail(column, format!("'{value}' is {what} on line {first}")),
            None => {
                self.0.insert(value.clone(), fields.record.line);
            }
        }
    }
}

/// Reads accounts. Duplicate account ids within the file are problems.
pub fn read_accounts(input: impl Read, format: Format) -> Parsed<NewAccount> {
    let mut parsed = Parsed::default();
    let mut rows = Vec::new();
    let mut normalizer = EmailNormalizer::new();
    let mut ids = Claims::default();
    read_records(
        input,
        format,
        ACCOUNT_COLUMNS,
        REQUIRED_ACCOUNT_COLUMNS,
        &mut parsed,
        |fields| {
            let account_id = fields.identifier("account_id", true);
            let username = fields.identifier("username", false);
            let key = fields.identifier("key", false);
            let email = fields.email();
            let display_name = fields.text("display_name").unwrap_or_default();
            let active = fields.boolean("active");
            let account_type = match fields
                .text("account_type")
                .map(|t| t.parse::<AccountType>())
            {
                None => AccountType::Unknown,
                Some(Ok(kind)) => kind,
                Some(Err(e)) => {
                    fields.fail("account_type", e.to_string());
                    AccountType::Unknown
                }
            };
            ids.claim(
                fields,
                "account_id",
                account_id.as_ref(),
                "already the account_id",
            );
            if let (true, Some(account_id)) = (fields.ok, account_id) {
                let email_key = normalizer.key(email.as_deref()).key().map(str::to_owned);
                rows.push(NewAccount {
                    account_id,
                    username,
                    key,
                    email,
                    email_key,
                    display_name,
                    active,
                    account_type,
                });
            }
        },
    );
    parsed.rows = rows;
    parsed
}

/// Reads a whole accounts file: the accounts, or every problem (line and column) as one
/// [`SourceError::File`] naming the file.
pub fn read_accounts_file(path: &Path) -> Result<Vec<NewAccount>, SourceError> {
    let format = Format::of(path).map_err(SourceError::File)?;
    let file = std::fs::File::open(path)
        .map_err(|e| SourceError::File(format!("{}: cannot open: {e}", path.display())))?;
    let parsed = read_accounts(file, format);
    if parsed.problem_count > 0 {
        return Err(SourceError::File(format!(
            "{}\nThe file was refused as a whole: fix the rows above and pull again.",
            parsed.report(path)
        )));
    }
    Ok(parsed.rows)
}

/// Accounts from a local CSV or JSON Lines file (`settings.path`).
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    page_size: usize,
}

impl FileSource {
    pub fn new(settings: &SourceSettings) -> Result<Self, SourceError> {
        let path = settings
            .path
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                invalid(
                    "path",
                    "is required: the path of a .csv or .jsonl accounts file",
                )
            })?;
        let path = PathBuf::from(path);
        Format::of(&path).map_err(|e| invalid("path", e))?;
        let limits = defaults(settings, DEFAULT_PAGE_SIZE, 100_000)?;
        Ok(FileSource {
            path,
            page_size: limits.page_size as usize,
        })
    }
}

impl Source for FileSource {
    fn fetch<'a>(
        &'a self,
        sink: PageSink<'a>,
        cancel: &'a AtomicBool,
    ) -> BoxFuture<'a, Result<FetchReport, SourceError>> {
        Box::pin(async move {
            let fetch = Fetch::new(sink, cancel);
            fetch.check_cancel()?;
            let path = self.path.clone();
            let accounts = tokio::task::spawn_blocking(move || read_accounts_file(&path))
                .await
                .map_err(|e| SourceError::File(format!("reading the file failed: {e}")))??;
            let mut accounts = accounts.into_iter().peekable();
            while accounts.peek().is_some() {
                let page: Vec<NewAccount> = accounts.by_ref().take(self.page_size).collect();
                fetch.deliver(page)?;
            }
            Ok(fetch.report(None))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_name_line_and_column() {
        let csv = "account_id,email,active,account_type\n\
                   a1,a@example.com,true,atlassian\n\
                   a2,b@example.com,maybe,app\n\
                   ,c@example.com,true,robot\n";
        let parsed = read_accounts(csv.as_bytes(), Format::Csv);
        let problems: Vec<String> = parsed.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            problems,
            [
                "line 3, column active: 'maybe' is not a boolean; use true or false",
                "line 4, column account_id: is empty",
                "line 4, column account_type: unknown account type 'robot': expected one of atlassian, app, customer, unknown",
            ]
        );
        assert_eq!(parsed.rows.len(), 1);
    }

    #[test]
    fn junk_is_refused_without_panic() {
        for junk in [
            &b"\xff\xfe\x00"[..],
            b"{",
            b"[1,2]\n",
            b"account_id\n\"unterminated",
        ] {
            let _ = read_accounts(junk, Format::JsonLines);
            let _ = read_accounts(junk, Format::Csv);
        }
    }
}
