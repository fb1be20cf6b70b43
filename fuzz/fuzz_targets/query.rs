//! The query-string parser of the debug routes: never panics, accepted
//! ages stay within the documented ten years, refusals are one line.

#![no_main]

use std::time::Duration;

use leakscope::server::{parse_duration, Query};
use libfuzzer_sys::fuzz_target;

const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);

fn one_line(e: &impl std::fmt::Display) {
    let m = e.to_string();
    assert!(!m.is_empty() && !m.contains(['\n', '\r']), "{m:?}");
    assert!(m.len() <= 1024, "{} bytes", m.len());
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    match Query::parse(&s) {
        Ok(q) => {
            assert!(s.len() <= 1024);
            assert!(q.min_age.is_none_or(|a| a <= TEN_YEARS), "{q:?}");
            assert!(q.max_age.is_none_or(|a| a <= TEN_YEARS), "{q:?}");
            if let (Some(min), Some(max)) = (q.min_age, q.max_age) {
                assert!(min <= max, "{q:?}");
            }
            for m in [&q.since, &q.until].into_iter().flatten() {
                assert!(leakscope::marks::validate(m).is_ok(), "{q:?}");
            }
        }
        Err(e) => one_line(&e),
    }
    match parse_duration(&s) {
        Ok(d) => {
            assert!(d <= TEN_YEARS, "{d:?}");
            // An accepted duration also parses as `min_age=` (modulo the
            // characters that percent-decoding gives a meaning).
            if !s.contains(['%', '+', '&', '=', '#']) && s.len() <= 1000 {
                let q = Query::parse(&format!("min_age={s}")).expect("min_age");
                assert_eq!(q.min_age, Some(d));
            }
        }
        Err(e) => one_line(&e),
    }
});
