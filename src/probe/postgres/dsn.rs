//! The connection string of a `kind: postgres` service, parsed the way libpq reads it: a URI
//! (`postgresql://user:password@host:5432/db?sslmode=require`, what Render's `DATABASE_URL`
//! holds) or keyword/value pairs (`host=db user=monitor dbname=matrix`). Parsed once by
//! `config::build` (so a bad DSN is a config error with its line), turned into sqlx connect
//! options by the probe and `pg report`. The DSN may hold a password: it is kept as a
//! `SecretString`, errors never echo the text, and [`PgTarget::describe`] redacts it.

use secrecy::{ExposeSecret, SecretString};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::path::PathBuf;
use std::time::Duration;

/// libpq's `sslmode`, minus `allow` (sqlx cannot try plain text first and TLS second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, certificate not verified (libpq's default).
    Prefer,
    /// TLS or fail; the certificate is not verified (as in libpq without a root certificate).
    Require,
    /// TLS, certificate signed by a trusted CA (`sslrootcert` or the Mozilla roots).
    VerifyCa,
    /// TLS, trusted CA and the host name matches the certificate.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            "allow" => Err("sslmode `allow` (plain text first, then TLS) is not supported; use `prefer`".into()),
            other => {
                Err(format!("unknown sslmode `{other}`; expected disable, prefer, require, verify-ca or verify-full"))
            }
        }
    }

    /// The name as written in a DSN.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgHost {
    /// A host name or IP address.
    Tcp(String),
    /// A directory holding the Unix socket `.s.PGSQL.<port>`.
    Socket(PathBuf),
}

/// A parsed connection string. `Debug` shows the password as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// Host or socket directory. Default: the socket directory `/var/run/postgresql`.
    pub host: PgHost,
    /// Port. Default 5432.
    pub port: u16,
    /// Role name.
    pub user: String,
    /// Password, from the DSN or `password_file`.
    pub password: Option<SecretString>,
    /// The database named in the DSN (default: the user name, as libpq).
    pub database: String,
    /// TLS mode. Default `prefer`; ignored on Unix sockets, as libpq does.
    pub sslmode: SslMode,
    /// `sslrootcert`: CA certificates (PEM) to trust.
    pub sslrootcert: Option<PathBuf>,
    /// `sslcert`: client certificate (PEM).
    pub sslcert: Option<PathBuf>,
    /// `sslkey`: client key (PEM).
    pub sslkey: Option<PathBuf>,
    /// `application_name` seen in `pg_stat_activity`. Default `mxwarden`.
    pub application_name: String,
    /// `connect_timeout`, when given.
    pub connect_timeout: Option<Duration>,
}

/// Parameters a DSN may carry.
const PARAMS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "connect_timeout",
];

/// Builds a target as libpq fills defaults.
#[derive(Default)]
struct Parts {
    host: Option<String>,
    port: Option<String>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    application_name: Option<String>,
    connect_timeout: Option<String>,
}

impl Parts {
    fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        let slot = match key {
            "host" | "hostaddr" => &mut self.host,
            "port" => &mut self.port,
            "dbname" => &mut self.dbname,
            "user" => &mut self.user,
            "password" => &mut self.password,
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            "application_name" => &mut self.application_name,
            "connect_timeout" => &mut self.connect_timeout,
            other => {
                let hint = crate::units::closest(other, PARAMS.iter().copied())
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                return Err(format!("unknown connection parameter `{other}`{hint}; supported: {}", PARAMS.join(", ")));
            }
        };
        *slot = Some(value);
        Ok(())
    }

    fn finish(self) -> Result<PgTarget, String> {
        let host = match self.host.filter(|h| !h.is_empty()) {
            None => PgHost::Socket(PathBuf::from("/var/run/postgresql")),
            Some(h) if h.starts_with('/') => PgHost::Socket(PathBuf::from(h)),
            Some(h) if h.contains(',') => {
                return Err("several hosts (failover lists) are not supported; name one host".into());
            }
            Some(h) => PgHost::Tcp(h),
        };
        let port = match self.port.filter(|p| !p.is_empty()) {
            None => 5432,
            Some(p) => {
                p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("port `{p}` is not a port number"))?
            }
        };
        let user = self
            .user
            .filter(|u| !u.is_empty())
            .ok_or("no user; expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE or `user=…`".to_string())?;
        let sslmode = match self.sslmode {
            None => SslMode::Prefer,
            Some(m) => SslMode::parse(&m)?,
        };
        let connect_timeout = match self.connect_timeout.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => match t.parse::<u64>() {
                Ok(0) => None, // libpq: 0 means wait forever; our own deadline still applies
                Ok(s) => Some(Duration::from_secs(s.max(2))),
                Err(_) => return Err(format!("connect_timeout `{t}` is not a number of seconds")),
            },
        };
        Ok(PgTarget {
            host,
            port,
            database: self.dbname.filter(|d| !d.is_empty()).unwrap_or_else(|| user.clone()),
            user,
            password: self.password.map(SecretString::from),
            sslmode,
            sslrootcert: self.sslrootcert.map(PathBuf::from),
            sslcert: self.sslcert.map(PathBuf::from),
            sslkey: self.sslkey.map(PathBuf::from),
            application_name: self.application_name.unwrap_or_else(|| "mxwarden".into()),
            connect_timeout,
        })
    }
}

impl PgTarget {
    /// Parses a libpq connection string. The message of an error never contains the text.
    pub fn parse(dsn: &str) -> Result<Self, String> {
        let dsn = dsn.trim();
        if dsn.is_empty() {
            return Err("is empty; expected e.g. postgresql://monitor@db.example.org:5432/matrix (is its environment variable empty?)".into());
        }
        if dsn.starts_with("postgresql://") || dsn.starts_with("postgres://") {
            Self::parse_uri(dsn)
        } else if dsn.contains('=') {
            Self::parse_keywords(dsn)
        } else {
            Err("is neither a postgresql:// URI nor `key=value` pairs (the value is not shown: it may hold a password)"
                .into())
        }
    }

    fn parse_uri(dsn: &str) -> Result<Self, String> {
        let url = url::Url::parse(dsn).map_err(|e| {
            format!("is not a valid postgresql:// URI ({e}); the value is not shown: it may hold a password")
        })?;
        let decode = |s: &str, what: &str| {
            percent_decode(s).ok_or_else(|| format!("the {what} is not valid percent-encoded UTF-8"))
        };
        let mut parts = Parts::default();
        if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
            let host = decode(host, "host")?;
            parts.host = Some(host.trim_start_matches('[').trim_end_matches(']').to_string());
        }
        if let Some(port) = url.port() {
            parts.port = Some(port.to_string());
        }
        if !url.username().is_empty() {
            parts.user = Some(decode(url.username(), "user name")?);
        }
        if let Some(password) = url.password() {
            parts.password = Some(decode(password, "password")?);
        }
        let path = url.path().trim_start_matches('/');
        if !path.is_empty() {
            parts.dbname = Some(decode(path, "database name")?);
        }
        for (key, value) in url.query_pairs() {
            parts.set(&key, value.into_owned())?;
        }
        parts.finish()
    }

    fn parse_keywords(dsn: &str) -> Result<Self, String> {
        let mut parts = Parts::default();
        let mut rest = dsn.trim_start();
        while !rest.is_empty() {
            let eq = rest.find('=').ok_or("expected `key=value` pairs separated by blanks")?;
            let key = rest[..eq].trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err("expected `key=value` pairs separated by blanks".into());
            }
            rest = rest[eq + 1..].trim_start();
            let mut value = String::new();
            if let Some(quoted) = rest.strip_prefix('\'') {
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, next)) = chars.next() {
                                value.push(next);
                            }
                        }
                        '\'' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let end = end.ok_or_else(|| format!("the value of `{key}` has no closing quote"))?;
                rest = &quoted[end..];
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                value.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            parts.set(key, value)?;
            rest = rest.trim_start();
        }
        parts.finish()
    }

    /// Sets the password from `password_file`.
    pub(crate) fn with_password(mut self, password: SecretString) -> Self {
        self.password = Some(password);
        self
    }

    /// `host:port` (or the socket path), for messages and the `instance` label.
    pub(crate) fn instance(&self) -> String {
        match &self.host {
            PgHost::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            PgHost::Tcp(h) => format!("{h}:{}", self.port),
            PgHost::Socket(dir) => format!("{}/.s.PGSQL.{}", dir.display(), self.port),
        }
    }

    /// The DSN for people, password redacted:
    /// `postgresql://monitor:<redacted>@db:5432/matrix?sslmode=require`.
    pub(crate) fn describe(&self) -> String {
        self.describe_db(&self.database)
    }

    /// [`PgTarget::describe`] for another database of the same server.
    pub(crate) fn describe_db(&self, database: &str) -> String {
        let password = if self.password.is_some() { format!(":{}", crate::redact::REDACTED) } else { String::new() };
        match &self.host {
            PgHost::Tcp(_) => format!(
                "postgresql://{}{password}@{}/{database}?sslmode={}",
                self.user,
                self.instance(),
                self.sslmode.as_str()
            ),
            PgHost::Socket(dir) => {
                format!("postgresql://{}{password}@/{database}?host={}&port={}", self.user, dir.display(), self.port)
            }
        }
    }

    /// sqlx options for `database` on this server. Like libpq, what the DSN leaves unset
    /// (`PGPASSWORD`, `PGSSLROOTCERT`, `PGOPTIONS`) may come from the environment.
    pub(crate) fn connect_options(&self, database: &str) -> PgConnectOptions {
        let mut options = PgConnectOptions::new_without_pgpass()
            .port(self.port)
            .username(&self.user)
            .database(database)
            .application_name(&self.application_name)
            .disable_statement_logging();
        options = match &self.host {
            PgHost::Tcp(host) => options.host(host).ssl_mode(match self.sslmode {
                SslMode::Disable => PgSslMode::Disable,
                SslMode::Prefer => PgSslMode::Prefer,
                SslMode::Require => PgSslMode::Require,
                SslMode::VerifyCa => PgSslMode::VerifyCa,
                SslMode::VerifyFull => PgSslMode::VerifyFull,
            }),
            // The server speaks no TLS on Unix sockets; libpq ignores sslmode there.
            PgHost::Socket(dir) => options.socket(dir).ssl_mode(PgSslMode::Disable),
        };
        if let Some(password) = &self.password {
            options = options.password(password.expose_secret());
        }
        if let Some(path) = &self.sslrootcert {
            options = options.ssl_root_cert(path);
        }
        if let Some(path) = &self.sslcert {
            options = options.ssl_client_cert(path);
        }
        if let Some(path) = &self.sslkey {
            options = options.ssl_client_key(path);
        }
        options
    }
}

/// Decodes `%XX` escapes; `None` when the result is not UTF-8 or an escape is broken.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(t: &PgTarget) -> String {
        format!(
            "{:?} {} {} {} pw={} {} {:?}",
            t.host,
            t.port,
            t.user,
            t.database,
            t.password.as_ref().map_or("-".to_string(), |p| p.expose_secret().to_string()),
            t.sslmode.as_str(),
            t.sslrootcert
        )
    }

    #[test]
    fn connection_strings_parse_like_libpq() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "postgresql://matrix_user:s3cr%40t@dpg-abc.oregon-postgres.render.com/matrix",
                "Tcp(\"dpg-abc.oregon-postgres.render.com\") 5432 matrix_user matrix pw=s3cr@t prefer None",
                "Render's external DATABASE_URL: percent-encoded password, default port and sslmode",
            ),
            (
                "postgres://u@10.0.0.5:6543/db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                "Tcp(\"10.0.0.5\") 6543 u db pw=- verify-full Some(\"/etc/ca.pem\")",
                "the short scheme, a port and TLS parameters",
            ),
            ("postgresql://u@[::1]:5433/d", "Tcp(\"::1\") 5433 u d pw=- prefer None", "an IPv6 literal"),
            (
                "postgresql://u@%2Fvar%2Frun%2Fpg/d",
                "Socket(\"/var/run/pg\") 5432 u d pw=- prefer None",
                "a percent-encoded socket directory as the host",
            ),
            (
                "postgresql:///d?host=/tmp/s&user=u&port=6000",
                "Socket(\"/tmp/s\") 6000 u d pw=- prefer None",
                "everything as query parameters",
            ),
            ("postgresql://u@h", "Tcp(\"h\") 5432 u u pw=- prefer None", "the database defaults to the user name"),
            (
                "host=db.internal port=5433 user=monitor password='a b\\'c' dbname=mas sslmode=require",
                "Tcp(\"db.internal\") 5433 monitor mas pw=a b'c require None",
                "keyword/value form with a quoted, escaped password",
            ),
            ("user = x  dbname=y", "Socket(\"/var/run/postgresql\") 5432 x y pw=- prefer None", "blanks around `=`"),
        ];
        for (dsn, want, why) in cases {
            let got = PgTarget::parse(dsn).map(|t| summary(&t)).unwrap_or_else(|e| format!("error: {e}"));
            assert_eq!(got, *want, "{dsn}: {why}");
        }
    }

    #[test]
    fn bad_connection_strings_are_explained_without_echoing_them() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "is empty", "an empty environment variable"),
            ("https://u:pw@h/d", "neither a postgresql:// URI", "another scheme"),
            ("postgresql://u:pw@h:99999/d", "not a valid postgresql:// URI", "a port out of range"),
            ("postgresql://:pw@h/d", "no user", "libpq would use the OS user; we ask for it"),
            ("postgresql://u:pw@h/d?sslmode=requir", "unknown sslmode `requir`", "a typo in sslmode"),
            ("postgresql://u:pw@h/d?sslmode=allow", "`allow`", "allow is not supported by sqlx"),
            ("postgresql://u:pw@h/d?passwrd=x", "did you mean `password`", "a near-miss parameter"),
            ("postgresql://u:pw@h/d?target_session_attrs=any", "unknown connection parameter", "unsupported"),
            ("host=a,b user=u", "several hosts", "failover lists"),
            ("user=u password='open", "no closing quote", "an unterminated quote"),
        ];
        for (dsn, want, why) in cases {
            let error = PgTarget::parse(dsn).err().unwrap_or_else(|| panic!("{dsn} parsed: {why}"));
            assert!(error.contains(want), "{dsn}: {why}: {error}");
            assert!(!error.contains("pw@") && !error.contains(":pw"), "{dsn}: the password leaked: {error}");
        }
    }

    #[test]
    fn the_description_never_holds_the_password() {
        let t = PgTarget::parse("postgresql://monitor:hunter2@db:5432/matrix?sslmode=require").unwrap();
        assert_eq!(t.describe(), "postgresql://monitor:<redacted>@db:5432/matrix?sslmode=require");
        assert_eq!(t.describe_db("mas"), "postgresql://monitor:<redacted>@db:5432/mas?sslmode=require");
        assert!(!format!("{t:?}").contains("hunter2"), "Debug redacts");
        let s = PgTarget::parse("host=/run/pg user=u").unwrap();
        assert_eq!(s.describe(), "postgresql://u@/u?host=/run/pg&port=5432");
        assert_eq!(s.instance(), "/run/pg/.s.PGSQL.5432");
    }
}
