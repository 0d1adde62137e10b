//! Transport failures in words: connection refused, DNS lookup failed, reset, TLS problems,
//! redirect loops. Walks the error's source chain (reqwest → hyper → io → rustls) so the
//! message names the real cause instead of "error sending request".

use std::error::Error as StdError;
use url::Url;

/// Explains why a request to `url` failed before a complete response arrived.
pub(crate) fn transport(error: &reqwest::Error, url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    let port = url.port_or_known_default().unwrap_or(0);
    if error.is_redirect() {
        return format!("too many redirects starting at {url}");
    }
    for cause in chain(error) {
        if let Some(tls) = rustls_error(cause) {
            return super::tls::describe(tls, host);
        }
    }
    for cause in chain(error) {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let text = match io.kind() {
                ConnectionRefused => format!("connection refused by {host}:{port} (nothing listening?)"),
                ConnectionReset => format!("connection reset by {host}:{port}"),
                ConnectionAborted => format!("connection aborted by {host}:{port}"),
                UnexpectedEof => format!("{host}:{port} closed the connection before answering"),
                HostUnreachable | NetworkUnreachable => format!("{host}:{port} is unreachable ({io})"),
                TimedOut => format!("connection to {host}:{port} timed out"),
                _ => continue,
            };
            return text;
        }
    }
    let all = chain(error).map(ToString::to_string).collect::<Vec<_>>().join(": ");
    let lower = all.to_lowercase();
    if lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
    {
        let reason = chain(error).last().map(ToString::to_string).unwrap_or_default();
        return format!("DNS lookup of {host} failed: {reason}");
    }
    if lower.contains("incomplete message") || lower.contains("connection closed before message completed") {
        return format!("{host}:{port} closed the connection before a complete response");
    }
    if error.is_body() || error.is_decode() {
        return format!("reading the response from {host}:{port} failed: {all}");
    }
    format!("request to {url} failed: {all}")
}

/// The first rustls error in `error`'s source chain, described (see `tls::describe`).
pub(crate) fn tls_in_chain(error: &(dyn StdError + 'static), host: &str) -> Option<String> {
    chain(error).find_map(rustls_error).map(|tls| super::tls::describe(tls, host))
}

/// The error and all its sources, looking inside `io::Error`s (whose `source()` skips the
/// wrapped error itself).
fn chain<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => current.source(),
        };
        Some(current)
    })
}

fn rustls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    error.downcast_ref::<rustls::Error>()
}
