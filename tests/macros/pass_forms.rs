//! All macro forms, with and without trailing commas, in and out of
//! generic functions.

fn caller() -> String {
    String::from("svc")
}

fn generic<T: 'static + Clone>(v: T) -> (leakscope::Tracked<T>, leakscope::TrackedArc<T>) {
    (leakscope::track!(v.clone()), leakscope::track_arc!(v, "generic"))
}

fn main() {
    let a = leakscope::track!(1u8);
    let b = leakscope::track!(2u8,);
    let c = leakscope::track!(3u8, "three");
    let d = leakscope::track!(4u8, "four",);
    let e = leakscope::track!(5u8, caller = caller());
    let f = leakscope::track!(6u8, caller = "lit",);
    let g = leakscope::track_arc!(7u8);
    let h = leakscope::track_arc!(8u8,);
    let i = leakscope::track_arc!(9u8, "nine");
    let j = leakscope::track_arc!(10u8, "ten",);
    let k = leakscope::track_arc!(11u8, tenant = 7);
    let l = leakscope::track_arc!(12u8, tenant = caller(),);
    let (m, n) = generic(String::from("x"));
    let sum: u32 = [*a, *b, *c, *d, *e, *f, *g, *h, *i, *j, *k, *l]
        .iter()
        .map(|&x| u32::from(x))
        .sum();
    assert_eq!(sum, 78);
    assert_eq!((m.as_str(), n.as_str()), ("x", "x"));
    // A tracked future is a future (what `tokio::spawn(track!(fut))` needs).
    fn spawnable<F: std::future::Future<Output = u8> + Send + 'static>(_: F) {}
    spawnable(leakscope::track!(async { 1u8 }, route = "/checkout"));
    // Retiring: by reference for `Tracked`, by value for `TrackedArc`.
    a.retire("done");
    leakscope::TrackedArc::retire(g, "done");
}
