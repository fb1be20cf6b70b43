//! Where leakscope's fixed tables are, for `crate::memory()`: they are
//! statics (zero-initialised, so mapped but not resident until touched),
//! counted at their full size in `metadata_bytes`; the memory breakdown
//! counts only the pages written (`/proc/self/pagemap`).

use core::mem::size_of_val;

use super::counters::BLOCKS;
use super::table::{FILTER, TABLES};

/// The address ranges `(start, len)` of the fixed tables: the sample
/// tables, the address filter and the counter-block pool. Their lengths sum
/// to `TABLE_BYTES + POOL_BYTES`.
pub(crate) fn fixed_tables() -> [(usize, usize); 3] {
    [
        (core::ptr::addr_of!(TABLES) as usize, size_of_val(&TABLES)),
        (core::ptr::addr_of!(FILTER) as usize, size_of_val(&FILTER)),
        (core::ptr::addr_of!(BLOCKS) as usize, size_of_val(&BLOCKS)),
    ]
}
