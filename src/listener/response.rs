//! The response every handler returns: plain data (status, content type,
//! headers, body), ready to be written by this crate's listener or by any
//! other HTTP server, and the content types the handlers answer with.

/// A response of one of the handlers: plain data, ready to be written by any
/// HTTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// Further headers (e.g. `Content-Disposition` for profiles).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A `200` response.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An error response: `status` with a one-line plain-text reason.
    pub fn error(status: u16, reason: &str) -> Self {
        let line: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Response {
            status,
            content_type: TEXT,
            headers: Vec::new(),
            body: format!("{line}\n").into_bytes(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// `text/plain; charset=utf-8`.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
/// `text/html; charset=utf-8`.
pub(crate) const HTML: &str = "text/html; charset=utf-8";
/// `application/json`.
pub(crate) const JSON: &str = "application/json";
/// `application/octet-stream`, what Go serves pprof profiles as.
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";
/// `image/svg+xml`.
#[cfg(feature = "flamegraph")]
pub(crate) const SVG: &str = "image/svg+xml";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_one_line() {
        let r = Response::error(400, "bad\nthing\r");
        assert_eq!(r.body, b"bad thing \n");
        assert_eq!(r.content_type, TEXT);
    }
}
