//! Every `track!`/`track_arc!` form compiles (and a `!Send` value stays
//! `!Send`). Few cases on purpose: trybuild compiles slowly.

#[test]
fn macro_forms() {
    let t = trybuild::TestCases::new();
    t.pass("tests/macros/pass_forms.rs");
    t.compile_fail("tests/macros/fail_not_send.rs");
}
