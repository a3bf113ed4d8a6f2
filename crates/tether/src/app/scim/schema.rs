//! The SCIM schemas tether serves (RFC 7643 §4 core User, §4.3 enterprise extension, §4.2
//! Group), written once as data: `/Schemas` renders them (RFC 7643 §7), and requests are
//! checked and their attribute names canonicalized against them.

use super::ScimError;
use serde_json::{json, Map, Value};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// RFC 7643 §2.3 data types (all of them, though tether's schemas use only some).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

/// RFC 7643 §7 `mutability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// RFC 7643 §7 `returned`.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

/// RFC 7643 §7 `uniqueness`.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

/// One attribute definition (RFC 7643 §7).
#[derive(Clone, Copy, Debug)]
pub struct Attribute {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: &'static [Attribute],
    pub description: &'static str,
}

const fn attr(name: &'static str, kind: Kind, description: &'static str) -> Attribute {
    Attribute {
        name,
        kind,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical: &[],
        reference_types: &[],
        sub: &[],
        description,
    }
}

const fn string(name: &'static str, description: &'static str) -> Attribute {
    attr(name, Kind::String, description)
}

impl Attribute {
    const fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, mutability: Mutability) -> Self {
        self.mutability = mutability;
        self
    }
    const fn returned(mut self, returned: Returned) -> Self {
        self.returned = returned;
        self
    }
    const fn unique(mut self) -> Self {
        self.uniqueness = Uniqueness::Server;
        self
    }
    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical = values;
        self
    }
    const fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }
    const fn sub(mut self, sub: &'static [Attribute]) -> Self {
        self.sub = sub;
        self
    }

    /// The definition as `/Schemas` renders it.
    pub fn to_json(self) -> Value {
        let mut object = json!({
            "name": self.name,
            "type": match self.kind {
                Kind::String => "string",
                Kind::Boolean => "boolean",
                Kind::Decimal => "decimal",
                Kind::Integer => "integer",
                Kind::DateTime => "dateTime",
                Kind::Binary => "binary",
                Kind::Reference => "reference",
                Kind::Complex => "complex",
            },
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
            "uniqueness": match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
                Uniqueness::Global => "global",
            },
        });
        if let Value::Object(map) = &mut object {
            if !self.canonical.is_empty() {
                map.insert("canonicalValues".into(), json!(self.canonical));
            }
            if !self.reference_types.is_empty() {
                map.insert("referenceTypes".into(), json!(self.reference_types));
            }
            if !self.sub.is_empty() {
                map.insert(
                    "subAttributes".into(),
                    Value::Array(self.sub.iter().copied().map(Attribute::to_json).collect()),
                );
            }
        }
        object
    }
}

/// The sub-attributes of a multi-valued attribute (RFC 7643 §2.4) with these `type` values.
macro_rules! multi_valued {
    ($value:expr, [$($type:literal),*]) => {
        &[
            $value,
            string("display", "A human-readable name, primarily used for display purposes."),
            string("type", "A label indicating the attribute's function.").canonical(&[$($type),*]),
            attr("primary", Kind::Boolean, "Indicates the 'primary' or preferred attribute value for this attribute."),
        ]
    };
}

const NAME: &[Attribute] = &[
    string("formatted", "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display."),
    string("familyName", "The family name of the User, or last name in most Western languages."),
    string("givenName", "The given name of the User, or first name in most Western languages."),
    string("middleName", "The middle name(s) of the User."),
    string("honorificPrefix", "The honorific prefix(es) of the User, or title in most Western languages."),
    string("honorificSuffix", "The honorific suffix(es) of the User, or suffix in most Western languages."),
];

const EMAILS: &[Attribute] = multi_valued!(
    string(
        "value",
        "Email address for the User; tether matches it by its normalized form."
    ),
    ["work", "home", "other"]
);
const PHONE_NUMBERS: &[Attribute] = multi_valued!(
    string("value", "Phone number of the User."),
    ["work", "home", "mobile", "fax", "pager", "other"]
);
const IMS: &[Attribute] = multi_valued!(
    string("value", "Instant messaging address for the User."),
    ["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
);
const PHOTOS: &[Attribute] = multi_valued!(
    attr("value", Kind::Reference, "URL of a photo of the User.").refs(&["external"]),
    ["photo", "thumbnail"]
);
const ADDRESSES: &[Attribute] = &[
    string(
        "formatted",
        "The full mailing address, formatted for display or use with a mailing label.",
    ),
    string("streetAddress", "The full street address component."),
    string("locality", "The city or locality component."),
    string("region", "The state or region component."),
    string("postalCode", "The zip code or postal code component."),
    string("country", "The country name component."),
    string("type", "A label indicating the attribute's function.")
        .canonical(&["work", "home", "other"]),
    attr(
        "primary",
        Kind::Boolean,
        "Indicates the 'primary' or preferred address.",
    ),
];
const GROUPS: &[Attribute] = &[
    string("value", "The identifier of the User's group.")
        .exact()
        .mutability(Mutability::ReadOnly),
    attr(
        "$ref",
        Kind::Reference,
        "The URI of the corresponding 'Group' resource.",
    )
    .exact()
    .refs(&["Group"])
    .mutability(Mutability::ReadOnly),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    )
    .mutability(Mutability::ReadOnly),
    string("type", "A label indicating the attribute's function.")
        .canonical(&["direct", "indirect"])
        .mutability(Mutability::ReadOnly),
];
const ENTITLEMENTS: &[Attribute] =
    multi_valued!(string("value", "The value of an entitlement."), []);
const ROLES: &[Attribute] = multi_valued!(string("value", "The value of a role."), []);
const CERTIFICATES: &[Attribute] = multi_valued!(
    attr("value", Kind::Binary, "The value of an X.509 certificate.").exact(),
    []
);

/// RFC 7643 §4.1 (`returned`/`mutability` as in §8.7.1).
pub const USER_ATTRIBUTES: &[Attribute] = &[
    string(
        "userName",
        "Unique identifier for the User, unique regardless of case in tether.",
    )
    .required()
    .unique(),
    attr(
        "name",
        Kind::Complex,
        "The components of the user's real name.",
    )
    .sub(NAME),
    string(
        "displayName",
        "The name of the User, suitable for display to end-users.",
    ),
    string(
        "nickName",
        "The casual way to address the user in real life.",
    ),
    attr(
        "profileUrl",
        Kind::Reference,
        "A fully qualified URL pointing to a page representing the User's online profile.",
    )
    .refs(&["external"]),
    string("title", "The user's title, such as \"Vice President.\""),
    string(
        "userType",
        "Used to identify the relationship between the organization and the user.",
    ),
    string(
        "preferredLanguage",
        "Indicates the User's preferred written or spoken language.",
    ),
    string(
        "locale",
        "Used to indicate the User's default location for purposes of localizing items.",
    ),
    string(
        "timezone",
        "The User's time zone in the 'Olson' time zone database format.",
    ),
    attr(
        "active",
        Kind::Boolean,
        "A Boolean value indicating the User's administrative status.",
    ),
    string(
        "password",
        "The User's cleartext password; tether does not keep it.",
    )
    .mutability(Mutability::WriteOnly)
    .returned(Returned::Never),
    attr("emails", Kind::Complex, "Email addresses for the user.")
        .multi()
        .sub(EMAILS),
    attr("phoneNumbers", Kind::Complex, "Phone numbers for the User.")
        .multi()
        .sub(PHONE_NUMBERS),
    attr(
        "ims",
        Kind::Complex,
        "Instant messaging addresses for the User.",
    )
    .multi()
    .sub(IMS),
    attr("photos", Kind::Complex, "URLs of photos of the User.")
        .multi()
        .sub(PHOTOS),
    attr(
        "addresses",
        Kind::Complex,
        "A physical mailing address for this User.",
    )
    .multi()
    .sub(ADDRESSES),
    attr(
        "groups",
        Kind::Complex,
        "A list of groups to which the user belongs.",
    )
    .multi()
    .sub(GROUPS)
    .mutability(Mutability::ReadOnly),
    attr(
        "entitlements",
        Kind::Complex,
        "A list of entitlements for the User.",
    )
    .multi()
    .sub(ENTITLEMENTS),
    attr("roles", Kind::Complex, "A list of roles for the User.")
        .multi()
        .sub(ROLES),
    attr(
        "x509Certificates",
        Kind::Complex,
        "A list of certificates issued to the User.",
    )
    .multi()
    .sub(CERTIFICATES),
];

const MANAGER: &[Attribute] = &[
    string(
        "value",
        "The id of the SCIM resource representing the User's manager.",
    ),
    attr(
        "$ref",
        Kind::Reference,
        "The URI of the SCIM resource representing the User's manager.",
    )
    .refs(&["User"]),
    string("displayName", "The displayName of the User's manager.")
        .mutability(Mutability::ReadOnly),
];

/// RFC 7643 §4.3.
pub const ENTERPRISE_ATTRIBUTES: &[Attribute] = &[
    string(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person.",
    ),
    string("costCenter", "Identifies the name of a cost center."),
    string("organization", "Identifies the name of an organization."),
    string("division", "Identifies the name of a division."),
    string("department", "Identifies the name of a department."),
    attr("manager", Kind::Complex, "The User's manager.").sub(MANAGER),
];

const MEMBERS: &[Attribute] = &[
    string(
        "value",
        "Identifier of the member of this Group (a User's id).",
    )
    .exact()
    .mutability(Mutability::Immutable),
    attr("$ref", Kind::Reference, "The URI of the member resource.")
        .exact()
        .refs(&["User"])
        .mutability(Mutability::Immutable),
    string("type", "The type of the member: tether groups hold users.")
        .canonical(&["User"])
        .mutability(Mutability::Immutable),
];

/// RFC 7643 §4.2 (members are users only).
pub const GROUP_ATTRIBUTES: &[Attribute] = &[
    string(
        "displayName",
        "A human-readable name for the Group, unique regardless of case.",
    )
    .required()
    .unique(),
    attr("members", Kind::Complex, "A list of members of the Group.")
        .multi()
        .sub(MEMBERS),
];

/// One schema (RFC 7643 §7) as `/Schemas/{id}` renders it.
pub fn schema_json(id: &str, base: &str) -> Option<Value> {
    let (name, description, attributes) = match id {
        USER_SCHEMA => ("User", "User Account", USER_ATTRIBUTES),
        ENTERPRISE_SCHEMA => ("EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRIBUTES),
        GROUP_SCHEMA => ("Group", "Group", GROUP_ATTRIBUTES),
        _ => return None,
    };
    Some(json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attributes.iter().copied().map(Attribute::to_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    }))
}

pub const SCHEMA_IDS: [&str; 3] = [USER_SCHEMA, ENTERPRISE_SCHEMA, GROUP_SCHEMA];

/// RFC 7643 §6.
pub fn resource_type_json(name: &str, base: &str) -> Option<Value> {
    let (endpoint, description, schema, extensions) = match name {
        "User" => (
            "/Users",
            "The application's users",
            USER_SCHEMA,
            json!([{"schema": ENTERPRISE_SCHEMA, "required": false}]),
        ),
        "Group" => ("/Groups", "Groups of users", GROUP_SCHEMA, json!([])),
        _ => return None,
    };
    Some(json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "description": description,
        "schema": schema,
        "schemaExtensions": extensions,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}")},
    }))
}

pub const RESOURCE_TYPE_NAMES: [&str; 2] = ["User", "Group"];

/// The attributes one resource body may carry at its top level.
pub struct ResourceSchema {
    pub core: &'static str,
    pub attributes: &'static [Attribute],
    pub extensions: &'static [(&'static str, &'static [Attribute])],
}

pub const USER: ResourceSchema = ResourceSchema {
    core: USER_SCHEMA,
    attributes: USER_ATTRIBUTES,
    extensions: &[(ENTERPRISE_SCHEMA, ENTERPRISE_ATTRIBUTES)],
};

pub const GROUP: ResourceSchema = ResourceSchema {
    core: GROUP_SCHEMA,
    attributes: GROUP_ATTRIBUTES,
    extensions: &[],
};

fn find<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

impl ResourceSchema {
    /// Checks a full resource body (POST, PUT, or the result of a PATCH) and returns it with
    /// canonical attribute names, without read-only and write-only attributes (`id`, `meta`,
    /// `groups`, `password`) and without nulls and empty arrays (RFC 7643 §2.5: unassigned).
    /// Unknown attributes and wrong types are refused, naming the attribute.
    pub fn canonicalize(&self, body: &Value) -> Result<Map<String, Value>, ScimError> {
        let Value::Object(object) = body else {
            return Err(ScimError::syntax("the body must be a JSON object"));
        };
        let mut out = Map::new();
        let mut schemas = vec![Value::from(self.core)];
        let mut saw_core_schema = false;
        for (key, value) in object {
            if key.eq_ignore_ascii_case("schemas") {
                let Value::Array(listed) = value else {
                    return Err(ScimError::syntax("\"schemas\" must be an array of URIs"));
                };
                for uri in listed {
                    let Some(uri) = uri.as_str() else {
                        return Err(ScimError::syntax("\"schemas\" must be an array of URIs"));
                    };
                    if uri.eq_ignore_ascii_case(self.core) {
                        saw_core_schema = true;
                    } else if !self
                        .extensions
                        .iter()
                        .any(|(u, _)| u.eq_ignore_ascii_case(uri))
                    {
                        return Err(ScimError::syntax(format!(
                            "unknown schema \"{uri}\" in \"schemas\""
                        )));
                    }
                }
                continue;
            }
            if key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("meta") {
                continue; // readOnly (RFC 7643 §3.1): ignored on input
            }
            if key.eq_ignore_ascii_case("externalId") {
                match value {
                    Value::Null => {}
                    Value::String(s) if s.is_empty() => {}
                    Value::String(s) => {
                        out.insert("externalId".into(), Value::String(s.clone()));
                    }
                    _ => return Err(ScimError::value("\"externalId\" must be a string")),
                }
                continue;
            }
            if let Some((uri, attributes)) = self
                .extensions
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(key))
            {
                match value {
                    Value::Null => {}
                    Value::Object(inner) => {
                        // Some clients (scim2-models) repeat `schemas` inside the extension.
                        let mut inner = inner.clone();
                        if let Some(key) = inner
                            .keys()
                            .find(|k| k.eq_ignore_ascii_case("schemas"))
                            .cloned()
                        {
                            inner.remove(&key);
                        }
                        let checked = check_object(attributes, &inner, uri)?;
                        if !checked.is_empty() {
                            out.insert((*uri).to_owned(), Value::Object(checked));
                            schemas.push(Value::from(*uri));
                        }
                    }
                    _ => {
                        return Err(ScimError::syntax(format!(
                            "\"{uri}\" must be an object of its attributes"
                        )))
                    }
                }
                continue;
            }
            let Some(attribute) = find(self.attributes, key) else {
                return Err(ScimError::syntax(format!(
                    "unknown attribute \"{key}\" (see /Schemas/{})",
                    self.core
                )));
            };
            if let Some(checked) = check_value(attribute, value, attribute.name)? {
                out.insert(attribute.name.to_owned(), checked);
            }
        }
        if !saw_core_schema && object.keys().any(|k| k.eq_ignore_ascii_case("schemas")) {
            return Err(ScimError::syntax(format!(
                "\"schemas\" must list \"{}\"",
                self.core
            )));
        }
        for attribute in self.attributes.iter().filter(|a| a.required) {
            if !out.contains_key(attribute.name) {
                return Err(ScimError::value(format!(
                    "\"{}\" is required",
                    attribute.name
                )));
            }
        }
        out.insert("schemas".into(), Value::Array(schemas));
        Ok(out)
    }
}

fn check_object(
    attributes: &[Attribute],
    object: &Map<String, Value>,
    parent: &str,
) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    for (key, value) in object {
        let Some(attribute) = find(attributes, key) else {
            return Err(ScimError::syntax(format!(
                "unknown attribute \"{parent}.{key}\""
            )));
        };
        let path = format!("{parent}.{}", attribute.name);
        if let Some(checked) = check_value(attribute, value, &path)? {
            out.insert(attribute.name.to_owned(), checked);
        }
    }
    Ok(out)
}

/// One attribute's value: `None` when unassigned or not stored.
fn check_value(
    attribute: &Attribute,
    value: &Value,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null()
        || matches!(
            attribute.mutability,
            Mutability::ReadOnly | Mutability::WriteOnly
        )
    {
        return Ok(None);
    }
    if attribute.multi {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(checked) = check_single(attribute, item, path)? {
                out.push(checked);
            }
        }
        let primaries = out
            .iter()
            .filter(|v| v.get("primary") == Some(&Value::Bool(true)))
            .count();
        if primaries > 1 {
            return Err(ScimError::value(format!(
                "\"{path}\": at most one value may be primary (RFC 7643 §2.4)"
            )));
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    check_single(attribute, value, path)
}

fn check_single(
    attribute: &Attribute,
    value: &Value,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    let wrong = |expected: &str| ScimError::value(format!("\"{path}\" must be {expected}"));
    Ok(Some(match attribute.kind {
        Kind::Complex => {
            let Value::Object(object) = value else {
                return Err(wrong("an object"));
            };
            let checked = check_object(attribute.sub, object, path)?;
            if checked.is_empty() {
                return Ok(None);
            }
            Value::Object(checked)
        }
        Kind::Boolean => match value {
            Value::Bool(b) => Value::Bool(*b),
            // Microsoft Entra sends booleans as "True"/"False" in PATCH values.
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(wrong("a boolean")),
        },
        Kind::Integer => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => value.clone(),
            _ => return Err(wrong("an integer")),
        },
        Kind::Decimal => match value {
            Value::Number(_) => value.clone(),
            _ => return Err(wrong("a number")),
        },
        Kind::String | Kind::Reference | Kind::Binary | Kind::DateTime => match value {
            Value::String(_) => value.clone(),
            _ => return Err(wrong("a string")),
        },
    }))
}

/// `caseExact` of an attribute path (RFC 7643 §2.2), from the tables above.
pub fn case_exact(path: &tether_core::scim::AttrPath) -> bool {
    tether_core::scim::core_case_exact(path)
}

/// The ServiceProviderConfig (RFC 7643 §5).
pub fn service_provider_config(base: &str, max_results: u32) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": "https://github.com/tether/tether#scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A bearer token with scope scim: tether token create --name NAME --scope scim",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}
