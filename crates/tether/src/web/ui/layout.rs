//! The page shell shared by every screen: header, navigation (following the admin's path of
//! DESIGN §1), and the sign-out form. Pages are server-rendered with maud; htmx (vendored,
//! served from /static) adds live fragments without a front-end build.

use maud::{html, Markup, DOCTYPE};
use tether_store::admin::Session;

/// The navigation entries; `active` marks the current one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Nav {
    Dashboard,
    Users,
    Sources,
    Jobs,
    Audit,
    Settings,
    Tokens,
    None,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Dashboard, "/", "Dashboard"),
    (Nav::Users, "/users", "Users"),
    (Nav::Sources, "/sources", "Sources › Pull User Data"),
    (Nav::Jobs, "/jobs", "Jobs"),
    (Nav::Audit, "/audit", "Audit log"),
    (Nav::Settings, "/settings/security", "Settings › Security"),
    (Nav::Tokens, "/tokens", "API tokens"),
];

/// A full admin page.
pub fn page(title: &str, active: Nav, session: &Session, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false}"#;
                meta name="csrf-token" content=(session.csrf);
                title { (title) " · tether" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/static/app.css";
                script src="/static/htmx.min.js" defer {}
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "tether" }
                    nav {
                        @for (item, href, label) in NAV {
                            a href=(href) class=[(*item == active).then_some("active")] { (label) }
                        }
                    }
                    form.signout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        span.who { (session.principal) }
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tether" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/static/app.css";
            }
            body.bare {
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A hidden CSRF field for a form.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A notice box (`kind`: ok, error, warn, info).
pub fn notice(kind: &str, text: &str) -> Markup {
    html! { p class={"notice " (kind)} role=(if kind == "error" { "alert" } else { "status" }) { (text) } }
}

/// A timestamp as pages show it: `2026-11-26 03:29:27 UTC`.
pub fn when(at: &time::OffsetDateTime) -> String {
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
    ))
    .unwrap_or_default()
}

/// A situation name as a badge.
pub fn situation_badge(name: &str) -> Markup {
    html! { span class={"badge s-" (name)} { (name) } }
}
