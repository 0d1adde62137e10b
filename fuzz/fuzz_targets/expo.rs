//! Fuzzes the exposition parser: arbitrary bytes (lossy UTF-8) through every entry point and
//! format. It must never panic or hang, and what it reports must hang together: an error's line
//! is a line of the page, and every entry point sees the same samples (a limited parse: as far
//! as it goes).

#![no_main]

use libfuzzer_sys::fuzz_target;

use mxwarden_expo::{self as expo, Event, FamilyFilter, Format};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.split('\n').count();
    for format in [Format::Auto, Format::Text004, Format::OpenMetrics] {
        let mut samples = 0;
        let result = expo::parse_with(&text, format, |event| {
            if let Event::Sample(s) = event {
                samples += 1;
                assert!(!s.name.is_empty());
                for label in s.labels {
                    let _ = expo::unescape(label.name);
                    let _ = expo::unescape(label.value);
                }
            }
        });
        match result {
            Ok(stats) => {
                assert_eq!(stats.samples, samples);
                assert!(stats.lines <= lines);
                assert_ne!(stats.format, Format::Auto);
            }
            Err(e) => assert!(e.line <= lines, "error on line {} of {lines}", e.line),
        }
    }
    let all = expo::parse_samples(&text, None);
    let some = expo::parse_samples(&text, Some(&FamilyFilter::new(["up", "x", "x_total", "h_bucket"])));
    match (&all, &some) {
        (Ok(all), Ok(some)) => {
            assert_eq!(all.total, some.total);
            assert!(some.samples.len() <= all.samples.len());
            assert_eq!(all.samples.len(), all.total);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("the filter changed the verdict"),
    }
    assert_eq!(expo::parse_families(&text).is_ok(), all.is_ok());
    // A limit stops the parse at the first sample over it: never more handed over, the same
    // samples as far as they go, and over the limit exactly when the whole page has more.
    let mut handed = 0;
    let limited = expo::scan_samples(&text, None, 3, |_| handed += 1);
    assert!(handed <= 3);
    match (&all, limited) {
        (Ok(all), Ok(stats)) => {
            assert_eq!((stats.kept, stats.samples), (all.samples.len(), all.total));
            assert_eq!(handed, stats.kept);
        }
        (Ok(all), Err(expo::ScanError::OverLimit { line, .. })) => {
            assert!(all.samples.len() > 3 && handed == 3 && line <= lines)
        }
        (Ok(_), Err(e)) => panic!("the whole page parses, the limited parse says {e}"),
        (Err(_), _) => {}
    }
});
