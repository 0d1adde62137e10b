//! Prometheus remote-write 1.0 on the wire: the four protobuf messages of `prompb`
//! (`WriteRequest`, `TimeSeries`, `Label`, `Sample`) derived by hand with prost, and the body
//! a sender POSTs — the encoded request in snappy's block format (not its framed format).
//! Pure: no I/O. The queue (`super`) groups its samples into series and calls [`encode`].

use crate::model::Labels;

/// `prometheus.WriteRequest`: the series of one POST (metadata, field 3, is not sent).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// Each series once, with its samples in time order.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, `__name__` among them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Prometheus's staleness marker: the NaN that says "this series ended here".
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// Whether `name` is a metric name Prometheus accepts: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` is a label name Prometheus accepts: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The protobuf labels of a series: `__name__` and `labels`, sorted by name (a `__name__`
/// among `labels` is replaced by `name`; a label with an empty value is left out, as in
/// Prometheus, where it means "no such label").
pub fn labels(name: &str, labels: &Labels) -> Vec<Label> {
    let mut out = Vec::with_capacity(labels.len() + 1);
    let mut named = false;
    for (k, v) in labels {
        if k == "__name__" || v.is_empty() {
            continue;
        }
        if !named && k.as_str() > "__name__" {
            out.push(Label { name: "__name__".into(), value: name.into() });
            named = true;
        }
        out.push(Label { name: k.clone(), value: v.clone() });
    }
    if !named {
        out.push(Label { name: "__name__".into(), value: name.into() });
    }
    out
}

/// Why a request could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Snappy refused the input (only possible past its ~4 GiB limit).
    #[error("snappy compression failed: {0}")]
    Snappy(#[from] snap::Error),
}

/// The body of one POST: `request` protobuf-encoded, then snappy block-compressed.
pub fn encode(request: &WriteRequest) -> Result<Vec<u8>, EncodeError> {
    let raw = prost::Message::encode_to_vec(request);
    Ok(snap::raw::Encoder::new().compress_vec(&raw)?)
}

/// Why a body could not be read back (the tests' receiver side).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not snappy block format.
    #[error("not snappy: {0}")]
    Snappy(#[from] snap::Error),
    /// Not a WriteRequest.
    #[error("not a WriteRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Reads a body back: what a receiver does. `limit` bounds the decompressed size.
pub fn decode(body: &[u8], limit: usize) -> Result<WriteRequest, DecodeError> {
    let len = snap::raw::decompress_len(body)?;
    if len > limit {
        return Err(DecodeError::Snappy(snap::Error::TooBig { given: len as u64, max: limit as u64 }));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(<WriteRequest as prost::Message>::decode(raw.as_slice())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn name_goes_where_it_sorts() {
        let cases: &[(&[(&str, &str)], &[&str], &str)] = &[
            (&[], &["__name__"], "no labels: the name alone"),
            (&[("check", "a"), ("service", "s")], &["__name__", "check", "service"], "lower case sorts after `__`"),
            (&[("A", "x"), ("_a", "y")], &["A", "__name__", "_a"], "upper case sorts before `_`, `_a` after `__`"),
            (&[("__name__", "evil"), ("z", "1")], &["__name__", "z"], "a scraped `__name__` is replaced"),
            (&[("empty", ""), ("z", "1")], &["__name__", "z"], "an empty value is no label"),
        ];
        for (given, want, why) in cases {
            let got = labels("up", &labels_of(given));
            let names: Vec<&str> = got.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(&names, want, "{why}");
            assert_eq!(got.iter().find(|l| l.name == "__name__").map(|l| l.value.as_str()), Some("up"), "{why}");
            assert!(names.windows(2).all(|w| w[0] < w[1]), "{why}: sorted");
        }
    }

    #[test]
    fn names_prometheus_would_refuse_are_recognised() {
        let cases: &[(&str, bool, bool, &str)] = &[
            // (name, valid metric name, valid label name, why)
            ("up", true, true, "plain"),
            ("job:rate5m", true, false, "colons: metric names only"),
            ("__name__", true, true, "the name label itself"),
            ("9x", false, false, "a leading digit"),
            ("", false, false, "empty"),
            ("my.label", false, false, "a dot"),
            ("ünï", false, false, "non-ASCII"),
        ];
        for (name, metric, label, why) in cases {
            assert_eq!(is_metric_name(name), *metric, "{why}: {name:?}");
            assert_eq!(is_label_name(name), *label, "{why}: {name:?}");
        }
    }

    #[test]
    fn a_request_round_trips_through_protobuf_and_snappy() {
        let request = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: labels("probe_success", &labels_of(&[("check", "synapse/health"), ("service", "synapse")])),
                    samples: vec![
                        Sample { value: 1.0, timestamp: 1_700_000_000_000 },
                        Sample { value: 0.0, timestamp: 1_700_000_015_000 },
                    ],
                },
                TimeSeries {
                    labels: labels("ALERTS", &labels_of(&[("alertname", "Down"), ("alertstate", "firing")])),
                    samples: vec![Sample { value: STALE_NAN, timestamp: -1 }],
                },
            ],
        };
        let body = encode(&request).expect("encodes");
        assert!(snap::raw::decompress_len(&body).is_ok(), "block format, not framed");
        assert_ne!(&body[..4.min(body.len())], b"\xff\x06\x00\x00", "no framed-format stream header");
        let back = decode(&body, 1 << 20).expect("decodes");
        assert_eq!(back.timeseries.len(), 2);
        assert_eq!(back.timeseries[0], request.timeseries[0], "labels, values and timestamps exactly");
        let stale = back.timeseries[1].samples[0];
        assert_eq!(stale.value.to_bits(), STALE_NAN.to_bits(), "the staleness marker's exact bits survive");
        assert_eq!(stale.timestamp, -1, "negative timestamps are int64, not uint");
    }

    #[test]
    fn the_wire_format_is_prompb() {
        // Label{name:"a", value:"b"} is 0a 01 61 12 01 62; Sample{value:1.0, timestamp:2} is
        // 09 <1.0 as little-endian f64> 10 02 — the bytes any remote-write receiver expects.
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label { name: "a".into(), value: "b".into() }],
                samples: vec![Sample { value: 1.0, timestamp: 2 }],
            }],
        };
        let raw = prost::Message::encode_to_vec(&request);
        let mut want = vec![0x0a, 0x15, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x12, 0x0b, 0x09];
        want.extend(1.0f64.to_le_bytes());
        want.extend([0x10, 0x02]);
        assert_eq!(raw, want);
    }

    #[test]
    fn a_body_claiming_to_be_huge_is_refused_before_decompression() {
        let big = encode(&WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label { name: "x".into(), value: "y".repeat(10_000) }],
                samples: vec![],
            }],
        })
        .expect("encodes");
        assert!(decode(&big, 1_000).is_err(), "over the limit");
        assert!(decode(b"\xff\xff\xff\xff\x0f garbage", 1 << 20).is_err(), "garbage is an error, not a panic");
    }
}
