//! Synapse's `admin_token`: valid (`/account/whoami` knows it) and an admin's (the admin API
//! answers `/_synapse/admin/v1/users/<user>/admin` only for server admins). Both requests
//! only read.

use super::{Answer, Area, Finding, call, endpoint};
use crate::config::Config;
use crate::probe::spec::{ProbeSpec, Target};
use serde_json::Value;

const CHECK: &str = "admin token";

/// Every Synapse service with an admin token (found through its `admin-token` check).
pub(crate) async fn check_all(http: &reqwest::Client, config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    for spec in &config.checks {
        let (Some(service), ProbeSpec::Http(h)) = (&spec.service, &spec.probe) else { continue };
        if spec.id.0 != format!("{service}/admin-token") {
            continue;
        }
        let (Target::Url(url), Some(token)) = (&h.target, &h.bearer) else { continue };
        let Some(base) = base_of(url) else { continue };
        let whoami =
            call(http.get(endpoint(&base, &["_matrix", "client", "v3", "account", "whoami"])), Some(token), &base)
                .await;
        let admin = match user_of(&whoami) {
            Some(user) => Some(
                call(
                    http.get(endpoint(&base, &["_synapse", "admin", "v1", "users", user, "admin"])),
                    Some(token),
                    &base,
                )
                .await,
            ),
            None => None,
        };
        findings.push(judge(service, &whoami, admin.as_ref()));
    }
    findings
}

/// The homeserver's base URL from the admin-token check's URL.
fn base_of(url: &url::Url) -> Option<url::Url> {
    let path = url.path();
    let cut = path.find("/_synapse/admin/")?;
    let mut base = url.clone();
    base.set_path(&path[..cut]);
    base.set_query(None);
    Some(base)
}

fn user_of(whoami: &Answer) -> Option<&str> {
    match whoami {
        Answer::Http(200, body) => body.get("user_id").and_then(Value::as_str),
        _ => None,
    }
}

/// The verdict on one token from what whoami and the admin API said.
pub(crate) fn judge(service: &str, whoami: &Answer, admin: Option<&Answer>) -> Finding {
    let fail = |detail: String, fix: &str| Finding::fail(Area::Synapse, service, CHECK, detail, fix);
    let Some(user) = user_of(whoami) else {
        return match whoami {
            Answer::Unreachable(why) => fail(
                format!("cannot reach Synapse: {why}"),
                "check the service's `url` and that Synapse is up (`mxwarden check` shows more)",
            ),
            Answer::Http(401, _) => fail(
                format!("Synapse does not know the token ({})", whoami.describe()),
                "the token was logged out or mistyped: log in as a server admin again (or, with MAS, mint one with \
                 `mas-cli manage issue-compatibility-token --yes-i-want-to-grant-synapse-admin-privileges`) and put \
                 the new token in the variable `admin_token` names",
            ),
            other => fail(
                format!("whoami answered {}", other.describe()),
                "check that `url` points at Synapse's client API (not a proxy's error page)",
            ),
        };
    };
    let user = crate::text::escape_controls(user).into_owned();
    match admin {
        Some(Answer::Http(200, body)) if body.get("admin").and_then(Value::as_bool) == Some(true) => {
            Finding::pass(Area::Synapse, service, CHECK, format!("valid, {user} is a server admin"))
        }
        Some(Answer::Http(200, _) | Answer::Http(403, _)) => fail(
            format!("the token is {user}'s, who is not a server admin"),
            &format!(
                "use a server admin's token, or make {user} one: `synadm user modify --admin {user}`, or \
                 `UPDATE users SET admin = 1 WHERE name = '{user}';` in Synapse's database"
            ),
        ),
        Some(other) => fail(
            format!("the token is {user}'s; the admin API answered {}", other.describe()),
            "make sure the reverse proxy passes /_synapse/admin to Synapse for mxwarden's address",
        ),
        None => fail(format!("the token is {user}'s; the admin API was not asked"), "run doctor again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verdicts() {
        let me = Answer::Http(200, json!({"user_id": "@admin:hs"}));
        let cases: Vec<(Answer, Option<Answer>, bool, &str, &str)> = vec![
            (
                me.clone(),
                Some(Answer::Http(200, json!({"admin": true}))),
                true,
                "server admin",
                "an admin's valid token",
            ),
            (
                me.clone(),
                Some(Answer::Http(403, json!({"errcode": "M_FORBIDDEN"}))),
                false,
                "synadm user modify --admin @admin:hs",
                "a user's token: how to promote",
            ),
            (me.clone(), Some(Answer::Http(200, json!({"admin": false}))), false, "not a server admin", "admin false"),
            (me, Some(Answer::Http(404, Value::Null)), false, "reverse proxy", "admin API hidden by a proxy"),
            (
                Answer::Http(401, json!({"errcode": "M_UNKNOWN_TOKEN"})),
                None,
                false,
                "log in as a server admin again",
                "a wrong token",
            ),
            (Answer::Unreachable("connection refused".into()), None, false, "Synapse is up", "down"),
            (Answer::Http(502, Value::Null), None, false, "client API", "a proxy's error page"),
        ];
        for (whoami, admin, ok, needle, why) in cases {
            let f = judge("synapse", &whoami, admin.as_ref());
            assert_eq!(f.outcome == super::super::Outcome::Pass, ok, "{why}: {f:?}");
            let text = format!("{} {}", f.detail, f.fix.clone().unwrap_or_default());
            assert!(text.contains(needle), "{why}: {needle:?} not in {text}");
        }
    }

    #[test]
    fn the_base_url_keeps_a_path_prefix() {
        let u = url::Url::parse("https://hs.example/matrix/_synapse/admin/v2/users?limit=1").unwrap();
        assert_eq!(base_of(&u).unwrap().as_str(), "https://hs.example/matrix");
        assert!(base_of(&url::Url::parse("https://hs.example/health").unwrap()).is_none());
    }
}
