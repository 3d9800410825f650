//! Where the store is: [`Store`] (an SQLite path or a PostgreSQL URL), how a location is shown
//! without its password (`redact`, `scrub`), and the libpq timeouts added to a PostgreSQL URL.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the pipeline writes: an SQLite file or a PostgreSQL database.
///
/// Building a `Store` never fails; a bad URL or an unreachable store is an `Err` from
/// [`crate::start`]. Its `Display` and `Debug` are [`Store::describe`]: never a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Store {
    pub(crate) kind: StoreKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Sqlite(PathBuf),
    Postgres(String),
    Invalid { url: String, reason: String },
}

impl Store {
    /// An SQLite file (created if missing; its directory must exist).
    pub fn sqlite(path: impl Into<PathBuf>) -> Store {
        Store {
            kind: StoreKind::Sqlite(path.into()),
        }
    }

    /// A PostgreSQL database, by libpq URL (`postgres://user@host:port/db`) or key=value
    /// connection string.
    ///
    /// Time toward the server is bounded by default: each of these libpq parameters is added
    /// unless the URL sets it already (`budget` is `Config::store_retry_budget_ms`):
    /// `connect_timeout` = budget in whole seconds, clamped to 2..=10; TCP `keepalives=1`,
    /// `keepalives_idle` = budget / 2 (1..=10 s), `keepalives_interval` = budget / 4
    /// (1..=5 s), `keepalives_count=3`; `tcp_user_timeout` = budget clamped to 2..=120 s
    /// (sent data unacknowledged that long closes the connection: a black-holed network); and
    /// `options=-c statement_timeout=` budget clamped to 10..=300 s (a URL with its own
    /// `options` keeps them, without the statement timeout unless it sets one).
    pub fn postgres(url: impl Into<String>) -> Store {
        Store {
            kind: StoreKind::Postgres(url.into()),
        }
    }

    /// `sqlite://PATH` (`sqlite:///abs/path.db` or `sqlite://relative.db`) or
    /// `postgres://...` / `postgresql://...`.
    pub fn from_url(url: &str) -> Store {
        let invalid = |reason: &str| Store {
            kind: StoreKind::Invalid {
                url: url.to_string(),
                reason: reason.into(),
            },
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return invalid("sqlite:// needs a file path");
            }
            if path == ":memory:" {
                return invalid("in-memory SQLite is not supported: the writer and the stop path need one shared file");
            }
            Store::sqlite(path)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::postgres(url)
        } else {
            invalid("expected sqlite://PATH or postgres://...")
        }
    }

    /// A printable description, without any password: what every log line, error and
    /// report shows. A URL's userinfo password, a `password=` query parameter and a
    /// `password=` pair of a `key=value` connection string show as `***`; a location that
    /// parses as neither shows only its scheme.
    pub fn describe(&self) -> String {
        match &self.kind {
            StoreKind::Sqlite(p) => format!("sqlite://{}", p.display()),
            StoreKind::Postgres(url) | StoreKind::Invalid { url, .. } => redact(url),
        }
    }

    /// Whether this is a PostgreSQL store.
    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, StoreKind::Postgres(_))
    }

    /// The SQLite file, if this is an SQLite store.
    pub(crate) fn sqlite_path(&self) -> Option<&Path> {
        match &self.kind {
            StoreKind::Sqlite(p) => Some(p),
            _ => None,
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.describe())
    }
}

/// What a password is shown as.
pub(crate) const HIDDEN: &str = "***";

/// A store location (URL or libpq `key=value` connection string) fit to show: the password of
/// a URL's userinfo (`postgres://user:***@host`), a `password=` query parameter, and a
/// `password=` pair of a connection string become `***`; a location that parses as neither
/// shows only its scheme (`postgres://(not shown: unparseable)`), or nothing of itself.
pub(crate) fn redact(location: &str) -> String {
    match location.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => match redact_uri(rest) {
            Some(rest) => format!("{scheme}://{rest}"),
            None => format!("{scheme}://(not shown: unparseable)"),
        },
        Some(_) => "(a store location, not shown: unparseable)".to_string(),
        None => match conninfo_pairs(location) {
            Some(pairs) => pairs
                .iter()
                .map(|&(key, value)| match is_password(key) {
                    true => format!("{key}={HIDDEN}"),
                    false => format!("{key}={value}"),
                })
                .collect::<Vec<_>>()
                .join(" "),
            None => "(a connection string, not shown: unparseable)".to_string(),
        },
    }
}

/// Every password `location` holds (as written), to take out of error texts that might echo
/// it (see [`scrub`]).
pub(crate) fn passwords(location: &str) -> Vec<&str> {
    let found: Vec<&str> = if let Some((_, rest)) = location.split_once("://") {
        // up to the last `@`, as libpq reads a password holding `/` or `?`
        let userinfo = rest.rsplit_once('@').map(|(u, _)| u);
        let in_userinfo = userinfo.and_then(|u| u.split_once(':')).map(|(_, pw)| pw);
        let (_, _, query) = uri_parts(rest);
        let in_query = query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| is_password(k))
            .map(|(_, v)| v);
        in_userinfo.into_iter().chain(in_query).collect()
    } else {
        let pairs = conninfo_pairs(location).unwrap_or_default();
        let quoted = pairs.into_iter().filter(|(k, _)| is_password(k));
        quoted.map(|(_, v)| v.trim_matches('\'')).collect()
    };
    found.into_iter().filter(|pw| !pw.is_empty()).collect()
}

/// `text` (an error from the store's client library) with every password of `location` in it
/// replaced by `***`.
pub(crate) fn scrub(text: &str, location: &str) -> String {
    let mut found = passwords(location);
    // the longest first: one password may contain another
    found.sort_by_key(|pw| std::cmp::Reverse(pw.len()));
    found
        .into_iter()
        .fold(text.to_string(), |t, pw| t.replace(pw, HIDDEN))
}

pub(crate) fn is_scheme(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
}

pub(crate) fn is_password(key: &str) -> bool {
    key.trim().eq_ignore_ascii_case("password")
}

/// A URI after its `scheme://`: its authority (userinfo, host, port), path, and query string
/// (`None` when absent).
pub(crate) fn uri_parts(rest: &str) -> (&str, &str, Option<&str>) {
    let (before, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let slash = before.find('/').unwrap_or(before.len());
    (&before[..slash], &before[slash..], query)
}

/// A URI after its `scheme://` with the userinfo password and `password` query parameters
/// hidden; `None` if a parser could read it otherwise (whitespace, or a `@` after the
/// authority: a password holding `/` or `?`), so that nothing of it is shown.
pub(crate) fn redact_uri(rest: &str) -> Option<String> {
    let (authority, path, query) = uri_parts(rest);
    let after_authority = &rest[authority.len()..];
    if rest.contains(char::is_whitespace) || after_authority.contains('@') {
        return None;
    }
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{HIDDEN}@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let Some(query) = query else {
        return Some(format!("{authority}{path}"));
    };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_password(k) => format!("{k}={HIDDEN}"),
            _ => kv.to_string(),
        })
        .collect();
    Some(format!("{authority}{path}?{}", query.join("&")))
}

/// The `key=value` pairs of a libpq connection string (values as written, single-quoted ones
/// with their quotes), or `None` if it is not one (libpq's grammar: whitespace around `=`
/// allowed, `'...'` quoting with backslash escapes).
pub(crate) fn conninfo_pairs(s: &str) -> Option<Vec<(&str, &str)>> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| c == '=' || c.is_whitespace())?;
        let (key, after) = rest.split_at(key_end);
        let after = after.trim_start().strip_prefix('=')?.trim_start();
        let value_end = if let Some(quoted) = after.strip_prefix('\'') {
            let mut escaped = false;
            let close = quoted.char_indices().find(|&(_, c)| {
                let end = c == '\'' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            })?;
            close.0 + 2
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        if key.is_empty() {
            return None;
        }
        pairs.push((key, &after[..value_end]));
        rest = after[value_end..].trim_start();
    }
    Some(pairs)
}

/// The libpq parameters [`Store::postgres`] adds by default, for a retry budget.
///
/// On a network that drops every packet (a black hole), `tcp_user_timeout` closes a connection
/// whose sent data stays unacknowledged, and keepalive probes (whose failure Linux also judges
/// by `tcp_user_timeout`) close one that waits for a reply; both scale with the budget so a
/// short budget detects the outage quickly. A peer that acknowledges and never answers (a hung
/// proxy) is beyond what libpq parameters can bound.
pub(crate) fn pg_timeout_params(budget: Duration) -> [(&'static str, String); 7] {
    // budget / divisor in whole seconds (rounded up), clamped to lo..=hi
    let secs = |divisor: f64, lo: u64, hi: u64| {
        (budget.as_secs_f64() / divisor)
            .ceil()
            .clamp(lo as f64, hi as f64) as u64
    };
    [
        ("connect_timeout", secs(1.0, 2, 10).to_string()),
        ("keepalives", "1".into()),
        ("keepalives_idle", secs(2.0, 1, 10).to_string()),
        ("keepalives_interval", secs(4.0, 1, 5).to_string()),
        ("keepalives_count", "3".into()),
        ("tcp_user_timeout", (secs(1.0, 2, 120) * 1000).to_string()),
        (
            "options",
            format!("-c statement_timeout={}", secs(1.0, 10, 300) * 1000),
        ),
    ]
}

/// `url` with the default timeouts (see [`Store::postgres`]) added where it does not set them.
/// Understands both libpq forms: a `postgres://` URI (query parameters, percent-encoded) and a
/// `key=value` connection string.
pub(crate) fn pg_url_with_timeouts(url: &str, budget: Duration) -> String {
    let is_uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let given: Vec<String> = if is_uri {
        url.split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .map(str::to_ascii_lowercase)
            .collect()
    } else {
        url.split_whitespace()
            .filter_map(|kv| kv.split('=').next())
            .map(|k| k.trim().to_ascii_lowercase())
            .collect()
    };
    let mut out = url.to_string();
    for (key, value) in pg_timeout_params(budget) {
        if given.iter().any(|g| g == key) {
            continue;
        }
        if is_uri {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(key);
            out.push('=');
            out.push_str(&value.replace(' ', "%20").replace('=', "%3D"));
        } else {
            out.push_str(&format!(" {key}='{value}'"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::pool::{pool_wait, POOL_WAIT};

    #[test]
    fn urls() {
        assert_eq!(Store::from_url("sqlite://a.db"), Store::sqlite("a.db"));
        assert_eq!(
            Store::from_url("sqlite:///tmp/a.db"),
            Store::sqlite("/tmp/a.db")
        );
        assert!(Store::from_url("postgres://u@h/db").is_postgres());
        assert!(matches!(
            Store::from_url("mysql://x").kind,
            StoreKind::Invalid { .. }
        ));
        assert!(matches!(
            Store::from_url("sqlite://").kind,
            StoreKind::Invalid { .. }
        ));
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn every_form_of_password_is_redacted_and_the_rest_kept() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            (
                "postgresql://u@h/db?sslmode=disable&password=pw",
                "postgresql://u@h/db?sslmode=disable&***",
            ),
            (
                "postgres://u@h/db?PassWord=pw&x=1",
                "postgres://u@h/db?PassWord=***&x=1",
            ),
            (
                "postgres://u:p/w?x@h/db",
                "postgres://(not shown: unparseable)",
            ),
            (
                "postgres://u:pw@h/db?a=b c",
                "postgres://(not shown: unparseable)",
            ),
            ("postgres://h", "postgres://h"),
            ("postgress://u:pw@h/db", "postgress://u:***@h/db"),
            (
                "pg sql://u:pw@h/db",
                "(a store location, not shown: unparseable)",
            ),
            (
                "host=h user=u password=pw dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                "host = h password = 'p w\\'x' port=1",
                "host=h password=*** port=1",
            ),
            (
                "host=h password pw",
                "(a connection string, not shown: unparseable)",
            ),
        ];
        for (given, shown) in cases {
            let shown = shown.replace("&***", "&password=***");
            assert_eq!(redact(given), shown, "{given}");
            assert!(!redact(given).contains("pw"), "{given}");
        }
        assert_eq!(
            scrub(
                "bad pw near 'p w\\'x' and pw",
                "host=h password='p w\\'x' x=pw"
            ),
            "bad pw near '***' and pw"
        );
        assert_eq!(
            scrub("pw and pw2", "postgres://u:pw@h?password=pw2"),
            "*** and ***"
        );
        let store = Store::from_url("postgres://u@h/db?password=pw");
        assert_eq!(format!("{store}"), "postgres://u@h/db?password=***");
        assert_eq!(
            format!("{store:?}"),
            "Store(postgres://u@h/db?password=***)"
        );
    }

    #[test]
    fn pg_timeouts_are_added_unless_the_url_sets_them() {
        let budget = Duration::from_secs(30);
        let url = pg_url_with_timeouts("postgres://u@h/db", budget);
        assert_eq!(
            url,
            "postgres://u@h/db?connect_timeout=10&keepalives=1&keepalives_idle=10\
             &keepalives_interval=5&keepalives_count=3&tcp_user_timeout=30000\
             &options=-c%20statement_timeout%3D30000"
        );
        let own = pg_url_with_timeouts(
            "postgresql://u@h/db?connect_timeout=2&options=-c%20work_mem%3D64MB&sslmode=disable",
            Duration::from_millis(500),
        );
        assert!(own.starts_with("postgresql://u@h/db?connect_timeout=2&options=-c%20work_mem"));
        assert_eq!(own.matches("connect_timeout").count(), 1);
        assert_eq!(own.matches("options").count(), 1);
        assert!(
            own.ends_with(
                "&sslmode=disable&keepalives=1&keepalives_idle=1&keepalives_interval=1\
                 &keepalives_count=3&tcp_user_timeout=2000"
            ),
            "{own}"
        );
        let kv = pg_url_with_timeouts("host=h dbname=db keepalives=0", Duration::ZERO);
        assert_eq!(
            kv,
            "host=h dbname=db keepalives=0 connect_timeout='2' keepalives_idle='1' \
             keepalives_interval='1' keepalives_count='3' tcp_user_timeout='2000' \
             options='-c statement_timeout=10000'"
        );
        assert_eq!(pool_wait(Duration::ZERO), Duration::from_millis(50));
        assert_eq!(pool_wait(Duration::from_secs(30)), POOL_WAIT);
    }
}
