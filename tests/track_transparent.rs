//! `Tracked<T>` is as transparent as a wrapper can be: code written for
//! `T` keeps working when the value is wrapped.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};

use leakscope::{track, Tracked};

#[test]
// The header's atomics take no part in `Eq`/`Ord`/`Hash` (see `Tracked`'s
// docs), so clippy's interior-mutability worry does not apply.
#[allow(clippy::mutable_key_type)]
fn comparisons_hash_and_borrow_follow_the_value() {
    fn key(s: &str) -> Tracked<String> {
        track!(s.to_string(), "transparent key")
    }
    let a = key("a");
    let b = key("b");
    assert!(a < b && a != b && a == key("a"));
    assert_eq!(a.cmp(&key("a")), std::cmp::Ordering::Equal);
    // Borrow<T>: a set of tracked keys is queried with the plain key.
    let set: HashSet<Tracked<String>> = [key("x"), key("y")].into_iter().collect();
    // `Borrow<T>`, not `Borrow<str>` (see the docs): query with a `&String`.
    let x = String::from("x");
    assert!(set.contains(&x));
    let ordered: BTreeSet<Tracked<String>> = [key("q"), key("p")].into_iter().collect();
    let p = String::from("p");
    assert!(ordered.contains(&p));
    assert_eq!(ordered.iter().next().map(|k| k.as_str()), Some("p"));
}

#[test]
fn iterators_io_fmt_and_errors_are_forwarded() {
    let mut it = track!(vec![1, 2, 3].into_iter(), "transparent iter");
    assert_eq!(it.len(), 3);
    assert_eq!(it.next_back(), Some(3));
    assert_eq!(it.by_ref().sum::<i32>(), 3);

    let mut r = track!(
        std::io::Cursor::new(b"line one\nline two\n".to_vec()),
        "transparent io"
    );
    let mut first = String::new();
    r.read_line(&mut first).unwrap();
    assert_eq!(first, "line one\n");
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "line two\n");
    r.seek(SeekFrom::Start(0)).unwrap();
    r.write_all(b"LINE").unwrap();
    r.flush().unwrap();
    assert!(r.get_ref().starts_with(b"LINE one"));

    let mut s = track!(String::new(), "transparent fmt");
    std::fmt::Write::write_fmt(&mut *s, format_args!("{}", 1)).unwrap();
    std::fmt::Write::write_str(&mut s, "2").unwrap();
    assert_eq!(*s, "12");

    #[derive(Debug)]
    struct Inner;
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("inner")
        }
    }
    impl std::error::Error for Inner {}
    #[derive(Debug)]
    struct Outer(Inner);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let e: Box<dyn std::error::Error> = Box::new(track!(Outer(Inner), "transparent error"));
    assert_eq!(e.to_string(), "outer");
    assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("inner"));
}
