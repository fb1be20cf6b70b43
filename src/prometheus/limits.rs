//! [`Limits`]: the cardinality bounds of the exported series, and how each
//! one is applied (see the module docs of [`crate::prometheus`]).

/// Cardinality limits of the exported series (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Heap sites exported by name, by live bytes; the rest are summed into
    /// `other`. Default 50.
    pub top_heap_sites: usize,
    /// Object sites exported by name for the life of the process; later ones
    /// are summed into `other`. Default 50.
    pub max_object_sites: usize,
    /// Label values exported per object site; the rest are summed into
    /// `value="other"`. Default 10.
    pub max_label_values: usize,
    /// Holders exported per object site; the rest are summed into
    /// `holder="other"`. Default 10.
    pub max_holders: usize,
    /// Longest label value in bytes; longer ones are cut (on a character
    /// boundary) and end in `...`. Default 200.
    pub max_label_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            top_heap_sites: 50,
            max_object_sites: 50,
            max_label_values: 10,
            max_holders: 10,
            max_label_len: 200,
        }
    }
}

impl Limits {
    /// The default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Limits::top_heap_sites`].
    #[must_use]
    pub fn top_heap_sites(mut self, n: usize) -> Self {
        self.top_heap_sites = n;
        self
    }

    /// Sets [`Limits::max_object_sites`]. It only takes effect for sites
    /// not yet exported (exported sites keep their series).
    #[must_use]
    pub fn max_object_sites(mut self, n: usize) -> Self {
        self.max_object_sites = n;
        self
    }

    /// Sets [`Limits::max_label_values`].
    #[must_use]
    pub fn max_label_values(mut self, n: usize) -> Self {
        self.max_label_values = n;
        self
    }

    /// Sets [`Limits::max_holders`].
    #[must_use]
    pub fn max_holders(mut self, n: usize) -> Self {
        self.max_holders = n;
        self
    }

    /// Sets [`Limits::max_label_len`] (at least 8).
    #[must_use]
    pub fn max_label_len(mut self, n: usize) -> Self {
        self.max_label_len = n.max(8);
        self
    }
}
