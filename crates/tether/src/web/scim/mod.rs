//! SCIM 2.0 service provider at /scim/v2 (RFC 7643, RFC 7644).
//!
//! Every route needs a bearer token of scope `scim` ([`ScimCaller`]; an admin token is 403;
//! a successful check is remembered for a few seconds, see [`Caller`]).
//! Handlers parse the request (path, query, `If-Match`, the JSON body), call one
//! `App::scim_*` function, and render `application/scim+json` with the status the error kind
//! maps to ([`status_of`]). Errors follow RFC 7644 §3.12. Bodies are bounded by the server's
//! body limit ([`super::MAX_BODY_BYTES`]).
//!
//! | route (RFC 7644 §3.2) | method | RFC |
//! |---|---|---|
//! | `/ServiceProviderConfig` | GET | 7644 §4, 7643 §5 |
//! | `/ResourceTypes[/{name}]` | GET | 7644 §4, 7643 §6 |
//! | `/Schemas[/{id}]` | GET | 7644 §4, 7643 §7 |
//! | `/Users`, `/Groups` | GET (query) | 7644 §3.4.2 |
//! | `/Users`, `/Groups` | POST (create) | 7644 §3.3 |
//! | `/Users/.search`, `/Groups/.search` | POST | 7644 §3.4.3 |
//! | `/Users/{id}`, `/Groups/{id}` | GET | 7644 §3.4.1 |
//! | `/Users/{id}`, `/Groups/{id}` | PUT | 7644 §3.5.1 |
//! | `/Users/{id}`, `/Groups/{id}` | PATCH | 7644 §3.5.2 |
//! | `/Users/{id}`, `/Groups/{id}` | DELETE | 7644 §3.6 |
//! | `/.search` | POST (users and groups) | 7644 §3.4.3 |
//! | `/Bulk`, `/Me` | any | not implemented: 501 (7644 §3.7, §3.11) |

use super::auth::{ScimAuthError, ScimCaller};
use super::AppState;
use crate::app::scim::{
    discovery, ListQuery, Projection, Rendered, ScimCall, ScimError, ScimErrorKind, ScimResult,
    GROUP_CORE, USER_CORE,
};
use crate::clock;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::Value;

const CONTENT_TYPE: &str = "application/scim+json";

/// How long a successful token check is remembered: a revoked SCIM token stops working
/// within this time. It spares the store one query per request (provisioning clients send
/// bursts of small requests with one token).
const TOKEN_CACHE_SECONDS: i64 = 5;
const TOKEN_CACHE_ENTRIES: usize = 256;

/// A SCIM client ([`ScimCaller`]: a bearer token of scope `scim`), with successful checks
/// remembered for [`TOKEN_CACHE_SECONDS`], keyed by the hash of the `Authorization` header.
pub struct Caller(ScimCaller);

type TokenCache =
    std::sync::Mutex<std::collections::HashMap<String, (String, time::OffsetDateTime)>>;

fn token_cache() -> &'static TokenCache {
    static CACHE: std::sync::OnceLock<TokenCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ScimAuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, ScimAuthError> {
        let now = clock::now();
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| crate::app::token_hash(&String::from_utf8_lossy(v.as_bytes())));
        if let (Some(key), Ok(cache)) = (&key, token_cache().lock()) {
            if let Some((name, checked)) = cache.get(key) {
                if now - *checked < time::Duration::seconds(TOKEN_CACHE_SECONDS) && now >= *checked
                {
                    return Ok(Caller(ScimCaller {
                        token_name: name.clone(),
                    }));
                }
            }
        }
        let caller = ScimCaller::from_request_parts(parts, state).await?;
        if let (Some(key), Ok(mut cache)) = (key, token_cache().lock()) {
            if cache.len() >= TOKEN_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, (caller.token_name.clone(), now));
        }
        Ok(Caller(caller))
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        // RFC 7644 §4: "GET /ServiceProviderConfig" … "GET /ResourceTypes" … "GET /Schemas"
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{name}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema))
        // RFC 7644 §3.3 "POST" creates, §3.4.2 "GET" queries a collection.
        .route("/scim/v2/Users", get(list_users).post(create_user))
        // RFC 7644 §3.4.3: "POST … with the /.search path extension".
        .route("/scim/v2/Users/.search", post(search_users))
        // RFC 7644 §3.4.1 GET, §3.5.1 PUT, §3.5.2 PATCH, §3.6 DELETE.
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route("/scim/v2/Groups/.search", post(search_groups))
        .route(
            "/scim/v2/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        // RFC 7644 §3.7 (Bulk), §3.4.3 (root search), §3.11 (/Me): not offered.
        .route("/scim/v2/Bulk", any(not_implemented))
        // RFC 7644 §3.4.3: "POST" to "/.search" at the root searches every resource type.
        .route("/scim/v2/.search", post(search_all))
        .route("/scim/v2/Me", any(not_implemented))
        .route("/scim/v2/{*rest}", any(unknown))
}

/// The status of each error kind (RFC 7644 §3.12).
fn status_of(kind: ScimErrorKind) -> StatusCode {
    match kind {
        ScimErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ScimErrorKind::NotFound => StatusCode::NOT_FOUND,
        ScimErrorKind::Conflict => StatusCode::CONFLICT,
        ScimErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ScimErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ScimErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ScimErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body.to_string(),
    )
        .into_response()
}

fn error_response(error: ScimError) -> Response {
    let status = status_of(error.kind);
    if error.kind == ScimErrorKind::Internal {
        tracing::error!(error = %error.detail, "SCIM request failed");
        let hidden = ScimError {
            detail: "internal error; the server log has the details under this request's id"
                .to_owned(),
            ..error
        };
        return scim_json(status, &hidden.body(status.as_u16()));
    }
    scim_json(status, &error.body(status.as_u16()))
}

fn respond(result: ScimResult<Response>) -> Response {
    result.unwrap_or_else(error_response)
}

/// A single resource with its `ETag` (RFC 7644 §3.14), and `Location` when created.
fn resource_response(
    status: StatusCode,
    rendered: Rendered,
    projection: &Projection,
    core: &str,
) -> Response {
    let mut response = scim_json(status, &projection.apply(rendered.body, core));
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&rendered.etag) {
        headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED {
        if let Ok(location) = HeaderValue::from_str(&rendered.location) {
            headers.insert(header::LOCATION, location);
        }
    }
    response
}

fn base(state: &AppState) -> String {
    format!("{}/scim/v2", state.public_url.trim_end_matches('/'))
}

fn actor(caller: &Caller) -> String {
    format!("scim:{}", caller.0.token_name)
}

fn query_pairs(query: Option<&str>) -> ScimResult<Vec<(String, String)>> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .map_err(|e| ScimError::syntax(format!("the query string is not valid: {e}")))
}

fn list_query(query: Option<&str>) -> ScimResult<ListQuery> {
    let pairs = query_pairs(query)?;
    ListQuery::from_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn projection(query: Option<&str>) -> ScimResult<Projection> {
    let pairs = query_pairs(query)?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    Projection::parse(get("attributes"), get("excludedAttributes"))
}

/// The JSON body; malformed JSON is `invalidSyntax` (RFC 7644 §3.12), a body over the
/// server's limit is 413.
fn json_body(body: &Body) -> ScimResult<Value> {
    let body = body.as_ref().map_err(|e| ScimError {
        kind: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScimErrorKind::TooLarge
        } else {
            ScimErrorKind::Invalid
        },
        scim_type: None,
        detail: format!(
            "the request body could not be read ({e}); at most {} bytes are accepted",
            super::MAX_BODY_BYTES
        ),
    })?;
    serde_json::from_slice(body)
        .map_err(|e| ScimError::syntax(format!("the body is not valid JSON: {e}")))
}

/// A request body, or why it could not be read (too large, …), answered as a SCIM error.
type Body = Result<Bytes, BytesRejection>;

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn new_id() -> ScimResult<[u8; 16]> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ScimError {
        kind: ScimErrorKind::Internal,
        scim_type: None,
        detail: format!("no randomness for a new id: {e}"),
    })?;
    Ok(bytes)
}

// --- discovery -------------------------------------------------------------------------------

async fn service_provider_config(_caller: Caller, State(state): State<AppState>) -> Response {
    scim_json(
        StatusCode::OK,
        &discovery::service_provider_config(&base(&state)),
    )
}

async fn resource_types(_caller: Caller, State(state): State<AppState>) -> Response {
    scim_json(StatusCode::OK, &discovery::resource_types(&base(&state)))
}

async fn resource_type(
    _caller: Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    respond(discovery::resource_type(&base(&state), &name).map(|v| scim_json(StatusCode::OK, &v)))
}

async fn schemas(_caller: Caller, State(state): State<AppState>) -> Response {
    scim_json(StatusCode::OK, &discovery::schemas(&base(&state)))
}

async fn schema(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    respond(discovery::schema(&base(&state), &id).map(|v| scim_json(StatusCode::OK, &v)))
}

async fn not_implemented(_caller: Caller) -> Response {
    error_response(ScimError::not_implemented(
        "tether does not offer this SCIM endpoint (Bulk, /Me)",
    ))
}

async fn unknown(_caller: Caller, Path(rest): Path<String>) -> Response {
    error_response(ScimError::not_found(format!(
        "no SCIM endpoint /scim/v2/{rest}: see /scim/v2/ResourceTypes"
    )))
}

async fn search_all(caller: Caller, State(state): State<AppState>, body: Body) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let query = ListQuery::from_search(&json_body(&body)?)?;
            let list = state.app.scim_search_all(&call, &query).await?;
            Ok(scim_json(StatusCode::OK, &list))
        }
        .await,
    )
}

// --- users -----------------------------------------------------------------------------------

async fn list_users(
    caller: Caller,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let query = list_query(query.as_deref())?;
            let list = state.app.scim_list_users(&call, &query).await?;
            Ok(scim_json(StatusCode::OK, &list))
        }
        .await,
    )
}

async fn search_users(caller: Caller, State(state): State<AppState>, body: Body) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let query = ListQuery::from_search(&json_body(&body)?)?;
            let list = state.app.scim_list_users(&call, &query).await?;
            Ok(scim_json(StatusCode::OK, &list))
        }
        .await,
    )
}

async fn get_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let projection = projection(query.as_deref())?;
            let user = state.app.scim_get_user(&call, &id).await?;
            Ok(resource_response(
                StatusCode::OK,
                user,
                &projection,
                USER_CORE,
            ))
        }
        .await,
    )
}

async fn create_user(
    caller: Caller,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let projection = projection(query.as_deref())?;
            let body = json_body(&body)?;
            let user = state.app.scim_create_user(&call, &body, new_id()?).await?;
            Ok(resource_response(
                StatusCode::CREATED,
                user,
                &projection,
                USER_CORE,
            ))
        }
        .await,
    )
}

async fn replace_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let projection = projection(query.as_deref())?;
            let body = json_body(&body)?;
            let user = state
                .app
                .scim_replace_user(&call, &id, &body, if_match(&headers).as_deref())
                .await?;
            Ok(resource_response(
                StatusCode::OK,
                user,
                &projection,
                USER_CORE,
            ))
        }
        .await,
    )
}

async fn patch_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let projection = projection(query.as_deref())?;
            let body = json_body(&body)?;
            let user = state
                .app
                .scim_patch_user(&call, &id, &body, if_match(&headers).as_deref())
                .await?;
            Ok(resource_response(
                StatusCode::OK,
                user,
                &projection,
                USER_CORE,
            ))
        }
        .await,
    )
}

async fn delete_user(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            state
                .app
                .scim_delete_user(&call, &id, if_match(&headers).as_deref())
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

// --- groups ----------------------------------------------------------------------------------

async fn list_groups(
    caller: Caller,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let query = list_query(query.as_deref())?;
            let list = state.app.scim_list_groups(&call, &query).await?;
            Ok(scim_json(StatusCode::OK, &list))
        }
        .await,
    )
}

async fn search_groups(caller: Caller, State(state): State<AppState>, body: Body) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let query = ListQuery::from_search(&json_body(&body)?)?;
            let list = state.app.scim_list_groups(&call, &query).await?;
            Ok(scim_json(StatusCode::OK, &list))
        }
        .await,
    )
}

async fn get_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let projection = projection(query.as_deref())?;
            let group = state.app.scim_get_group(&call, &id).await?;
            Ok(resource_response(
                StatusCode::OK,
                group,
                &projection,
                GROUP_CORE,
            ))
        }
        .await,
    )
}

async fn create_group(
    caller: Caller,
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let projection = projection(query.as_deref())?;
            let body = json_body(&body)?;
            let group = state.app.scim_create_group(&call, &body, new_id()?).await?;
            Ok(resource_response(
                StatusCode::CREATED,
                group,
                &projection,
                GROUP_CORE,
            ))
        }
        .await,
    )
}

async fn replace_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let projection = projection(query.as_deref())?;
            let body = json_body(&body)?;
            let group = state
                .app
                .scim_replace_group(&call, &id, &body, if_match(&headers).as_deref())
                .await?;
            Ok(resource_response(
                StatusCode::OK,
                group,
                &projection,
                GROUP_CORE,
            ))
        }
        .await,
    )
}

async fn patch_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            let projection = projection(query.as_deref())?;
            let body = json_body(&body)?;
            let group = state
                .app
                .scim_patch_group(&call, &id, &body, if_match(&headers).as_deref())
                .await?;
            Ok(resource_response(
                StatusCode::OK,
                group,
                &projection,
                GROUP_CORE,
            ))
        }
        .await,
    )
}

async fn delete_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let actor = actor(&caller);
    let base = base(&state);
    let call = ScimCall {
        actor: &actor,
        at: clock::now(),
        base: &base,
    };
    respond(
        async {
            state
                .app
                .scim_delete_group(&call, &id, if_match(&headers).as_deref())
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
