//! Label counts and the per-site cap (own binary: the cap is global).

use leakscope::track;

#[test]
fn labels_count_live_objects_and_cap_to_other() {
    leakscope::objects::set_max_label_values(3);
    let callers = ["a", "b", "a", "c", "d", "e", "a"];
    let objs: Vec<_> = callers.iter().map(|c| track!(0u8, caller = c)).collect();
    let site = leakscope::snapshot()
        .objects
        .into_iter()
        .find(|o| o.labels.iter().any(|l| l.key == "caller"))
        .expect("labelled site");
    let get = |v: &str| {
        site.labels
            .iter()
            .find(|l| l.value == v)
            .map(|l| l.live)
            .unwrap_or(0)
    };
    assert_eq!(site.live, 7);
    assert_eq!(get("a"), 3);
    // Three distinct values fit: "a" and two of b..e; the other two are "other".
    assert_eq!(get("other"), 2);
    assert_eq!(get("b") + get("c") + get("d") + get("e"), 2);
    assert_eq!(site.labels.last().map(|l| l.value.as_str()), Some("other"));
    let total: u64 = site.labels.iter().map(|l| l.live).sum();
    assert_eq!(total, 7);
    drop(objs);
    let site = leakscope::snapshot()
        .objects
        .into_iter()
        .find(|o| o.line == site.line && o.file == site.file)
        .unwrap();
    assert!(site.labels.is_empty(), "{:?}", site.labels);
    assert_eq!(site.live, 0);
}

#[test]
fn clones_keep_their_label_and_arcs_take_labels() {
    let a = leakscope::track_arc!(String::from("ctx"), tenant = 42);
    let t = track!(vec![1u8], tenant = "x");
    let t2 = t.clone();
    let snap = leakscope::snapshot();
    let vs = snap
        .objects
        .iter()
        .find(|o| o.type_name.contains("Vec<u8>"))
        .unwrap();
    assert_eq!(vs.labels.len(), 1);
    assert_eq!((vs.labels[0].value.as_str(), vs.labels[0].live), ("x", 2));
    let ar = snap
        .objects
        .iter()
        .find(|o| o.type_name.ends_with("String"))
        .unwrap();
    assert_eq!(
        (ar.labels[0].key.as_str(), ar.labels[0].value.as_str()),
        ("tenant", "42")
    );
    drop((a, t, t2));
}
