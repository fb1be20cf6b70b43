//! Query strings of the debug routes: strict, bounded parsing with one-line
//! errors.

use std::fmt;
use std::time::Duration;

/// Longest query string accepted, in bytes.
pub(crate) const MAX_QUERY_LEN: usize = 1024;

/// Longest accepted `min_age` or `max_age`: ten years.
const MAX_AGE: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The parameters the debug routes understand.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// `min_age=<duration>`: only live heap samples at least this old.
    pub min_age: Option<Duration>,
    /// `max_age=<duration>`: only live heap samples at most this old.
    pub max_age: Option<Duration>,
    /// `since=<mark>`: only live heap samples born at or after the mark
    /// (a name given to [`crate::mark`]; checked to exist by the routes).
    pub since: Option<String>,
    /// `until=<mark>`: only live heap samples born before the mark.
    pub until: Option<String>,
    /// `debug=1`: the text form of a profile.
    pub debug: bool,
}

/// Why a query string was refused (a `400`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    msg: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for QueryError {}

fn err(msg: impl Into<String>) -> QueryError {
    QueryError { msg: msg.into() }
}

impl Query {
    /// Parses a raw query string (without the `?`).
    ///
    /// # Errors
    ///
    /// A query longer than 1024 bytes, malformed percent-encoding, non-UTF-8
    /// text, a bad `min_age`, `max_age` or `debug` value, `min_age` above
    /// `max_age`, a `since`/`until` that cannot be a mark name, or
    /// `seconds` (delta profiles are not supported).
    ///
    /// # Examples
    ///
    /// ```
    /// use leakscope::server::Query;
    /// use std::time::Duration;
    /// let q = Query::parse("min_age=1h30m&debug=1").unwrap();
    /// assert_eq!(q.min_age, Some(Duration::from_secs(5400)));
    /// assert!(q.debug);
    /// assert!(Query::parse("min_age=-1").is_err());
    /// let q = Query::parse("min_age=10m&max_age=1h&since=deploy").unwrap();
    /// assert_eq!(q.max_age, Some(Duration::from_secs(3600)));
    /// assert_eq!(q.since.as_deref(), Some("deploy"));
    /// assert!(Query::parse("min_age=1h&max_age=10m").is_err());
    /// ```
    pub fn parse(raw: &str) -> Result<Query, QueryError> {
        if raw.len() > MAX_QUERY_LEN {
            return Err(err(format!(
                "query string too long ({} bytes, at most {MAX_QUERY_LEN})",
                raw.len()
            )));
        }
        let mut q = Query::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k)?;
            let v = decode(v)?;
            match k.as_str() {
                "min_age" => {
                    let d = parse_duration(&v)
                        .map_err(|e| err(format!("bad min_age {:?}: {e}", short(&v))))?;
                    q.min_age = Some(d);
                }
                "max_age" => {
                    let d = parse_duration(&v)
                        .map_err(|e| err(format!("bad max_age {:?}: {e}", short(&v))))?;
                    q.max_age = Some(d);
                }
                "since" | "until" => {
                    crate::marks::validate(&v)
                        .map_err(|e| err(format!("bad {k} {:?}: {e}", short(&v))))?;
                    if k == "since" {
                        q.since = Some(v);
                    } else {
                        q.until = Some(v);
                    }
                }
                "debug" => {
                    q.debug = match v.as_str() {
                        "0" | "" => false,
                        "1" => true,
                        _ => {
                            return Err(err(format!("bad debug {:?}: expected 0 or 1", short(&v))))
                        }
                    }
                }
                "seconds" => {
                    return Err(err(
                        "seconds (delta profiles) is not supported; scrape twice and diff",
                    ))
                }
                // Go accepts and ignores unknown parameters (and `gc`).
                _ => {}
            }
        }
        if let (Some(min), Some(max)) = (q.min_age, q.max_age) {
            if min > max {
                return Err(err(format!(
                    "min_age ({}) is more than max_age ({}): the window [now - max_age, now - min_age] is empty",
                    crate::format::fmt_duration(min),
                    crate::format::fmt_duration(max)
                )));
            }
        }
        Ok(q)
    }
}

/// The first 40 characters of a value, for error messages.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

/// Percent-decodes one component (`+` is a space), strictly.
fn decode(s: &str) -> Result<String, QueryError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| err("malformed percent-encoding in query"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| err("query is not valid UTF-8"))
}

/// Parses a duration: Go's `time.ParseDuration` syntax (`300ms`, `1.5h`,
/// `2h45m`, units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, plus `d`), or a plain
/// number of seconds (`3600`, `0.5`). Negative, non-finite and absurd
/// (over ten years) values are refused.
///
/// # Errors
///
/// A one-line reason, e.g. `expected a duration like 30s, 1h30m or 3600`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use leakscope::server::parse_duration;
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
/// assert!(parse_duration("banana").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, QueryError> {
    const HINT: &str = "expected a duration like 30s, 1h30m or 3600";
    let s = s.trim();
    if s.is_empty() {
        return Err(err(HINT));
    }
    if s.starts_with('-') {
        return Err(err("must not be negative"));
    }
    // Plain seconds.
    if s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        let v: f64 = s.parse().map_err(|_| err(HINT))?;
        return secs(v);
    }
    let mut total = 0f64;
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err(HINT));
        }
        let v: f64 = rest[..num_len].parse().map_err(|_| err(HINT))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(err(HINT)),
        };
        rest = &rest[unit_len..];
        total += v * scale;
    }
    secs(total)
}

fn secs(v: f64) -> Result<Duration, QueryError> {
    if !v.is_finite() || v < 0.0 {
        return Err(err("must be a finite, non-negative duration"));
    }
    if v > MAX_AGE.as_secs_f64() {
        return Err(err("too large (at most ten years)"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("0", 0.0),
            ("3600", 3600.0),
            ("0.5", 0.5),
            ("30s", 30.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("10us", 1e-5),
            ("2d", 172_800.0),
            ("+5s", 5.0),
        ];
        for (s, want) in ok {
            let d = parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert!((d.as_secs_f64() - want).abs() < 1e-9, "{s}");
        }
        for bad in [
            "",
            "banana",
            "-1",
            "-1s",
            "1x",
            "s",
            "1..2",
            "1e3",
            "nan",
            "inf",
            "1h-5m",
            "99999999999",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries() {
        assert_eq!(Query::parse("").unwrap(), Query::default());
        let q = Query::parse("gc=1&min_age=1%68&debug=1&x=y").unwrap();
        assert_eq!(q.min_age, Some(Duration::from_secs(3600)));
        assert!(q.debug);
        assert!(Query::parse("debug=2").is_err());
        assert!(Query::parse("min_age=%zz").is_err());
        assert!(Query::parse("min_age=%").is_err());
        assert!(Query::parse("x=%ff").is_err());
        assert!(Query::parse("seconds=30").is_err());
        let long = "a".repeat(MAX_QUERY_LEN + 1);
        let e = Query::parse(&long).unwrap_err().to_string();
        assert!(e.contains("too long"), "{e}");
        let q = Query::parse("max_age=1h&min_age=10m&since=deploy&until=v1.2%2B3").unwrap();
        assert_eq!(q.min_age, Some(Duration::from_secs(600)));
        assert_eq!(q.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(q.since.as_deref(), Some("deploy"));
        assert_eq!(q.until.as_deref(), Some("v1.2+3"));
        let e = Query::parse("min_age=1h&max_age=10m")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("min_age (1h) is more than max_age (10m)"),
            "{e}"
        );
        assert!(Query::parse("max_age=99999999999").is_err());
        let e = Query::parse("since=").unwrap_err().to_string();
        assert_eq!(e, "bad since \"\": a mark name must not be empty");
        assert!(Query::parse("until=two+words").is_err());
        let e = Query::parse("min_age=banana").unwrap_err().to_string();
        assert_eq!(
            e,
            "bad min_age \"banana\": expected a duration like 30s, 1h30m or 3600"
        );
    }
}
