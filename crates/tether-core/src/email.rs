//! E-mail match keys (DESIGN §2).
//!
//! The match key of an address is: white space trimmed; Unicode NFC; the domain converted
//! with IDNA (UTS 46, non-transitional, STD3 rules) to ASCII and lower-cased; the local part
//! lower-cased with Unicode lower-casing. It is deliberately *not* full case folding:
//! `straße` and `strasse` are different mailboxes and never share a key.
//!
//! An address that does not parse is [`EmailKey::Invalid`] and never guessed at.
//! This module owns normalization only; it knows nothing of users, accounts or storage.

use rustc_hash::FxHashMap;
use std::fmt;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// The result of normalizing one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailKey {
    /// Empty or only white space.
    Missing,
    /// Present, but not an address we can match on.
    Invalid(InvalidEmail),
    /// The normalized match key.
    Valid(String),
}

impl EmailKey {
    /// The key, when the address is valid.
    pub fn key(&self) -> Option<&str> {
        match self {
            EmailKey::Valid(key) => Some(key),
            _ => None,
        }
    }
}

/// Why an address is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidEmail {
    NoAt,
    SeveralAt,
    EmptyLocalPart,
    EmptyDomain,
    LocalPartHasSpaceOrControl,
    InvalidDomain,
}

impl fmt::Display for InvalidEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidEmail::NoAt => "it has no @",
            InvalidEmail::SeveralAt => "it has more than one @",
            InvalidEmail::EmptyLocalPart => "nothing stands before the @",
            InvalidEmail::EmptyDomain => "nothing stands after the @",
            InvalidEmail::LocalPartHasSpaceOrControl => {
                "the part before the @ contains a space or control character"
            }
            InvalidEmail::InvalidDomain => "the domain is not a valid domain name",
        })
    }
}

/// Normalizes addresses, remembering the IDNA conversion of each domain it has seen.
///
/// Bulk paths (imports of a million rows) see few distinct domains, so the cache makes the
/// UTS 46 conversion cost once per domain. The result never depends on the cache.
#[derive(Default)]
pub struct EmailNormalizer {
    domains: FxHashMap<String, Option<String>>,
}

impl EmailNormalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The match key of `raw` (`None` counts as missing).
    pub fn key(&mut self, raw: Option<&str>) -> EmailKey {
        let trimmed = match raw.map(str::trim) {
            None | Some("") => return EmailKey::Missing,
            Some(trimmed) => trimmed,
        };
        let composed: std::borrow::Cow<'_, str> =
            if is_nfc_quick(trimmed.chars()) == IsNormalized::Yes {
                trimmed.into()
            } else {
                trimmed.nfc().collect::<String>().into()
            };
        let mut parts = composed.split('@');
        let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
            (Some(_), None, _) => return EmailKey::Invalid(InvalidEmail::NoAt),
            (Some(local), Some(domain), None) => (local, domain),
            _ => return EmailKey::Invalid(InvalidEmail::SeveralAt),
        };
        if local.is_empty() {
            return EmailKey::Invalid(InvalidEmail::EmptyLocalPart);
        }
        if domain.is_empty() {
            return EmailKey::Invalid(InvalidEmail::EmptyDomain);
        }
        if local.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return EmailKey::Invalid(InvalidEmail::LocalPartHasSpaceOrControl);
        }
        let ascii_domain = match self.domain(domain) {
            Some(ascii) => ascii,
            None => return EmailKey::Invalid(InvalidEmail::InvalidDomain),
        };
        let mut key = lower_local_part(local);
        key.push('@');
        key.push_str(ascii_domain);
        EmailKey::Valid(key)
    }

    fn domain(&mut self, domain: &str) -> Option<&str> {
        if !self.domains.contains_key(domain) {
            let converted = to_ascii_domain(domain);
            self.domains.insert(domain.to_owned(), converted);
        }
        self.domains.get(domain).and_then(|d| d.as_deref())
    }
}

/// The match key of one address; see [`EmailNormalizer`] for many.
pub fn match_key(raw: Option<&str>) -> EmailKey {
    EmailNormalizer::new().key(raw)
}

fn lower_local_part(local: &str) -> String {
    if local.is_ascii() {
        return local.to_ascii_lowercase();
    }
    // Lower-casing can leave a string that is not NFC (rare); compose again.
    let lowered = local.to_lowercase();
    if is_nfc_quick(lowered.chars()) == IsNormalized::Yes {
        lowered
    } else {
        lowered.nfc().collect()
    }
}

fn to_ascii_domain(domain: &str) -> Option<String> {
    // A trailing dot is the DNS root, not part of a mail domain.
    if domain.ends_with('.') || domain.starts_with('.') || domain.contains("..") {
        return None;
    }
    let ascii = idna::domain_to_ascii_strict(domain).ok()?;
    if ascii.is_empty() || ascii.len() > 253 || ascii.split('.').any(|label| label.is_empty()) {
        return None;
    }
    Some(ascii.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> Option<String> {
        match_key(Some(raw)).key().map(str::to_owned)
    }

    #[test]
    fn case_nfc_and_idn_forms_share_a_key() {
        assert_eq!(key("User@Example.com"), key("user@example.com"));
        assert_eq!(key("  user@example.com\t"), Some("user@example.com".into()));
        // NFD "é" (e + combining acute) and NFC "é".
        assert_eq!(key("Jose\u{301}@example.com"), key("Jos\u{e9}@example.com"));
        assert_eq!(
            key("anna@BÜCHER.example"),
            key("anna@xn--bcher-kva.example")
        );
        assert_eq!(
            key("anna@bücher.example"),
            Some("anna@xn--bcher-kva.example".into())
        );
        assert_eq!(key("ÉLODIE@example.com"), Some("élodie@example.com".into()));
    }

    #[test]
    fn sharp_s_is_not_folded() {
        assert_ne!(key("straße@example.com"), key("strasse@example.com"));
        assert_eq!(key("STRASSE@example.com"), key("strasse@example.com"));
    }

    #[test]
    fn invalid_addresses_are_never_guessed_at() {
        let cases = [
            ("alice.example.com", InvalidEmail::NoAt),
            ("a@b@example.com", InvalidEmail::SeveralAt),
            ("@example.com", InvalidEmail::EmptyLocalPart),
            ("alice@", InvalidEmail::EmptyDomain),
            (
                "al ice@example.com",
                InvalidEmail::LocalPartHasSpaceOrControl,
            ),
            ("alice@exa mple.com", InvalidEmail::InvalidDomain),
            ("alice@example..com", InvalidEmail::InvalidDomain),
            ("alice@-example.com", InvalidEmail::InvalidDomain),
            ("alice@example.com.", InvalidEmail::InvalidDomain),
        ];
        for (raw, why) in cases {
            assert_eq!(match_key(Some(raw)), EmailKey::Invalid(why), "{raw}");
        }
        assert_eq!(match_key(Some("   ")), EmailKey::Missing);
        assert_eq!(match_key(None), EmailKey::Missing);
    }
}
