//! Tolerant parsing of SCIM 2.0 resources (RFC 7643) into the few fields opsync keeps.
//!
//! Bridges in the wild send nulls, omit attributes, put numbers in strings and add fields of
//! their own. Only `id` is required of a user: without it we cannot follow the user from one
//! sync to the next. Everything else degrades to `None`, and unknown attributes are ignored.
//! Parsing goes through `serde_json::Value` on purpose: a typed derive would reject a whole
//! page because one user had `"active": "true"`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// One directory member as opsync stores and reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScimUser {
    /// The SCIM id: stable for the life of the member.
    pub id: String,
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// `false` means suspended in 1Password. RFC 7643 makes `active` optional; a user that
    /// does not say is taken as active, which is what an account that can sign in looks like.
    pub active: bool,
}

/// One page of `GET /Users`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub total_results: Option<u64>,
    /// As the server sent it: `0` is seen in the wild and read as `1` by the pager.
    pub start_index: Option<u64>,
    pub items_per_page: Option<u64>,
    pub users: Vec<ScimUser>,
    /// Resources that were not objects or had no usable `id`: they are counted so that the
    /// snapshot cannot claim to be complete while missing them.
    pub unusable_resources: u64,
}

/// Why a page could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is JSON but not a SCIM ListResponse: {0}")]
    NotAListResponse(String),
}

fn string_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn u64_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bool_of(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Attribute names are case-insensitive in SCIM (RFC 7643 section 2.1).
fn get<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The email we report: the primary one, else the first, else `userName` when it is an
/// address (1Password's `userName` is the email).
fn pick_email(obj: &serde_json::Map<String, Value>, user_name: Option<&str>) -> Option<String> {
    let emails: Vec<(Option<String>, bool)> = match get(obj, "emails") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|e| e.as_object())
            .map(|e| {
                (
                    string_of(get(e, "value")),
                    bool_of(get(e, "primary")).unwrap_or(false),
                )
            })
            .filter(|(v, _)| v.is_some())
            .collect(),
        _ => Vec::new(),
    };
    emails
        .iter()
        .find(|(_, primary)| *primary)
        .or_else(|| emails.first())
        .and_then(|(v, _)| v.clone())
        .or_else(|| user_name.filter(|u| looks_like_email(u)).map(str::to_owned))
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Reads one user resource; `None` when it has no usable `id`.
pub fn parse_user(v: &Value) -> Option<ScimUser> {
    let obj = v.as_object()?;
    let id = string_of(get(obj, "id"))?;
    let user_name = string_of(get(obj, "userName"));
    let name = get(obj, "name").and_then(Value::as_object);
    let email = pick_email(obj, user_name.as_deref());
    Some(ScimUser {
        id,
        email,
        display_name: string_of(get(obj, "displayName"))
            .or_else(|| name.and_then(|n| string_of(get(n, "formatted")))),
        given_name: name.and_then(|n| string_of(get(n, "givenName"))),
        family_name: name.and_then(|n| string_of(get(n, "familyName"))),
        active: bool_of(get(obj, "active")).unwrap_or(true),
        user_name,
    })
}

/// Reads one page of a `GET /Users` answer.
pub fn parse_list_page(body: &[u8]) -> Result<ListPage, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ParseError::NotAListResponse("top level is not an object".into()))?;
    let resources = get(obj, "Resources");
    let total_results = u64_of(get(obj, "totalResults"));
    let says_list = match get(obj, "schemas") {
        Some(Value::Array(s)) => s.iter().any(|x| x.as_str() == Some(LIST_RESPONSE_SCHEMA)),
        _ => false,
    };
    // A ListResponse is recognised by its schema or, failing that, by its shape. Anything
    // else (a status page, some other JSON API) must not be read as "zero users".
    if !says_list && total_results.is_none() && resources.is_none() {
        return Err(ParseError::NotAListResponse(
            "no ListResponse schema, totalResults or Resources".into(),
        ));
    }
    let mut users = Vec::new();
    let mut unusable = 0;
    match resources {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            users.reserve(items.len());
            for item in items {
                match parse_user(item) {
                    Some(u) => users.push(u),
                    None => unusable += 1,
                }
            }
        }
        Some(_) => {
            return Err(ParseError::NotAListResponse(
                "Resources is not an array".into(),
            ));
        }
    }
    Ok(ListPage {
        total_results,
        start_index: u64_of(get(obj, "startIndex")),
        items_per_page: u64_of(get(obj, "itemsPerPage")),
        users,
        unusable_resources: unusable,
    })
}

/// The useful part of a SCIM Error body (RFC 7644 section 3.12), or of whatever the server
/// sent instead: `status` may be a string or a number, and the body may not be JSON at all.
pub fn error_detail(body: &[u8]) -> String {
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) {
        let detail = string_of(get(&obj, "detail"))
            .or_else(|| string_of(get(&obj, "message")))
            .or_else(|| string_of(get(&obj, "error")));
        let scim_type = string_of(get(&obj, "scimType"));
        return match (detail, scim_type) {
            (Some(d), Some(t)) => format!("{t}: {d}"),
            (Some(d), None) => d,
            (None, Some(t)) => t,
            (None, None) => String::from("no detail given"),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "empty body".into()
    } else if text.starts_with('<') {
        "an HTML page".into()
    } else {
        crate::error::one_line(text, 200)
    }
}

/// The `status` member of a SCIM Error body, whether sent as `"404"` or `404`.
pub fn error_status(body: &[u8]) -> Option<u16> {
    let v: Value = serde_json::from_slice(body).ok()?;
    u64_of(v.as_object().and_then(|o| get(o, "status"))).and_then(|s| u16::try_from(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_recorded_1password_user() {
        let v = json!({"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id":"6NF7ZWCFBBHUXBSGZM5YXY2OSU","userName":"ada@example.com",
            "name":{"formatted":"Ada Lovelace","familyName":"Lovelace","givenName":"Ada"},
            "displayName":"Ada Lovelace","active":true,
            "emails":[{"value":"ada@example.com","primary":true}],
            "preferredLanguage":"en","meta":{"resourceType":"User"}});
        let u = parse_user(&v).unwrap();
        assert_eq!(u.id, "6NF7ZWCFBBHUXBSGZM5YXY2OSU");
        assert_eq!(u.email.as_deref(), Some("ada@example.com"));
        assert_eq!(u.given_name.as_deref(), Some("Ada"));
        assert_eq!(u.family_name.as_deref(), Some("Lovelace"));
        assert_eq!(u.display_name.as_deref(), Some("Ada Lovelace"));
        assert!(u.active);
    }

    #[test]
    fn everything_but_id_may_be_missing_or_null() {
        let u = parse_user(&json!({"id":"X","userName":null,"name":null,"emails":null,
            "active":null,"displayName":null}))
        .unwrap();
        assert_eq!(
            u,
            ScimUser {
                id: "X".into(),
                user_name: None,
                email: None,
                display_name: None,
                given_name: None,
                family_name: None,
                active: true
            }
        );
        assert!(parse_user(&json!({"userName":"a@b.c"})).is_none());
        assert!(parse_user(&json!({"id":null})).is_none());
        assert!(parse_user(&json!({"id":"  "})).is_none());
        assert!(parse_user(&json!("id")).is_none());
    }

    #[test]
    fn email_is_primary_then_first_then_username() {
        let u = parse_user(
            &json!({"id":"1","emails":[{"value":"a@x.io"},{"value":"b@x.io","primary":true}]}),
        )
        .unwrap();
        assert_eq!(u.email.as_deref(), Some("b@x.io"));
        let u = parse_user(&json!({"id":"1","emails":[{"value":"a@x.io"},{"value":"b@x.io"}]}))
            .unwrap();
        assert_eq!(u.email.as_deref(), Some("a@x.io"));
        let u = parse_user(&json!({"id":"1","userName":"c@x.io","emails":[]})).unwrap();
        assert_eq!(u.email.as_deref(), Some("c@x.io"));
        let u = parse_user(&json!({"id":"1","userName":"carol"})).unwrap();
        assert_eq!(u.email, None);
        let u =
            parse_user(&json!({"id":"1","emails":[{"primary":true},{"value":"d@x.io"}]})).unwrap();
        assert_eq!(u.email.as_deref(), Some("d@x.io"));
    }

    #[test]
    fn odd_types_are_tolerated() {
        let u = parse_user(&json!({"id":12,"active":"false","unknown":{"deep":[1,2]}})).unwrap();
        assert_eq!(u.id, "12");
        assert!(!u.active);
        let u = parse_user(&json!({"ID":"abc","USERNAME":"x@y.z"})).unwrap();
        assert_eq!(u.id, "abc");
        assert_eq!(u.user_name.as_deref(), Some("x@y.z"));
    }

    #[test]
    fn list_page_variants() {
        let p = parse_list_page(br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0}"#).unwrap();
        assert_eq!(p.total_results, Some(0));
        assert!(p.users.is_empty());
        let p = parse_list_page(
            br#"{"totalResults":"2","startIndex":0,"Resources":[{"id":"a"},{"nope":1}]}"#,
        )
        .unwrap();
        assert_eq!(p.total_results, Some(2));
        assert_eq!(p.start_index, Some(0));
        assert_eq!(p.items_per_page, None);
        assert_eq!(p.users.len(), 1);
        assert_eq!(p.unusable_resources, 1);
        assert!(matches!(
            parse_list_page(b"<html>"),
            Err(ParseError::NotJson(_))
        ));
        assert!(matches!(
            parse_list_page(br#"{"status":"ok"}"#),
            Err(ParseError::NotAListResponse(_))
        ));
        assert!(matches!(
            parse_list_page(br#"[1]"#),
            Err(ParseError::NotAListResponse(_))
        ));
        assert!(matches!(
            parse_list_page(br#"{"totalResults":1,"Resources":{}}"#),
            Err(ParseError::NotAListResponse(_))
        ));
    }

    #[test]
    fn scim_error_bodies() {
        let b = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"401","detail":"invalid token"}"#;
        assert_eq!(error_status(b), Some(401));
        assert_eq!(error_detail(b), "invalid token");
        assert_eq!(
            error_status(br#"{"status":404,"scimType":"invalidPath"}"#),
            Some(404)
        );
        assert_eq!(
            error_detail(br#"{"status":404,"scimType":"invalidPath"}"#),
            "invalidPath"
        );
        assert_eq!(error_detail(b"Unauthorized\n"), "Unauthorized");
        assert_eq!(error_detail(b""), "empty body");
        assert_eq!(
            error_detail(b"<html><body>502</body></html>"),
            "an HTML page"
        );
        assert_eq!(error_status(b"nope"), None);
    }
}
