//! The `Host` check against DNS rebinding.
//!
//! A page in a browser on the same machine can point a name it controls
//! (`evil.example`) at `127.0.0.1` once its page is loaded, and then read
//! the loopback server as if it were its own origin. The browser still sends
//! the name it thinks it talks to in `Host`, so a loopback-only server
//! answers only requests whose `Host` is a name that can only mean this
//! machine, or an IP literal (a page whose origin is an IP literal cannot
//! rebind it):
//!
//! - `localhost`, or any name under `.localhost` (RFC 6761 reserves them for
//!   loopback; browsers resolve them to loopback themselves), case-insensitive,
//!   with or without a trailing dot;
//! - an IPv4 literal in dotted-quad form, or an IPv6 literal in brackets;
//! - either one followed by `:` and a (possibly empty) run of digits.
//!
//! Anything else is refused with a `403` and a one-line reason. A request
//! without `Host` (HTTP/1.0 tools; browsers always send it) is served.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Whether `host` (a `Host` header value or a request-target authority) is
/// a loopback name or an IP literal, with an optional port.
pub(crate) fn host_allowed(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (None, port),
                None => return false,
            },
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (Some(name), port),
            None => (Some(host), ""),
        }
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match name {
        None => true,
        Some(name) => name.parse::<Ipv4Addr>().is_ok() || is_localhost(name),
    }
}

fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let n = name.len();
    const L: &str = "localhost";
    if n == L.len() {
        return name.eq_ignore_ascii_case(L);
    }
    // `<label>.localhost`: a non-empty label of letters, digits, '-', '.'.
    n > L.len() + 1
        && name.is_char_boundary(n - L.len() - 1)
        && name[n - L.len() - 1..].eq_ignore_ascii_case(".localhost")
        && name[..n - L.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:80",
            "localhost.",
            "localhost:",
            "a.b-c.localhost:6060",
            "127.0.0.1",
            "10.0.0.1:1",
            "[::1]",
            "[::ffff:127.0.0.1]:6060",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "localhost.evil.example",
            "evillocalhost",
            ".localhost",
            "a_b.localhost",
            "127.1",
            "127.0.0.1.nip.io",
            "[::1",
            "[::1]x",
            "[::1]:x",
            "::1",
            "localhost:http",
            "é.localhost",
            "xé:1",
        ] {
            assert!(!host_allowed(bad), "{bad}");
        }
    }
}
