//! authentik's preset. Facts from `stack-reference.md` §4.1 and §4.3: liveness answers 200
//! today and 204 on older releases, so any 2xx is live; readiness is 200 only while the
//! database is reachable; the version API needs an API token.

use super::{PresetCheck, ServiceFacts, join, json_has};
use crate::model::StatusMatcher;
use crate::probe::expect::Expect;
use crate::probe::spec::Target;

/// Every check this preset can produce.
pub(crate) const NAMES: &[&str] = &["live", "ready", "version", "tls", "metrics"];

/// The checks for one authentik.
pub(crate) fn checks(s: &ServiceFacts) -> Vec<PresetCheck> {
    let status_check = |short, url, status| PresetCheck {
        short,
        target: Target::Url(url),
        bearer: None,
        expect: Expect { status: vec![status], ..Expect::default() },
        samples: Vec::new(),
    };
    let mut checks = vec![
        status_check("live", join(&s.url, "/-/health/live/"), StatusMatcher::Class(2)),
        status_check("ready", join(&s.url, "/-/health/ready/"), StatusMatcher::Code(200)),
    ];
    if let Some(token) = &s.api_token {
        checks.push(PresetCheck {
            bearer: Some(token.clone()),
            ..json_has("version", join(&s.url, "/api/v3/admin/version/"), &["$.version_current"])
        });
    }
    checks
}
