//! Numbers read out of a JSON answer and reported as samples (`probe::spec::JsonSample`), the way
//! json_exporter turns a JSON API into metrics: for rules over admin APIs that have no
//! `/metrics`, such as Synapse's media statistics.

use crate::probe::spec::JsonSample;

/// The value of every wanted sample, and a failure in words for each that cannot be read.
pub(crate) fn read(body: &[u8], wanted: &[JsonSample]) -> (Vec<(String, f64)>, Vec<String>) {
    if wanted.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let document: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return (Vec::new(), vec![format!("the answer is not JSON ({e}), so no samples could be read")]),
    };
    let mut values = Vec::new();
    let mut failures = Vec::new();
    for sample in wanted {
        match sample.path.path.query(&document).exactly_one().map(serde_json::Value::as_f64) {
            Ok(Some(value)) => values.push((sample.name.clone(), value)),
            Ok(None) => failures
                .push(format!("`{}` (for {}) selects a value that is not a number", sample.path.source, sample.name)),
            Err(_) => failures.push(format!("`{}` (for {}) selects no single value", sample.path.source, sample.name)),
        }
    }
    (values, failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::expect::JsonQuery;

    fn wanted(name: &str, path: &str) -> JsonSample {
        JsonSample { name: name.into(), path: JsonQuery::parse(path).unwrap() }
    }

    #[test]
    fn reads_numbers_and_explains_what_it_cannot() {
        let body = br#"{"users": [], "next_token": null, "total": 3, "name": "x", "list": [1, 2]}"#;
        let (values, failures) = read(
            body,
            &[
                wanted("total", "$.total"),
                wanted("name", "$.name"),
                wanted("missing", "$.nope"),
                wanted("many", "$.list[*]"),
            ],
        );
        assert_eq!(values, [("total".to_string(), 3.0)]);
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert!(failures[0].contains("not a number"), "{}", failures[0]);
        assert!(failures[1].contains("no single value"), "{}", failures[1]);
        assert!(failures[2].contains("no single value"), "{}", failures[2]);
    }

    #[test]
    fn a_body_that_is_not_json_is_one_failure() {
        let (values, failures) = read(b"<html>502</html>", &[wanted("total", "$.total")]);
        assert!(values.is_empty());
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("not JSON"), "{}", failures[0]);
    }
}
