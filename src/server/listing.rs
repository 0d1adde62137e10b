//! Which checks the status page and `/api/v1/status` list (pure). A config of a few dozen
//! checks is listed whole, in config order, as always. A larger one (10,000 endpoints) would
//! take seconds and tens of MB per view — each listed check costs four history reads — so a
//! status lists one page of at most `limit` checks (default 100, at most 1,000), failing ones
//! first (down, unknown, maintenance, then up; config order within each), from `offset`; the
//! counts of every state cover all checks. Read by `view::status`; the query string
//! (`?offset=&limit=`) is parsed here into a bounded selection or a reason for a 400.

use serde::Serialize;

/// Checks listed per status unless `limit` says otherwise.
pub(crate) const DEFAULT_LIMIT: usize = 100;

/// The most checks one status lists.
pub(crate) const MAX_LIMIT: usize = 1_000;

/// The checks asked for: at most `limit`, from `offset` in the listing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selection {
    /// Checks skipped.
    pub offset: usize,
    /// Most checks listed.
    pub limit: usize,
}

impl Default for Selection {
    fn default() -> Self {
        Self { offset: 0, limit: DEFAULT_LIMIT }
    }
}

/// What a status lists of all checks, and how many are in each state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Every check of the running config.
    pub total: usize,
    /// Checks up now.
    pub up: usize,
    /// Checks down now.
    pub down: usize,
    /// Checks not run yet, or stale.
    pub unknown: usize,
    /// Checks whose service is in a maintenance window.
    pub maintenance: usize,
    /// The first listed check's position in the listing order.
    pub offset: usize,
    /// Most checks listed.
    pub limit: usize,
    /// Whether the listing puts failing checks first (only when not every check fits).
    pub failing_first: bool,
}

/// Parses `offset` and `limit` from a query string; anything else there is ignored (the page
/// may carry a cache-buster), a bad value is an error naming it.
pub(crate) fn parse(query: Option<&str>) -> Result<Selection, String> {
    let mut sel = Selection::default();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let number = || value.parse::<usize>().map_err(|_| format!("`{key}` must be a whole number, got `{value}`"));
        match key.as_ref() {
            "offset" => sel.offset = number()?,
            "limit" => {
                sel.limit = number()?;
                if sel.limit == 0 || sel.limit > MAX_LIMIT {
                    return Err(format!("`limit` must be from 1 to {MAX_LIMIT}, got {}", sel.limit));
                }
            }
            _ => {}
        }
    }
    Ok(sel)
}

/// How early a state is listed when failing checks come first.
fn rank(state: &str) -> u8 {
    match state {
        "down" => 0,
        "unknown" => 1,
        "maintenance" => 2,
        _ => 3,
    }
}

/// The indexes (into `states`, the state of every check in config order) of the checks to
/// list, and the listing's counts.
pub(crate) fn select(states: &[&str], sel: Selection) -> (Vec<usize>, Listing) {
    let count = |s: &str| states.iter().filter(|x| **x == s).count();
    let mut listing = Listing {
        total: states.len(),
        up: count("up"),
        down: count("down"),
        unknown: count("unknown"),
        maintenance: count("maintenance"),
        offset: sel.offset,
        limit: sel.limit,
        failing_first: states.len() > sel.limit,
    };
    let mut order: Vec<usize> = (0..states.len()).collect();
    if listing.failing_first {
        order.sort_by_key(|&i| rank(states[i]));
    }
    let page: Vec<usize> = order.into_iter().skip(sel.offset).take(sel.limit).collect();
    listing.offset = sel.offset.min(states.len());
    (page, listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_config_is_listed_whole_in_config_order() {
        let (page, l) = select(&["up", "down", "up"], Selection::default());
        assert_eq!(page, [0, 1, 2], "config order, nothing moved");
        assert!(!l.failing_first);
        assert_eq!((l.total, l.up, l.down, l.unknown, l.maintenance), (3, 2, 1, 0, 0));
    }

    #[test]
    fn a_large_config_lists_a_page_failing_first() {
        let mut states = vec!["up"; 250];
        states[7] = "unknown";
        states[200] = "down";
        states[3] = "maintenance";
        states[100] = "down";
        let (page, l) = select(&states, Selection { offset: 0, limit: 5 });
        assert_eq!(page, [100, 200, 7, 3, 0], "down (config order), unknown, maintenance, then up");
        assert!(l.failing_first);
        assert_eq!((l.total, l.down, l.unknown, l.maintenance, l.up), (250, 2, 1, 1, 246));
        let (next, _) = select(&states, Selection { offset: 5, limit: 5 });
        assert_eq!(next, [1, 2, 4, 5, 6], "the next page goes on with the up ones");
        let (past, l) = select(&states, Selection { offset: 10_000, limit: 5 });
        assert!(past.is_empty(), "past the end: nothing, not an error");
        assert_eq!(l.offset, 250);
    }

    #[test]
    fn the_query_is_bounded() {
        assert_eq!(parse(None), Ok(Selection::default()));
        assert_eq!(parse(Some("offset=100&limit=50")), Ok(Selection { offset: 100, limit: 50 }));
        assert_eq!(parse(Some("x=1")), Ok(Selection::default()), "other keys are ignored");
        for bad in ["limit=0", "limit=1001", "offset=-1", "limit=ten", "offset=99999999999999999999999"] {
            assert!(parse(Some(bad)).is_err(), "{bad}");
        }
        assert!(parse(Some("limit=%3Cscript%3E")).unwrap_err().contains("`<script>`"), "the value is quoted as given");
    }
}
