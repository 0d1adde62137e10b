//! Vocabulary: how a secret looks in anything mxwarden prints — the one redaction marker that
//! `config show`, errors and logs put where a token, password or key would stand.

/// What stands in place of a secret.
pub const REDACTED: &str = "<redacted>";
