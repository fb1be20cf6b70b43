//! `track!` and `track_arc!`.

/// Wraps a value in a [`Tracked`](crate::Tracked) drop hook counted at this
/// callsite.
///
/// Forms (a trailing comma is accepted):
/// - `track!(value)`
/// - `track!(value, "name")`: a name shown in reports and metrics;
/// - `track!(value, key = expr)`: counts live objects per value of `expr`
///   (anything `Display`; at most
///   [`max_label_values`](crate::objects::max_label_values) distinct values
///   per site, the rest as `other`).
///
/// The value's type must be `'static`. The callsite becomes one `static`
/// registered on first use; the hot path is a load and a `TypeId` compare.
///
/// # Examples
///
/// ```
/// #![no_implicit_prelude]
/// fn caller() -> &'static str { "billing" }
/// let a = ::leakscope::track!(1u8);
/// let b = ::leakscope::track!(2u16, "two",);
/// let c = ::leakscope::track!(3u32, caller = caller());
/// ::core::assert_eq!(*a + 1, 2);
/// ::core::assert_eq!(*b, 2);
/// ::core::assert_eq!(c.into_inner(), 3);
/// ```
#[macro_export]
macro_rules! track {
    ($value:expr $(,)?) => {
        $crate::__macro_support::track(
            $crate::__leakscope_site!(
                ::core::option::Option::None,
                ::core::option::Option::None,
                false
            ),
            $value,
        )
    };
    ($value:expr, $name:literal $(,)?) => {
        $crate::__macro_support::track(
            $crate::__leakscope_site!(
                ::core::option::Option::Some($name),
                ::core::option::Option::None,
                false
            ),
            $value,
        )
    };
    ($value:expr, $key:ident = $label:expr $(,)?) => {
        $crate::__macro_support::track_labelled(
            $crate::__leakscope_site!(
                ::core::option::Option::None,
                ::core::option::Option::Some(::core::stringify!($key)),
                false
            ),
            $value,
            &$label,
        )
    };
}

/// Wraps a value in a shared [`TrackedArc`](crate::TrackedArc) handle
/// counted at this callsite; each handle also counts at its *holder*: the
/// place it was created, cloned or upgraded.
///
/// Same forms as [`track!`](crate::track).
///
/// # Examples
///
/// ```
/// let ctx = leakscope::track_arc!(String::from("ctx"), caller = "billing");
/// let for_timer = ctx.clone(); // held here
/// drop(ctx);
/// assert_eq!(*for_timer, "ctx");
/// ```
#[macro_export]
macro_rules! track_arc {
    ($value:expr $(,)?) => {
        $crate::__macro_support::track_arc(
            $crate::__leakscope_site!(
                ::core::option::Option::None,
                ::core::option::Option::None,
                true
            ),
            $value,
        )
    };
    ($value:expr, $name:literal $(,)?) => {
        $crate::__macro_support::track_arc(
            $crate::__leakscope_site!(
                ::core::option::Option::Some($name),
                ::core::option::Option::None,
                true
            ),
            $value,
        )
    };
    ($value:expr, $key:ident = $label:expr $(,)?) => {
        $crate::__macro_support::track_arc_labelled(
            $crate::__leakscope_site!(
                ::core::option::Option::None,
                ::core::option::Option::Some(::core::stringify!($key)),
                true
            ),
            $value,
            &$label,
        )
    };
}

/// The `static` site of one macro call. Not a stable API.
#[doc(hidden)]
#[macro_export]
macro_rules! __leakscope_site {
    ($name:expr, $key:expr, $arc:expr) => {{
        static __LEAKSCOPE_SITE: $crate::__macro_support::Site =
            $crate::__macro_support::Site::new($crate::__macro_support::SiteMeta::new(
                ::core::file!(),
                ::core::line!(),
                ::core::column!(),
                ::core::module_path!(),
                $name,
                $key,
                $arc,
            ));
        &__LEAKSCOPE_SITE
    }};
}
