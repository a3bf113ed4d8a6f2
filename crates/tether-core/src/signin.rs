//! The sign-in decision (DESIGN §4.4): which profile a person who just signed in through the
//! identity platform is, and whether their account ID may be written into it now.
//!
//! Written once, shared by the OpenID Connect callback and the sign-in decision API, and built
//! on the engine's rules: e-mails compare by [`crate::email`] match key, situations use the
//! engine's names where they mean the same thing, and a link is a [`Change`] from `None`
//! that the store writes only where the External ID is still empty and the value is free
//! (its lost races are settled with [`crate::settle`]).
//!
//! Order (hard match first, soft match only when allowed):
//! 1. A profile whose External ID equals the account ID (compared exactly, case-sensitive) →
//!    `linked` (refused as `inactive_profile` when the profile is inactive). The e-mail does
//!    not matter: the ID is the anchor, even after the address changed.
//! 2. Otherwise, only with *Auto-populate account ID* on (`auto_populate_off`), a usable
//!    e-mail (`no_email`, `invalid_email`) that the platform vouches for (`email_not_verified`,
//!    unless the setting relaxes it), the profiles sharing the e-mail's match key:
//!    two or more without External ID → `duplicate_users`; exactly one → `new_link`
//!    (`inactive_profile` when it is inactive); none, but some carry another External ID →
//!    `conflict`; only excluded ones → `excluded`; none at all → `no_match`.
//!
//! Every refusal links nothing and explains itself (what happened, what the admin can do).
//! Pure: no I/O, no clock; the caller reads the facts and writes the result.

use crate::email::{EmailKey, EmailNormalizer};
use crate::engine::{settle, Change, ChangeResult};
use crate::explain::{short, Explanation};
use crate::model::Situation;
use serde::{Serialize, Serializer};
use std::fmt;

/// The most profiles sharing one e-mail that a decision names; the store reads one more so a
/// decision knows when there are more.
pub const MAX_EMAIL_PROFILES: usize = 20;

/// What the identity platform says about the person (from a validated ID token, or from a
/// host application through the decision API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInClaims {
    /// The value of the account ID claim (`sub` by default): what External ID must equal.
    pub account_id: String,
    pub email: Option<String>,
    /// The `email_verified` claim; absent counts as `false`.
    pub email_verified: bool,
}

/// The settings of Platform › Security that change the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInSettings {
    /// *Auto-populate account ID*: link by e-mail at sign-in when the ID matches no profile.
    pub auto_populate: bool,
    /// Match by e-mail only when the platform says it verified the address (default on).
    pub require_verified_email: bool,
}

impl Default for SignInSettings {
    fn default() -> Self {
        SignInSettings {
            auto_populate: true,
            require_verified_email: true,
        }
    }
}

/// A profile as the decision sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub pk: i64,
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub active: bool,
    pub excluded: bool,
}

/// What the store knows that matters for one sign-in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignInFacts {
    /// The profile whose External ID equals the account ID exactly, if any.
    pub holder: Option<Profile>,
    /// Profiles whose e-mail match key equals the claim's, ordered by pk, at most
    /// [`MAX_EMAIL_PROFILES`] + 1 (empty when the claim has no valid e-mail).
    pub by_email: Vec<Profile>,
}

/// The outcome of a sign-in, named as in the engine where the meaning is the same (a
/// contract: these snake_case names appear in the API, the audit trail and the UI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignInSituation {
    /// Signed in by account ID.
    Linked,
    /// Signed in, and the account ID written into the one profile with the e-mail.
    NewLink,
    Conflict,
    DuplicateUsers,
    AccountTaken,
    NoMatch,
    NoEmail,
    InvalidEmail,
    Excluded,
    /// The platform did not vouch for the e-mail, and the settings require it.
    EmailNotVerified,
    /// The profile exists but is deactivated in the application.
    InactiveProfile,
    /// The ID matches no profile and *Auto-populate account ID* is off.
    AutoPopulateOff,
}

impl SignInSituation {
    pub const ALL: &'static [SignInSituation] = &[
        SignInSituation::Linked,
        SignInSituation::NewLink,
        SignInSituation::Conflict,
        SignInSituation::DuplicateUsers,
        SignInSituation::AccountTaken,
        SignInSituation::NoMatch,
        SignInSituation::NoEmail,
        SignInSituation::InvalidEmail,
        SignInSituation::Excluded,
        SignInSituation::EmailNotVerified,
        SignInSituation::InactiveProfile,
        SignInSituation::AutoPopulateOff,
    ];

    /// The engine's situation of the same meaning, if there is one.
    pub fn situation(self) -> Option<Situation> {
        Some(match self {
            SignInSituation::Linked => Situation::Linked,
            SignInSituation::NewLink => Situation::NewLink,
            SignInSituation::Conflict => Situation::Conflict,
            SignInSituation::DuplicateUsers => Situation::DuplicateUsers,
            SignInSituation::AccountTaken => Situation::AccountTaken,
            SignInSituation::NoMatch => Situation::NoMatch,
            SignInSituation::NoEmail => Situation::NoEmail,
            SignInSituation::InvalidEmail => Situation::InvalidEmail,
            SignInSituation::Excluded => Situation::Excluded,
            SignInSituation::EmailNotVerified
            | SignInSituation::InactiveProfile
            | SignInSituation::AutoPopulateOff => return None,
        })
    }

    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self.situation() {
            Some(situation) => situation.as_str(),
            None => match self {
                SignInSituation::EmailNotVerified => "email_not_verified",
                SignInSituation::InactiveProfile => "inactive_profile",
                _ => "auto_populate_off",
            },
        }
    }

    /// Whether the person may sign in.
    pub fn signs_in(self) -> bool {
        matches!(self, SignInSituation::Linked | SignInSituation::NewLink)
    }
}

impl fmt::Display for SignInSituation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SignInSituation {
    type Err = crate::model::UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SignInSituation::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| crate::model::UnknownName {
                kind: "sign-in situation",
                given: text.to_owned(),
                expected: SignInSituation::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl Serialize for SignInSituation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The decision for one sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInDecision {
    pub situation: SignInSituation,
    /// The profile signed in, or the one a refusal is about (if one is).
    pub user_pk: Option<i64>,
    /// Other profiles a refusal names (e.g. the others sharing the e-mail, or the holder).
    pub related: Vec<i64>,
    /// The External ID to write for a `new_link`: from `None` to the account ID.
    pub change: Option<Change>,
    pub explanation: Explanation,
}

impl SignInDecision {
    /// Whether the person may sign in (once the change, if any, is written).
    pub fn signs_in(&self) -> bool {
        self.situation.signs_in()
    }
}

fn name(profile: &Profile) -> String {
    if profile.username.is_empty() || profile.username == profile.id {
        profile.id.clone()
    } else {
        format!("{} ({})", profile.id, profile.username)
    }
}

fn names(profiles: &[&Profile]) -> String {
    let mut listed: Vec<String> = profiles.iter().take(10).map(|p| name(p)).collect();
    if profiles.len() > listed.len() {
        listed.push(format!("and {} more", profiles.len() - listed.len()));
    }
    listed.join(", ")
}

fn decision(
    situation: SignInSituation,
    user: Option<&Profile>,
    related: &[&Profile],
    explanation: String,
    fix: impl Into<String>,
) -> SignInDecision {
    SignInDecision {
        situation,
        user_pk: user.map(|p| p.pk),
        related: related.iter().map(|p| p.pk).collect(),
        change: None,
        explanation: Explanation {
            explanation,
            fix: fix.into(),
        },
    }
}

/// Decides one sign-in (see the module documentation for the order of the rules).
pub fn decide_sign_in(
    claims: &SignInClaims,
    facts: &SignInFacts,
    settings: &SignInSettings,
) -> SignInDecision {
    let account = short(&claims.account_id);
    let email = claims.email.as_deref().map(str::trim).unwrap_or("");

    // Rule 1: the account ID is the anchor.
    if let Some(holder) = &facts.holder {
        if !holder.active {
            return decision(
                SignInSituation::InactiveProfile,
                Some(holder),
                &[],
                format!(
                    "Profile {} has External ID {account}, but the profile is inactive.",
                    name(holder)
                ),
                "Reactivate the profile if this person should have access; otherwise nothing to do.",
            );
        }
        return decision(
            SignInSituation::Linked,
            Some(holder),
            &[],
            format!(
                "Profile {} has External ID {account}: signed in by account ID.",
                name(holder)
            ),
            "Nothing to do.",
        );
    }

    // Rule 2: a soft match by e-mail, only when allowed.
    let unknown = format!("No profile has External ID {account}");
    if !settings.auto_populate {
        let related: Vec<&Profile> = facts.by_email.iter().collect();
        return decision(
            SignInSituation::AutoPopulateOff,
            None,
            &related,
            format!("{unknown}, and Auto-populate account ID is off, so sign-in does not link by e-mail."),
            "Turn on Auto-populate account ID in Platform › Security, run a pull, or set External ID by hand on the person's profile.",
        );
    }
    match EmailNormalizer::new().key(claims.email.as_deref()) {
        EmailKey::Missing => {
            return decision(
                SignInSituation::NoEmail,
                None,
                &[],
                format!("{unknown}, and the identity platform sent no e-mail to match on."),
                "Have the identity platform release the e-mail (scope `email`), or set External ID by hand on the person's profile.",
            )
        }
        EmailKey::Invalid(why) => {
            return decision(
                SignInSituation::InvalidEmail,
                None,
                &[],
                format!("{unknown}, and the e-mail '{email}' from the identity platform is not valid: {why}."),
                "Correct the address in the directory, or set External ID by hand on the person's profile.",
            )
        }
        EmailKey::Valid(_) => {}
    }
    if settings.require_verified_email && !claims.email_verified {
        let related: Vec<&Profile> = facts.by_email.iter().collect();
        return decision(
            SignInSituation::EmailNotVerified,
            None,
            &related,
            format!("{unknown}, and the identity platform does not vouch for {email} (email_verified is not true), so it is not matched."),
            "Have the directory verify the address, or set External ID by hand on the person's profile; if the platform never sends email_verified, allow unverified e-mails in Platform › Security.",
        );
    }

    let unlinked: Vec<&Profile> = facts
        .by_email
        .iter()
        .filter(|p| p.external_id.is_none() && !p.excluded)
        .collect();
    let linked: Vec<&Profile> = facts
        .by_email
        .iter()
        .filter(|p| p.external_id.is_some())
        .collect();
    match unlinked.as_slice() {
        [one] => {
            if !one.active {
                return decision(
                    SignInSituation::InactiveProfile,
                    Some(one),
                    &[],
                    format!(
                        "{unknown}; profile {} has {email} but is inactive, so it is not linked.",
                        name(one)
                    ),
                    "Reactivate the profile if this person should have access; it then links at the next sign-in.",
                );
            }
            let mut linked_now = decision(
                SignInSituation::NewLink,
                Some(one),
                &[],
                format!(
                    "Profile {} has {email}, the verified e-mail of account {account}; External ID becomes {account} (origin login).",
                    name(one)
                ),
                "Nothing to do.",
            );
            linked_now.change = Some(Change {
                user_pk: one.pk,
                account_pk: 0,
                old: None,
                new: claims.account_id.clone(),
            });
            linked_now
        }
        [first, others @ ..] if !others.is_empty() => decision(
            SignInSituation::DuplicateUsers,
            Some(first),
            others,
            format!(
                "{} profiles without External ID share {email}: {}; sign-in does not guess which one is this person.",
                if unlinked.len() > MAX_EMAIL_PROFILES {
                    format!("More than {MAX_EMAIL_PROFILES}")
                } else {
                    unlinked.len().to_string()
                },
                names(&unlinked)
            ),
            "Exclude the stale profile or correct its e-mail; the remaining one then links at the next sign-in.",
        ),
        _ => match linked.as_slice() {
            [] if facts.by_email.is_empty() => decision(
                SignInSituation::NoMatch,
                None,
                &[],
                format!("{unknown} or the e-mail {email}."),
                format!("Create or import the person's profile with this e-mail, or set External ID {account} on their profile by hand."),
            ),
            [] => {
                let excluded: Vec<&Profile> = facts.by_email.iter().collect();
                decision(
                    SignInSituation::Excluded,
                    excluded.first().copied(),
                    excluded.get(1..).unwrap_or_default(),
                    format!(
                        "{unknown}; the only profile with {email} ({}) is excluded from linking.",
                        names(&excluded)
                    ),
                    "Include the user again to let sign-in link it, or set External ID by hand.",
                )
            }
            [one] => decision(
                SignInSituation::Conflict,
                Some(one),
                &[],
                format!(
                    "{unknown}; profile {} has {email} but already has External ID {}, not {account}.",
                    name(one),
                    one.external_id.as_deref().map(short).unwrap_or_default()
                ),
                format!("Check which is right: if account {account} is this person, clear the profile's External ID; otherwise correct the e-mail in the directory or on the profile."),
            ),
            [first, others @ ..] => decision(
                SignInSituation::Conflict,
                Some(first),
                others,
                format!(
                    "{unknown}; the profiles with {email} ({}) already have other External IDs.",
                    names(&linked)
                ),
                format!("Check which profile is this person: clear its External ID so account {account} links, or correct the e-mails."),
            ),
        },
    }
}

/// The decision once its change met the store: a lost race refuses the sign-in (as the
/// engine settles it: `conflict`, `account_taken`, `excluded`), never overwrites, and a
/// profile that another writer linked to the same account ID signs in.
pub fn settle_sign_in(
    decision: &SignInDecision,
    result: &ChangeResult,
    holder: Option<&Profile>,
) -> SignInDecision {
    let Some(change) = &decision.change else {
        return decision.clone();
    };
    let account = short(&change.new);
    let refused = |situation, related: Vec<i64>, explanation: String, fix: &str| SignInDecision {
        situation,
        user_pk: Some(change.user_pk),
        related,
        change: None,
        explanation: Explanation {
            explanation,
            fix: fix.to_owned(),
        },
    };
    match settle(change, result).map(|outcome| outcome.situation) {
        Some(Situation::Linked) if *result == ChangeResult::Applied => decision.clone(),
        Some(Situation::Linked) => SignInDecision {
            situation: SignInSituation::Linked,
            change: None,
            explanation: Explanation {
                explanation: format!(
                    "The profile received External ID {account} from another writer meanwhile: signed in by account ID."
                ),
                fix: "Nothing to do.".to_owned(),
            },
            ..decision.clone()
        },
        Some(Situation::AccountTaken) => refused(
            SignInSituation::AccountTaken,
            match result {
                ChangeResult::Taken { holder_pk } => vec![*holder_pk],
                _ => Vec::new(),
            },
            format!(
                "Account {account} became the External ID of {} while this sign-in was linking another profile, so nothing was linked.",
                holder.map(name).unwrap_or_else(|| "another profile".to_owned())
            ),
            "Find out which profile belongs to this person; clear the other profile's External ID or exclude one of them.",
        ),
        Some(Situation::Excluded) => refused(
            SignInSituation::Excluded,
            Vec::new(),
            "The profile was excluded from linking while this sign-in was linking it, so nothing was linked.".to_owned(),
            "Include the user again to let sign-in link it, or set External ID by hand.",
        ),
        Some(_) => refused(
            SignInSituation::Conflict,
            Vec::new(),
            format!(
                "The profile received another External ID while this sign-in was linking it to {account}; nothing was overwritten."
            ),
            "Check which is right: if this account is the person, clear the profile's External ID; otherwise nothing to do.",
        ),
        None => SignInDecision {
            situation: SignInSituation::NoMatch,
            user_pk: None,
            related: Vec::new(),
            change: None,
            explanation: Explanation {
                explanation: format!(
                    "The profile that matched the e-mail was removed while this sign-in was linking it to {account}."
                ),
                fix: "Create or import the person's profile, then sign in again.".to_owned(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_names_are_the_engines() {
        for situation in SignInSituation::ALL {
            if let Some(engine) = situation.situation() {
                assert_eq!(situation.as_str(), engine.as_str());
            }
        }
        assert_eq!(
            SignInSituation::EmailNotVerified.as_str(),
            "email_not_verified"
        );
        assert_eq!(
            SignInSituation::AutoPopulateOff.as_str(),
            "auto_populate_off"
        );
        assert_eq!(
            SignInSituation::InactiveProfile.as_str(),
            "inactive_profile"
        );
    }
}
