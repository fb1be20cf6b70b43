//! `Tracked<T>` and `TrackedArc<T>` are unwind safe exactly like `T` and
//! `Arc<T>`: a closure given to `catch_unwind` may borrow them without
//! `AssertUnwindSafe`.

use std::panic::{catch_unwind, RefUnwindSafe, UnwindSafe};

fn unwind_safe<T: UnwindSafe + RefUnwindSafe>() {}

#[test]
fn tracked_handles_are_unwind_safe_when_their_value_is() {
    unwind_safe::<leakscope::Tracked<u8>>();
    unwind_safe::<leakscope::TrackedArc<String>>();
    unwind_safe::<leakscope::TrackedWeak<String>>();

    let t = leakscope::track!(5u8, "unwind_tracked");
    let a = leakscope::track_arc!(String::from("ctx"), "unwind_arc");
    let r = catch_unwind(|| {
        assert_eq!(*t, 5);
        assert_eq!(a.len(), 99, "expected panic");
    });
    assert!(r.is_err());
    assert_eq!(*t + 1, 6);
    assert_eq!(leakscope::TrackedArc::strong_count(&a), 1);
}
