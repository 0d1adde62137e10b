//! The parser's unit tests: every construct of both formats, errors naming their line,
//! and property-based round trips.

use super::*;
use proptest::prelude::*;

fn one(line: &str) -> Result<ParsedSample, ExpoError> {
    let mut p = parse_samples(line, None)?;
    assert_eq!(p.samples.len(), 1, "{line}");
    Ok(p.samples.remove(0))
}

fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn samples_parse_with_every_construct() {
    let cases: &[(&str, &str, Vec<(String, String)>, f64, Option<i64>, &str)] = &[
        ("up 1", "up", l(&[]), 1.0, None, "bare sample"),
        ("x{a=\"b\",c=\"d\"} 2.5", "x", l(&[("a", "b"), ("c", "d")]), 2.5, None, "labels in input order"),
        ("x{c=\"d\",a=\"b\"} 2.5", "x", l(&[("c", "d"), ("a", "b")]), 2.5, None, "order is kept, not sorted"),
        ("x{a=\"b\",} 3", "x", l(&[("a", "b")]), 3.0, None, "a trailing comma is allowed"),
        ("x{a=\"b\" , } 3", "x", l(&[("a", "b")]), 3.0, None, "blanks around a trailing comma"),
        ("x{} 3", "x", l(&[]), 3.0, None, "empty braces"),
        ("x{a=\"\"} 3", "x", l(&[("a", "")]), 3.0, None, "an empty value is a value"),
        ("x{a=\"q\\\"uo\\\\te\\nnl\"} 1", "x", l(&[("a", "q\"uo\\te\nnl")]), 1.0, None, "escapes are undone"),
        ("x{a=\"\\t\\u\"} 1", "x", l(&[("a", "\\t\\u")]), 1.0, None, "unknown escapes stay as written"),
        ("x{a=\"b}c,d=\\\"e\"} 1", "x", l(&[("a", "b}c,d=\"e")]), 1.0, None, "braces and commas inside values"),
        (
            "x{a=\"# {b=\\\"c\\\"} 1\"} 2",
            "x",
            l(&[("a", "# {b=\"c\"} 1")]),
            2.0,
            None,
            "an exemplar lookalike inside a value",
        ),
        ("x{a=\"ünï ✓\"} 1", "x", l(&[("a", "ünï ✓")]), 1.0, None, "unicode values"),
        ("x{a=\"tab\there\"} 1", "x", l(&[("a", "tab\there")]), 1.0, None, "a raw tab inside a value"),
        ("x 1.5e+08", "x", l(&[]), 1.5e8, None, "exponent"),
        ("x 7 1700000000000", "x", l(&[]), 7.0, Some(1_700_000_000_000), "0.0.4 timestamps are ms"),
        ("x 7 -1", "x", l(&[]), 7.0, Some(-1), "negative timestamps"),
        ("x\t7", "x", l(&[]), 7.0, None, "tab separator"),
        ("x \t 7 \t 8", "x", l(&[]), 7.0, Some(8), "runs of blanks"),
        ("  x 7  ", "x", l(&[]), 7.0, None, "leading and trailing blanks"),
        ("x 7\r", "x", l(&[]), 7.0, None, "a CR before the newline"),
        ("x { a = \"b\" } 1", "x", l(&[("a", "b")]), 1.0, None, "blanks around labels"),
        ("x{a=\"b\"}1", "x", l(&[("a", "b")]), 1.0, None, "no blank after `}` (prometheus_client accepts)"),
        ("job:rate5m:sum 1", "job:rate5m:sum", l(&[]), 1.0, None, "colons in metric names"),
        ("_x 1", "_x", l(&[]), 1.0, None, "leading underscore"),
        ("{\"my.metric\", a=\"b\"} 4", "my.metric", l(&[("a", "b")]), 4.0, None, "Prometheus 3 quoted name"),
        ("{\"my.metric\"} 4", "my.metric", l(&[]), 4.0, None, "quoted name alone"),
        ("{a=\"b\", \"my.metric\"} 4", "my.metric", l(&[("a", "b")]), 4.0, None, "quoted name after a label"),
        ("{\"quo\\\"te\"} 4", "quo\"te", l(&[]), 4.0, None, "quoted names are unescaped"),
        ("x{\"my.label\"=\"v\"} 4", "x", l(&[("my.label", "v")]), 4.0, None, "quoted label name"),
        ("{__name__=\"x\", a=\"b\"} 4", "x", l(&[("a", "b")]), 4.0, None, "__name__ names the sample"),
        ("x 1 # {trace_id=\"abc\"} 0.5 123", "x", l(&[]), 1.0, None, "exemplar skipped"),
        ("x{a=\"b\"} 1 # {trace_id=\"abc\"} 0.5", "x", l(&[("a", "b")]), 1.0, None, "exemplar without timestamp"),
        ("x 1 5 # {} 0.5", "x", l(&[]), 1.0, Some(5), "timestamp then exemplar"),
    ];
    for (line, name, labels, value, ts, why) in cases {
        let s = one(line).unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(&s.name, name, "{why}");
        assert_eq!(&s.labels, labels, "{why}");
        assert!(same_value(s.value, *value), "{why}: {}", s.value);
        assert_eq!(s.timestamp_ms, *ts, "{why}");
    }
}

#[test]
fn values_read_like_prometheus_client() {
    let cases: &[(&str, Option<f64>, &str)] = &[
        ("NaN", Some(f64::NAN), "NaN"),
        ("nan", Some(f64::NAN), "any case"),
        ("+Inf", Some(f64::INFINITY), "+Inf as Prometheus writes it"),
        ("Inf", Some(f64::INFINITY), "unsigned Inf"),
        ("+inf", Some(f64::INFINITY), "lower case"),
        ("-Inf", Some(f64::NEG_INFINITY), "-Inf"),
        ("-inf", Some(f64::NEG_INFINITY), "lower case -inf"),
        ("Infinity", Some(f64::INFINITY), "Python's float() reads Infinity"),
        ("0", Some(0.0), "zero"),
        ("-0.0", Some(-0.0), "negative zero keeps its sign"),
        ("11741.0", Some(11741.0), "Synapse writes floats with .0"),
        ("1.30228224e+08", Some(1.30228224e8), "Synapse's exponent form"),
        ("3.0639026165008545", Some(3.0639026165008545), "17 digits go to the full parser"),
        (".5", Some(0.5), "no integer part"),
        ("5.", Some(5.0), "no fraction digits"),
        ("+7", Some(7.0), "explicit plus"),
        ("1E3", Some(1000.0), "capital E"),
        ("1e-400", Some(0.0), "underflow is zero"),
        ("1e400", Some(f64::INFINITY), "overflow is infinity"),
        ("123456789012345678901234567890", Some(1.2345678901234568e29), "long integers round correctly"),
        ("0.1", Some(0.1), "one tenth rounds like std"),
        ("1_000", None, "underscores are refused (as prometheus_client)"),
        ("0x10", None, "no hex"),
        ("1e", None, "exponent without digits"),
        (".", None, "a dot alone"),
        ("", None, "nothing"),
        ("Infinit", None, "a misspelt word"),
        ("١", None, "ASCII digits only (Python would read this Arabic-Indic one)"),
    ];
    for (text, want, why) in cases {
        match (parse_value(text), want) {
            (Some(v), Some(w)) => assert!(same_value(v, *w), "{why}: {text} -> {v}"),
            (None, None) => {}
            (got, _) => panic!("{why}: {text} -> {got:?}"),
        }
    }
}

#[test]
fn malformed_lines_name_the_line_and_what_was_expected() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("ok 1\nx{a=\"b\" 1", 2, "expected `,` or `}`", "unclosed braces"),
        ("x{a=\"b\"", 1, "not closed with `}`", "labels run to the end of the line"),
        ("x{a=b} 1", 1, "must be in double quotes", "unquoted value"),
        ("x{a=\"b} 1", 1, "is not closed", "unterminated value"),
        ("x{a=\"b\\\"} 1", 1, "is not closed", "the closing quote is escaped"),
        ("x{a} 1", 1, "expected `=` after label name `a`", "label without value"),
        ("x{,a=\"b\"} 1", 1, "after `{`, found `,`", "leading comma (Python accepts, Prometheus does not)"),
        ("x{a=\"b\",,c=\"d\"} 1", 1, "another `,`", "double comma"),
        ("x{a=\"b\" c=\"d\"} 1", 1, "expected `,` or `}`", "missing comma"),
        ("x", 1, "has no value", "no value"),
        ("x{a=\"b\"}", 1, "has no value", "no value after labels"),
        ("x abc", 1, "`abc` is not a number", "word for a value"),
        ("x 1 2 3", 1, "unexpected `3`", "a third field (Python takes the last as timestamp)"),
        ("x 1 soon", 1, "`soon` is not a timestamp", "bad timestamp"),
        ("x 1 1.5", 1, "integer milliseconds", "0.0.4 timestamps are integers (Python accepts floats)"),
        ("x 1 99999999999999999999", 1, "is not a timestamp", "timestamp beyond i64"),
        ("1x 1", 1, "`1x` is not a metric name", "bad metric name"),
        ("x-y 1", 1, "`x-y` is not a metric name", "dash in a name"),
        ("1x{a=\"b\"} 1", 1, "`1x` is not a metric name", "bad name before labels (Python does not check)"),
        ("x{1a=\"b\"} 1", 1, "expected a label name, found `1a`", "bad label name"),
        ("x{a:b=\"c\"} 1", 1, "expected `=` after label name `a`", "colon in a label name (Python accepts)"),
        ("x{__x=\"c\"} 1", 1, "is reserved", "reserved label names (as prometheus_client)"),
        ("x{\"\"=\"c\"} 1", 1, "cannot be empty", "empty quoted label name"),
        ("x{a=\"1\",a=\"2\"} 1", 1, "appears twice", "duplicate label"),
        ("x{__name__=\"y\"} 1", 1, "given twice", "a name before braces and __name__"),
        ("x{\"y\"} 1", 1, "given twice", "a name before braces and a quoted one"),
        ("{\"x\", \"y\"} 1", 1, "given twice", "two quoted names"),
        ("{a=\"b\"} 1", 1, "needs a metric name", "no name at all"),
        ("{\"\"} 1", 1, "cannot be empty", "empty quoted name"),
        ("{\"x} 1", 1, "not closed", "unterminated quoted name"),
        ("{\"x\" y} 1", 1, "expected `=`, `,` or `}`", "junk after a quoted name"),
        ("x 1 #", 1, "expected an exemplar", "a bare hash after the value"),
        ("x 1 # note", 1, "expected an exemplar", "a comment after a sample is not allowed"),
        ("x 1 #{a=\"b\"} 1", 1, "expected an exemplar", "no blank between # and {"),
        ("x 1 # {a=\"b\"}", 1, "expected an exemplar", "exemplar without value"),
        ("x 1 # {a=\"b\"} z", 1, "is not a number (an exemplar value)", "exemplar value"),
        ("x 1 # {a=\"b\"} 1 2 3", 1, "after the exemplar", "exemplar with extra fields"),
        ("x 1 # {\"n\"} 1", 1, "cannot carry a metric name", "a name inside exemplar labels"),
        ("# TYPE x wat\nx 1", 1, "`wat` is not a metric type", "bad type"),
        ("# TYPE x Counter", 1, "is not a metric type", "types are case-sensitive"),
        ("# TYPE x counter extra", 1, "`counter extra` is not a metric type", "extra words after the type"),
        ("# TYPE x", 1, "needs a type", "TYPE without a type"),
        ("# TYPE", 1, "needs a metric name and a type", "TYPE alone"),
        ("# HELP 1x text", 1, "`1x` is not a metric name", "bad HELP name"),
        ("# TYPE \"x gauge", 1, "not closed", "unterminated quoted TYPE name"),
    ];
    for (text, line, needle, why) in cases {
        let e = match parse_samples(text, None) {
            Err(e) => e,
            Ok(p) => panic!("{why}: accepted {text:?} as {:?}", p.samples),
        };
        assert_eq!(e.line, *line, "{why}: {e}");
        assert!(e.message.contains(needle), "{why}: {e}");
    }
}

#[test]
fn eof_in_0_0_4_is_a_comment_and_in_openmetrics_a_terminator() {
    let cases: &[(&str, Format, Result<usize, (usize, &str)>, &str)] = &[
        ("x 1\n# EOF\ny 2\n", Format::Auto, Ok(2), "not last: a 0.0.4 comment (as prometheus_client)"),
        (
            "x 1\n# EOF\ny 2\n",
            Format::OpenMetrics,
            Err((3, "only blank lines")),
            "explicit OpenMetrics: text after EOF",
        ),
        ("x 1\n# EOF\n\n  \n", Format::Auto, Ok(1), "blank lines after EOF are fine"),
        ("x 1\n", Format::OpenMetrics, Err((1, "must end with `# EOF`")), "OpenMetrics needs its EOF"),
        ("", Format::OpenMetrics, Err((0, "must end with `# EOF`")), "even when empty"),
        ("x 1\n# EOF", Format::Text004, Ok(1), "explicit 0.0.4: EOF is a comment"),
    ];
    for (text, format, want, why) in cases {
        let got = parse_with(text, *format, |_| {}).map(|s| s.samples).map_err(|e| (e.line, e.message));
        match (got, want) {
            (Ok(n), Ok(w)) => assert_eq!(n, *w, "{why}"),
            (Err((line, msg)), Err((wl, wm))) => {
                assert_eq!(line, *wl, "{why}");
                assert!(msg.contains(wm), "{why}: {msg}");
            }
            (got, _) => panic!("{why}: {got:?}"),
        }
    }
}

#[test]
fn timestamps_follow_the_format() {
    let cases: &[(&str, Option<i64>, &str)] = &[
        ("x 1 1700000000123\n", Some(1_700_000_000_123), "0.0.4: integer milliseconds"),
        ("x 1 +5\n", Some(5), "0.0.4: explicit plus"),
        ("x 1 1700000000.5\n# EOF\n", Some(1_700_000_000_500), "OpenMetrics: seconds with a fraction"),
        ("x 1 1700000000\n# EOF\n", Some(1_700_000_000_000), "OpenMetrics: whole seconds"),
        ("x 1 1700000000.123\n# EOF\n", Some(1_700_000_000_123), "rounded to the nearest ms, not truncated"),
        ("x 1 -1.5\n# EOF\n", Some(-1500), "negative seconds"),
        ("x 1 1.7e9\n# EOF\n", Some(1_700_000_000_000), "exponent seconds"),
        ("x 1 1700000000.5\r\n# EOF\r\n", Some(1_700_000_000_500), "CRLF OpenMetrics"),
    ];
    for (text, want, why) in cases {
        let s = parse_samples(text, None).unwrap_or_else(|e| panic!("{why}: {e}")).samples.remove(0);
        assert_eq!(s.timestamp_ms, *want, "{why}");
    }
    for (text, why) in [
        ("x 1 NaN\n# EOF\n", "NaN is no timestamp"),
        ("x 1 +Inf\n# EOF\n", "nor is infinity"),
        ("x 1 1e300\n# EOF\n", "nor one beyond i64 milliseconds"),
    ] {
        assert!(parse_samples(text, None).is_err(), "{why}");
    }
}

#[test]
fn format_is_detected_from_the_end_and_the_content_type() {
    let cases: &[(&str, Format, &str)] = &[
        ("x 1\n", Format::Text004, "no EOF"),
        ("x 1\n# EOF\n", Format::OpenMetrics, "EOF last"),
        ("x 1\n# EOF", Format::OpenMetrics, "EOF without a final newline"),
        ("x 1\r\n# EOF\r\n\r\n", Format::OpenMetrics, "CRLF and trailing blank lines"),
        ("# EOF\n", Format::OpenMetrics, "EOF alone"),
        ("x 1\n# EOFX\n", Format::Text004, "not exactly EOF"),
        ("x 1 # EOF\n", Format::Text004, "EOF must be its own line"),
    ];
    for (text, want, why) in cases {
        assert_eq!(Format::Auto.resolve(text), *want, "{why}");
    }
    let types: &[(&str, Format, &str)] = &[
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", Format::OpenMetrics, "OpenMetrics"),
        ("Application/OpenMetrics-Text", Format::OpenMetrics, "case-insensitive"),
        ("text/plain; version=0.0.4; charset=utf-8", Format::Auto, "Synapse"),
        ("text/plain;version=1.0.0", Format::Auto, "MAS's OTel exporter"),
        ("", Format::Auto, "none"),
    ];
    for (ct, want, why) in types {
        assert_eq!(Format::from_content_type(ct), *want, "{why}");
    }
}

#[test]
fn comments_and_metadata_are_read_like_prometheus_client() {
    type Meta<'t> = (&'t str, Option<MetricType>, Option<&'t str>, Option<&'t str>);
    let cases: &[(&str, &[Meta<'_>], &str)] = &[
        (
            "# HELP x Some help.\n# TYPE x gauge\n",
            &[("x", Some(MetricType::Gauge), Some("Some help."), None)],
            "HELP and TYPE",
        ),
        ("# HELP x \n", &[("x", None, Some(""), None)], "Synapse's empty HELP with a trailing blank"),
        ("# HELP x\n", &[("x", None, Some(""), None)], "HELP without text"),
        ("# HELP x  two  spaces \n", &[("x", None, Some("two  spaces"), None)], "leading blanks dropped, inner kept"),
        (
            "# HELP x a\\\\b\\nc\\\"d\n",
            &[("x", None, Some("a\\b\nc\\\"d"), None)],
            "0.0.4 HELP escapes: \\\\ and \\n only",
        ),
        ("# HELP x a\\\"b\n# EOF\n", &[("x", None, Some("a\"b"), None)], "OpenMetrics HELP also unescapes \\\""),
        ("#\tTYPE\tx\tcounter\n", &[("x", Some(MetricType::Counter), None, None)], "tabs separate too"),
        (
            "# TYPE x untyped\n# TYPE y unknown\n",
            &[("x", Some(MetricType::Untyped), None, None), ("y", Some(MetricType::Untyped), None, None)],
            "untyped and unknown",
        ),
        (
            "# TYPE x info\n# TYPE y stateset\n# TYPE z gaugehistogram\n",
            &[
                ("x", Some(MetricType::Info), None, None),
                ("y", Some(MetricType::Stateset), None, None),
                ("z", Some(MetricType::GaugeHistogram), None, None),
            ],
            "OpenMetrics types",
        ),
        (
            "# TYPE x_seconds histogram\n# UNIT x_seconds seconds\n",
            &[("x_seconds", Some(MetricType::Histogram), None, Some("seconds"))],
            "UNIT",
        ),
        ("# UNIT 1x seconds\n# UNIT x\n", &[], "malformed UNIT lines are plain comments"),
        ("# TYPE \"my.metric\" gauge\n", &[("my.metric", Some(MetricType::Gauge), None, None)], "quoted name in TYPE"),
        ("# HELP \"a b\" text\n", &[("a b", None, Some("text"), None)], "quoted name with a blank"),
        (
            "#HELP x y\n# some comment\n#\n# HELP\n",
            &[],
            "no blank after #, other words, a bare # and a bare HELP are comments",
        ),
        (
            "#! HELP x y\n",
            &[("x", None, Some("y"), None)],
            "any first word starting with # (prometheus_client's tokenizer)",
        ),
        (
            "# TYPE x counter\n# TYPE x gauge\n",
            &[("x", Some(MetricType::Gauge), None, None)],
            "a repeated TYPE wins (as prometheus_client)",
        ),
    ];
    for (text, want, why) in cases {
        let families = parse_families(text).unwrap_or_else(|e| panic!("{why}: {e}"));
        let got: Vec<Meta<'_>> =
            families.iter().map(|(k, m)| (k.as_str(), m.kind, m.help.as_deref(), m.unit.as_deref())).collect();
        assert_eq!(got, *want, "{why}");
    }
}

#[test]
fn families_come_from_type_and_suffixes() {
    let cases: &[(&str, &[(&str, &str)], &str)] = &[
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 2\nh_count 1\nh_created 1\n",
            &[("h_bucket", "h"), ("h_sum", "h"), ("h_count", "h"), ("h_created", "h")],
            "histogram suffixes",
        ),
        (
            "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 1\n",
            &[("s", "s"), ("s_sum", "s"), ("s_count", "s")],
            "summary: bare name and suffixes",
        ),
        (
            "# TYPE c counter\nc_total 3\nc_created 1\n",
            &[("c_total", "c"), ("c_created", "c")],
            "OpenMetrics-style counter",
        ),
        (
            "# TYPE c_total counter\nc_total 3\n",
            &[("c_total", "c_total")],
            "0.0.4-style counter: the TYPE names the sample",
        ),
        ("# TYPE i info\ni_info 1\n", &[("i_info", "i")], "info"),
        (
            "# TYPE g gaugehistogram\ng_bucket{le=\"1\"} 1\ng_gsum 1\ng_gcount 1\n",
            &[("g_bucket", "g"), ("g_gsum", "g"), ("g_gcount", "g")],
            "gaugehistogram",
        ),
        ("# TYPE g gauge\ng_total 4\n", &[("g_total", "g_total")], "a gauge has no _total suffix"),
        ("# TYPE h histogram\nh_bucketx 1\n", &[("h_bucketx", "h_bucketx")], "a suffix must match exactly"),
        ("loose 5\n", &[("loose", "loose")], "no TYPE: its own family"),
        ("# HELP x help\nx 1\n", &[("x", "x")], "HELP alone opens a family"),
        (
            "# TYPE h histogram\nh_sum 1\nother 2\nh_count 3\n",
            &[("h_sum", "h"), ("other", "other"), ("h_count", "h_count")],
            "another sample ends the family",
        ),
        ("# TYPE h histogram\n# HELP k k\nh_sum 1\n", &[("h_sum", "h_sum")], "so does a HELP for another name"),
        ("# TYPE \"my.h\" histogram\n{\"my.h_sum\"} 1\n", &[("my.h_sum", "my.h")], "quoted names too"),
    ];
    for (text, want, why) in cases {
        let mut got = Vec::new();
        parse(text, |e| {
            if let Event::Sample(s) = e {
                got.push((s.name, s.family));
            }
        })
        .unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(got, *want, "{why}");
    }
}

#[test]
fn unescape_undoes_only_the_three_escapes() {
    let cases: &[(&str, &str, bool, &str)] = &[
        ("plain", "plain", true, "nothing to do borrows"),
        ("a\\\\b", "a\\b", false, "backslash"),
        ("a\\\"b", "a\"b", false, "quote"),
        ("a\\nb", "a\nb", false, "newline"),
        ("a\\tb", "a\\tb", false, "unknown escapes stay"),
        ("a\\", "a\\", false, "a trailing backslash stays"),
        ("\\\\n", "\\n", false, "an escaped backslash before n"),
        ("ü\\\"ü", "ü\"ü", false, "multi-byte text around escapes"),
    ];
    for (raw, want, borrowed, why) in cases {
        let got = unescape(raw);
        assert_eq!(got, *want, "{why}");
        assert_eq!(matches!(got, Cow::Borrowed(_)), *borrowed, "{why}");
    }
}

#[test]
fn the_filter_keeps_allowed_families_and_counts_all() {
    let text = "# HELP a A.\n# TYPE a counter\na_total 1\nb 2\n# TYPE c histogram\nc_bucket{le=\"+Inf\"} 3\nc_sum 4\n\
                # TYPE d histogram\nd_bucket{le=\"+Inf\"} 3\nd_count 3\n# TYPE e gauge\n";
    let filter = FamilyFilter::new(["a", "c_bucket", "d", "e"]);
    let parsed = parse_samples(text, Some(&filter)).unwrap();
    let names: Vec<&str> = parsed.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a_total", "c_bucket", "d_bucket", "d_count"], "a family or an exact sample name");
    assert_eq!(parsed.total, 6, "every sample line is counted");
    let families: Vec<&str> = parsed.families.keys().map(String::as_str).collect();
    assert_eq!(families, ["a", "d", "e"], "metadata only for allowed families, sample-less ones included");
    assert_eq!(parsed.families["a"].help.as_deref(), Some("A."));
    let all = parse_samples(text, None).unwrap();
    assert_eq!((all.samples.len(), all.families.len()), (6, 4), "no filter keeps everything");
    let long = "l".repeat(300);
    let filter = FamilyFilter::new([long.clone(), "b".into()]);
    let text = format!("{long} 1\n{}x 2\nb 3\n", "l".repeat(299));
    let kept: Vec<f64> = parse_samples(&text, Some(&filter)).unwrap().samples.iter().map(|s| s.value).collect();
    assert_eq!(kept, [1.0, 3.0], "names of 256 bytes and more bypass the length prefilter");
}

#[test]
fn duplicate_labels_are_found_in_long_label_sets() {
    let many: Vec<String> = (0..40).map(|i| format!("l{i}=\"v\"")).collect();
    let ok = format!("x{{{}}} 1", many.join(","));
    assert_eq!(one(&ok).unwrap().labels.len(), 40, "40 distinct labels");
    let dup = format!("x{{{},l7=\"w\"}} 1", many.join(","));
    assert!(parse_samples(&dup, None).unwrap_err().message.contains("`l7` appears twice"), "the sorted check");
}

#[test]
fn over_long_lines_are_refused() {
    let text = format!("ok 1\nx{{a=\"{}\"}} 1\n", "v".repeat(MAX_LINE));
    let e = parse_samples(&text, None).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("limit"), "{e}");
}

#[test]
fn limits_stop_the_parse_at_the_first_kept_sample_over_them() {
    // Lines: 1 TYPE a, 2 a 1, 3 b 1, 4 a 2, 5 a 3, 6 a malformed line.
    let page = "# TYPE a gauge\na{i=\"1\"} 1\nb 1\na{i=\"2\"} 2\na{i=\"3\"} 3\n!!! not a sample\n";
    let only_a = FamilyFilter::new(["a"]);
    let clean = "# TYPE a gauge\na 1\nb 1\na{i=\"2\"} 2\n";
    type Want = Result<(usize, usize), (usize, usize)>; // Ok((kept, samples)) or Err((limit, line))
    let cases: &[(&str, Option<&FamilyFilter>, usize, Want, &str)] = &[
        (page, Some(&only_a), 2, Err((2, 5)), "the third `a` is over a limit of 2: stop there, before the bad line"),
        (page, Some(&only_a), 0, Err((0, 2)), "a limit of 0 stops at the first kept sample"),
        (page, None, 3, Err((3, 5)), "without a filter every sample counts, `b` too"),
        (clean, Some(&only_a), 2, Ok((2, 3)), "exactly at the limit is fine; `b` is not kept, so not counted"),
        (clean, None, 3, Ok((3, 3)), "all kept, at the limit"),
        (clean, Some(&FamilyFilter::new(["zzz"])), 0, Ok((0, 3)), "nothing kept: a limit of 0 never trips"),
        (clean, Some(&only_a), usize::MAX, Ok((2, 3)), "no limit in practice"),
    ];
    for (text, filter, limit, want, why) in cases {
        let mut handed = 0;
        let got = scan_samples(text, *filter, *limit, |_| handed += 1);
        match (got, want) {
            (Ok(stats), Ok((kept, samples))) => {
                assert_eq!((stats.kept, stats.samples, handed), (*kept, *samples, *kept), "{why}");
            }
            (Err(ScanError::OverLimit { limit: l, line }), Err((want_limit, want_line))) => {
                assert_eq!((l, line), (*want_limit, *want_line), "{why}");
                assert_eq!(handed, *limit, "{why}: exactly `limit` samples were handed over");
            }
            (got, _) => panic!("{why}: got {got:?}, wanted {want:?}"),
        }
        // The owned variant stops at the same place and owns at most `limit` samples.
        match (parse_samples_limited(text, *filter, *limit), want) {
            (Ok(p), Ok((kept, samples))) => assert_eq!((p.samples.len(), p.total), (*kept, *samples), "{why}"),
            (Err(ScanError::OverLimit { line, .. }), Err((_, want_line))) => assert_eq!(line, *want_line, "{why}"),
            (got, _) => panic!("{why} (owned): got {got:?}"),
        }
    }
    // Without a limit in reach, a malformed page is still an error, naming its line.
    let e = scan_samples(page, Some(&only_a), 10, |_| {}).unwrap_err();
    assert_eq!(e, ScanError::Malformed(ExpoError { line: 6, message: "`!!!` is not a metric name".into() }));
}

#[test]
fn the_limit_bounds_what_a_huge_page_makes_the_caller_own() {
    let page: String = (0..200_000).map(|i| format!("x{{i=\"{i}\"}} {i}\n")).collect();
    let mut owned = Vec::new();
    let e = scan_samples(&page, Some(&FamilyFilter::new(["x"])), 1000, |s| owned.push(ParsedSample::from(s)));
    assert_eq!(e, Err(ScanError::OverLimit { limit: 1000, line: 1001 }));
    assert_eq!(owned.len(), 1000, "never more than the limit");
    assert_eq!(owned[999].labels, l(&[("i", "999")]), "handed over in page order, unescaped on request");
}

#[test]
fn parse_until_stops_where_the_callback_says() {
    let text = "# HELP a first\n# TYPE a gauge\na 1\n# HELP b second\nb 2\n";
    let mut seen = Vec::new();
    let stats = parse_until(text, Format::Auto, |e| {
        let help = matches!(e, Event::Help { text: "second", .. });
        seen.push(format!("{e:?}"));
        if help { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .unwrap();
    assert!(stats.stopped, "stopped on a HELP");
    assert_eq!((stats.lines, stats.samples, seen.len()), (4, 1, 4), "{seen:?}");
    let all = parse_until(text, Format::Auto, |_| ControlFlow::Continue(())).unwrap();
    assert!(!all.stopped);
    assert_eq!((all.lines, all.samples), (5, 2));
}

#[test]
fn error_messages_never_carry_control_characters_from_the_page() {
    let cases: &[(&str, &str, &str)] = &[
        ("\u{1b}[2Jx 1\n", "`\\x1b[2Jx` is not a metric name", "an escape sequence before the name"),
        ("x{a=\"b\"} 1\u{7}\n", "`1\\x07` is not a number", "a bell in the value"),
        ("x\r{a=\"b\"} 1\n", "`x\\r` is not a metric name", "a carriage return inside a line"),
        ("x{a=\"b\"} 1 2 \u{202e}evil\n", "unexpected `\\u{202e}evil`", "a right-to-left override"),
    ];
    for (text, needle, why) in cases {
        let e = parse_samples(text, None).unwrap_err();
        assert!(e.message.contains(needle), "{why}: {e}");
        assert!(!e.message.chars().any(|c| c.is_control() || c == '\u{202e}'), "{why}: {:?}", e.message);
    }
    let long = format!("{} 1\n", "é".repeat(10_000));
    let e = parse_samples(&long, None).unwrap_err();
    assert_eq!(e.message.chars().count(), MAX_MESSAGE + 1, "cut to the limit, plus the ellipsis: {e}");
    assert!(e.message.ends_with('…'));
    assert_eq!(printable_message("a\tb\u{0}c\u{1f}\u{7f}\u{85}\u{2028}"), "a\\tb\\0c\\x1f\\x7f\\u{85}\\u{2028}");
    assert_eq!(printable_message("plain ünï ✓"), "plain ünï ✓");
}

#[test]
fn the_real_synapse_page_parses_completely() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/synapse-metrics-sample.txt");
    let text = std::fs::read_to_string(path).expect("tests/data holds the real Synapse sample");
    let parsed = parse_samples(&text, None).unwrap();
    assert_eq!(parsed.total, 2439, "the sample has 2,439 sample lines");
    assert_eq!(parsed.families.len(), 207, "207 families, 94 of them without samples");
    let kinds = |k| parsed.families.values().filter(|m| m.kind == Some(k)).count();
    assert_eq!((kinds(MetricType::Counter), kinds(MetricType::Gauge), kinds(MetricType::Histogram)), (105, 81, 21));
    let crlf = text.replace('\n', "\r\n");
    assert_eq!(parse_samples(&crlf, None).unwrap().samples, parsed.samples, "CRLF reads the same");
}

// ---- property tests ----

/// A generated family, rendered to text and parsed back.
#[derive(Debug, Clone)]
struct GenFamily {
    name: String,
    quoted: bool,
    kind: MetricType,
    help: Option<String>,
    samples: Vec<GenSample>,
}

#[derive(Debug, Clone)]
struct GenSample {
    suffix: &'static str,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
    value_style: u8,
    blanks: u8,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_value(v: f64, style: u8) -> String {
    if v.is_nan() {
        return ["NaN", "nan"][usize::from(style % 2)].into();
    }
    if v.is_infinite() {
        let pos = ["+Inf", "Inf", "+inf", "inf"];
        let neg = ["-Inf", "-inf"];
        return if v > 0.0 { pos[usize::from(style % 4)] } else { neg[usize::from(style % 2)] }.into();
    }
    if style.is_multiple_of(3) && v.fract() == 0.0 && v.abs() < 1e15 && v.is_sign_positive() {
        return format!("{}", v as i64);
    }
    format!("{v:?}")
}

fn kinds() -> impl Strategy<Value = MetricType> {
    prop_oneof![
        Just(MetricType::Counter),
        Just(MetricType::Gauge),
        Just(MetricType::Histogram),
        Just(MetricType::Summary),
        Just(MetricType::Untyped),
        Just(MetricType::Info),
        Just(MetricType::GaugeHistogram),
    ]
}

fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z][a-zA-Z0-9_]{0,6}",
        1 => "_[a-zA-Z0-9][a-zA-Z0-9_]{0,4}",
        1 => "[a-z]{1,3}[.\\-/ ][a-z]{1,3}",
    ]
}

fn nasty_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9._:/-]{0,12}",
        3 => "[\"\\\\\n{},=# \t}a-zé✓]{0,10}",
        1 => any::<String>(),
    ]
}

fn gen_sample() -> impl Strategy<Value = GenSample> {
    (
        proptest::collection::vec((label_name(), nasty_value()), 0..4),
        prop_oneof![4 => any::<f64>(), 1 => Just(f64::NAN), 1 => Just(f64::INFINITY), 1 => Just(f64::NEG_INFINITY), 2 => (-1000i32..1000).prop_map(f64::from)],
        proptest::option::of(any::<i64>()),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(mut labels, value, timestamp_ms, value_style, blanks)| {
            let mut seen = HashSet::new();
            labels.retain(|(k, _)| seen.insert(k.clone()));
            GenSample { suffix: "", labels, value, timestamp_ms, value_style, blanks }
        })
}

fn gen_family() -> impl Strategy<Value = GenFamily> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
        prop_oneof![9 => Just(false), 1 => Just(true)],
        kinds(),
        proptest::option::of(nasty_value()),
        proptest::collection::vec((gen_sample(), any::<prop::sample::Index>()), 0..5),
    )
        .prop_map(|(name, quoted, kind, help, samples)| {
            let name = if quoted { format!("{name}.dotted \"q\"") } else { name };
            let all = ["", "_total", "_created", "_bucket", "_sum", "_count", "_gsum", "_gcount", "_info"];
            let suffixes: Vec<&'static str> =
                all.into_iter().filter(|s| s.is_empty() || kind.allows_suffix(s)).collect();
            let samples = samples
                .into_iter()
                .map(|(mut s, pick)| {
                    s.suffix = suffixes[pick.index(suffixes.len())];
                    s
                })
                .collect();
            GenFamily { name, quoted, kind, help, samples }
        })
}

fn blank(style: u8) -> &'static str {
    [" ", "\t", "  ", " \t"][usize::from(style % 4)]
}

fn render(families: &[GenFamily], crlf: bool, openmetrics: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    for f in families {
        let name = if f.quoted { format!("\"{}\"", escape(&f.name)) } else { f.name.clone() };
        if let Some(help) = &f.help {
            out += &format!("# HELP {name} {}{nl}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        }
        out += &format!("# TYPE {name} {}{nl}", f.kind.as_str());
        out += &format!("# just a comment{nl}{nl}");
        for s in &f.samples {
            let b = blank(s.blanks);
            let mut labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| {
                    let k = if k.contains(['.', '-', '/', ' ']) { format!("\"{k}\"") } else { k.clone() };
                    format!("{k}=\"{}\"", escape(v))
                })
                .collect();
            let sample_name = format!("{}{}", f.name, s.suffix);
            let head = if f.quoted {
                labels.insert(0, format!("\"{}\"", escape(&sample_name)));
                String::new()
            } else {
                sample_name
            };
            let trailing = if s.blanks & 0x10 != 0 && !labels.is_empty() { "," } else { "" };
            let braces = if labels.is_empty() && !f.quoted && s.blanks & 0x20 == 0 {
                String::new()
            } else {
                format!("{{{}{trailing}}}", labels.join(if s.blanks & 0x40 != 0 { ", " } else { "," }))
            };
            out += &format!("{head}{braces}{b}{}", render_value(s.value, s.value_style));
            if let Some(ts) = s.timestamp_ms {
                if openmetrics {
                    let ts = ts / 1000 % 100_000_000_000;
                    out += &format!("{b}{}.{:03}", ts / 1000, (ts % 1000).abs());
                } else {
                    out += &format!("{b}{ts}");
                }
            }
            out += nl;
        }
    }
    if openmetrics {
        out += &format!("# EOF{nl}");
    }
    out
}

fn expected_ts(ts: Option<i64>, openmetrics: bool) -> Option<i64> {
    ts.map(|ts| if openmetrics { ts / 1000 % 100_000_000_000 } else { ts })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn rendered_families_parse_back(
        families in proptest::collection::vec(gen_family(), 0..6),
        crlf in any::<bool>(),
        openmetrics in any::<bool>(),
    ) {
        let text = render(&families, crlf, openmetrics);
        let parsed = parse_samples(&text, None).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let want: Vec<(String, &GenSample)> =
            families.iter().flat_map(|f| f.samples.iter().map(move |s| (format!("{}{}", f.name, s.suffix), s))).collect();
        prop_assert_eq!(parsed.samples.len(), want.len());
        for (got, (name, s)) in parsed.samples.iter().zip(&want) {
            prop_assert_eq!(&got.name, name);
            prop_assert_eq!(&got.labels, &s.labels);
            prop_assert!(same_value(got.value, s.value), "{} vs {}", got.value, s.value);
            prop_assert_eq!(got.timestamp_ms, expected_ts(s.timestamp_ms, openmetrics));
        }
        // Families: every sample belongs to the family whose TYPE precedes it.
        let mut fams = Vec::new();
        parse(&text, |e| if let Event::Sample(s) = e { fams.push(unescape(s.family).into_owned()) }).unwrap();
        let want_fams: Vec<&String> = families.iter().flat_map(|f| f.samples.iter().map(move |_| &f.name)).collect();
        prop_assert_eq!(fams.iter().collect::<Vec<_>>(), want_fams);
        // Metadata.
        let meta = parse_families(&text).unwrap();
        for f in &families {
            prop_assert!(meta.contains_key(&f.name), "{} missing", f.name);
        }
    }

    #[test]
    fn a_limit_keeps_a_prefix_of_what_no_limit_keeps(
        families in proptest::collection::vec(gen_family(), 0..6),
        limit in 0usize..12,
    ) {
        let text = render(&families, false, false);
        let all = parse_samples(&text, None).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let mut handed = Vec::new();
        match scan_samples(&text, None, limit, |s| handed.push(ParsedSample::from(s))) {
            Ok(stats) => {
                prop_assert!(all.samples.len() <= limit);
                prop_assert_eq!(stats.kept, all.samples.len());
            }
            Err(ScanError::OverLimit { .. }) => prop_assert!(all.samples.len() > limit),
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
        prop_assert!(handed.len() <= limit);
        for (got, want) in handed.iter().zip(&all.samples) {
            prop_assert_eq!((&got.name, &got.labels), (&want.name, &want.labels), "the same samples, in page order");
            prop_assert!(same_value(got.value, want.value));
        }
    }

    #[test]
    fn fast_decimal_matches_std(
        int in "[0-9]{0,20}", frac in proptest::option::of("[0-9]{0,20}"),
        exp in proptest::option::of(-30i32..30), sign in "[-+]?",
    ) {
        let mut s = format!("{sign}{int}");
        if let Some(f) = frac { s += "."; s += &f; }
        if let Some(e) = exp { s += &format!("e{e}"); }
        let std: Option<f64> = s.parse().ok();
        let ours = parse_value(&s);
        prop_assert_eq!(ours.map(f64::to_bits), std.map(f64::to_bits), "{}", s);
    }

    #[test]
    fn swar_scans_match_byte_loops(
        bytes in proptest::collection::vec(prop_oneof![
            4 => prop::sample::select(b"aZz09_\"\\=,{} \x7f\x80\xff`@[".to_vec()),
            1 => any::<u8>(),
        ], 0..48),
        from in 0usize..48,
    ) {
        let from = from.min(bytes.len());
        let label_end = (from..bytes.len()).find(|&j| !is(bytes[j], LABEL_CHAR)).unwrap_or(bytes.len());
        prop_assert_eq!(skip_label_chars(&bytes, from), label_end);
        let mut j = from;
        let quote = loop {
            match bytes.get(j) {
                None => break None,
                Some(b'"') => break Some(j),
                Some(b'\\') => j += 2,
                Some(_) => j += 1,
            }
        };
        prop_assert_eq!(quoted_end(&bytes, from), quote);
    }

    #[test]
    fn every_f64_round_trips(v in any::<f64>()) {
        let s = format!("{v:?}");
        let back = parse_value(&s).unwrap();
        prop_assert!(same_value(back, v), "{} -> {}", s, back);
    }

    #[test]
    fn garbage_never_panics(text in "[a-z_{}\"=,#\\\\ \t\r\n0-9.+\\-EOFHELPTYPE]{0,200}") {
        match parse(&text, |_| {}) {
            Ok(stats) => prop_assert!(stats.lines <= text.len() + 1),
            Err(e) => prop_assert!(e.line >= 1 && e.line <= text.split('\n').count(), "{e}"),
        }
    }

    #[test]
    fn arbitrary_unicode_never_panics(text in any::<String>()) {
        let _ = parse(&text, |_| {});
        let _ = parse_with(&text, Format::OpenMetrics, |_| {});
    }
}
