//! A service-sized sample state shared by the benches that read it
//! (`heap_snapshot`, `scrape`): ~3000 distinct stacks, each a path of
//! binary choices through four `#[inline(never)]` functions, with 33 live
//! blocks each (~99k live samples at sample rate 1).

use std::hint::black_box;

/// Distinct stacks: each is a path of `LEVELS` binary choices.
const LEVELS: u32 = 12;
/// Stacks built.
pub const STACKS: u32 = 3000;
/// Live blocks per stack: 3000 × 33 = 99 000 live samples.
pub const PER_STACK: usize = 33;

#[inline(never)]
fn left(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    step(i, level + 1, out);
    black_box(());
}

#[inline(never)]
fn right(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    step(i, level + 1, out);
    black_box(());
}

#[inline(never)]
fn step(i: u32, level: u32, out: &mut Vec<Box<[u8]>>) {
    if level == LEVELS {
        leaf(i, out);
    } else if i >> level & 1 == 0 {
        left(i, level, out);
    } else {
        right(i, level, out);
    }
}

#[inline(never)]
fn leaf(i: u32, out: &mut Vec<Box<[u8]>>) {
    for k in 0..PER_STACK {
        out.push(vec![0u8; 64 + (i as usize + k) % 512].into_boxed_slice());
    }
}

/// Builds the state at sample rate 1, then turns sampling off (rate 0) so
/// the measurements do not add to it. Keep the blocks alive while measuring.
pub fn build() -> Vec<Box<[u8]>> {
    leakscope::set_sample_rate(1);
    let mut live = Vec::with_capacity(STACKS as usize * PER_STACK);
    for i in 0..STACKS {
        step(i, 0, &mut live);
    }
    leakscope::set_sample_rate(0);
    live
}
