//! The vocabulary shared by every layer: situations, External ID fields, account types and
//! the origins of an External ID. Their snake_case names are a contract (DESIGN §3, §5).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident ($label:literal) { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The contract name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The contract names joined for an error message.
            pub fn names() -> String {
                [$($text),+].join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(text: &str) -> Result<Self, UnknownName> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        kind: $label,
                        given: text.to_owned(),
                        expected: $name::names(),
                    }),
                }
            }
        }
    };
}

/// A name that is not one of an enumeration's contract names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} '{given}': expected one of {expected}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub given: String,
    pub expected: String,
}

named_enum! {
    /// Where a user stands against one source's accounts (DESIGN §3). Declared in rule order.
    Situation ("situation") {
        Linked = "linked",
        Conflict = "conflict",
        OrphanedLink = "orphaned_link",
        NoEmail = "no_email",
        InvalidEmail = "invalid_email",
        InactiveAccount = "inactive_account",
        NoMatch = "no_match",
        DuplicateAccounts = "duplicate_accounts",
        DuplicateUsers = "duplicate_users",
        MissingField = "missing_field",
        AccountTaken = "account_taken",
        NewLink = "new_link",
        Excluded = "excluded",
    }
}

impl Situation {
    /// Whether an administrator has something to do about a user in this situation.
    pub fn needs_attention(self) -> bool {
        !matches!(
            self,
            Situation::Linked | Situation::NewLink | Situation::Excluded
        )
    }
}

named_enum! {
    /// Which field of an account fills a user's External ID.
    ExternalIdField ("External ID field") {
        AccountId = "account_id",
        Username = "username",
        Key = "key",
        Email = "email",
    }
}

impl Default for ExternalIdField {
    /// The platform's immutable account ID: the only field every account has.
    fn default() -> Self {
        ExternalIdField::AccountId
    }
}

named_enum! {
    /// The kind of a directory account (Jira's `accountType`).
    AccountType ("account type") {
        Atlassian = "atlassian",
        App = "app",
        Customer = "customer",
        Unknown = "unknown",
    }
}

impl AccountType {
    /// Whether accounts of this type are linked to users. App (bot) accounts and service-desk
    /// customers are not people with a licence in the application.
    pub fn is_linkable(self) -> bool {
        matches!(self, AccountType::Atlassian | AccountType::Unknown)
    }
}

named_enum! {
    /// Who or what set a user's External ID.
    Origin ("origin") {
        Login = "login",
        Pull = "pull",
        Scim = "scim",
        Manual = "manual",
        Import = "import",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for situation in Situation::ALL {
            assert_eq!(situation.as_str().parse::<Situation>(), Ok(*situation));
        }
        let err = "usernme"
            .parse::<ExternalIdField>()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown External ID field 'usernme': expected one of account_id, username, key, email")
        );
    }
}
