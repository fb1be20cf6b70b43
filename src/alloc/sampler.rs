//! Poisson sampling by bytes, as Go's `MemProfileRate` and tcmalloc do.
//!
//! Each thread keeps a countdown of bytes until its next sample, drawn from an
//! exponential distribution with mean `rate`. Every allocation subtracts its
//! size; the allocation that takes the countdown below zero is sampled and a
//! fresh countdown is drawn. Because the exponential distribution is
//! memoryless, this samples every *byte* independently with probability
//! `1/rate`, so an allocation of `size` bytes is sampled with probability
//! `p = 1 - exp(-size / rate)`, and weighting each sample by `1 / p` (Go's
//! scale factor, applied per sample before summing) gives unbiased estimates
//! of counts and bytes.
//!
//! `rate = 1` samples every allocation (`p = 1`, exact); `rate = 0` turns
//! sampling off while the exact totals stay on. The start value comes from
//! the environment variable `LEAKSCOPE_SAMPLE_RATE` (read without allocating,
//! on first use), else 512 KiB; [`set_sample_rate`] changes it at run time:
//! every thread picks the new rate up at its next allocation (it compares a
//! global epoch, one relaxed load of a read-mostly cache line).

use core::sync::atomic::{AtomicU64, Ordering};

/// Go's default `MemProfileRate`.
pub const DEFAULT_SAMPLE_RATE: usize = 512 * 1024;

const UNSET: u64 = u64::MAX;
static RATE: AtomicU64 = AtomicU64::new(UNSET);
/// Bumped on every rate or seed change; threads compare it to their own copy.
pub(crate) static EPOCH: AtomicU64 = AtomicU64::new(1);
/// Seed that threads derive their generators from after an epoch change.
static SEED: AtomicU64 = AtomicU64::new(0);

/// The current sampling rate in bytes (0 = off, 1 = every allocation).
pub fn sample_rate() -> usize {
    current_rate() as usize
}

/// Sets the mean number of bytes between samples.
///
/// `0` turns sampling off (exact totals stay on); `1` samples every
/// allocation (exact per-site numbers, for tests). The calling thread uses
/// the new rate from its next allocation on; other threads pick it up within
/// their next 256 KiB of allocation.
///
/// # Examples
///
/// ```
/// leakscope::set_sample_rate(1);
/// assert_eq!(leakscope::sample_rate(), 1);
/// leakscope::set_sample_rate(512 * 1024);
/// ```
pub fn set_sample_rate(bytes: usize) {
    RATE.store(bytes as u64, Ordering::Relaxed);
    EPOCH.fetch_add(1, Ordering::Release);
    super::guard::rearm_current_thread();
}

/// Reseeds every thread's sampling generator from `seed` (the calling
/// thread at its next allocation, others within 256 KiB of allocation),
/// making sampling decisions repeatable for a given sequence of allocations
/// on a thread. For tests.
pub(crate) fn set_sample_seed(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
    EPOCH.fetch_add(1, Ordering::Release);
    super::guard::rearm_current_thread();
}

/// The rate, reading `LEAKSCOPE_SAMPLE_RATE` on first use.
#[inline]
pub(crate) fn current_rate() -> u64 {
    let r = RATE.load(Ordering::Relaxed);
    if r != UNSET {
        return r;
    }
    init_rate()
}

#[cold]
fn init_rate() -> u64 {
    let r = env_rate().unwrap_or(DEFAULT_SAMPLE_RATE as u64);
    match RATE.compare_exchange(UNSET, r, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => r,
        Err(current) => current,
    }
}

/// Reads `LEAKSCOPE_SAMPLE_RATE` with `getenv` (no allocation, usable inside
/// the allocator): a byte count, optionally with a binary unit (`65536`,
/// `64k`, `64KiB`, `1M`, `1MiB`, `1g`). A value that does not parse is
/// reported once on stderr (written with `write(2)`, no allocation) and the
/// default is used.
fn env_rate() -> Option<u64> {
    // SAFETY: the name is a valid NUL-terminated C string; `getenv` returns
    // null or a pointer to a NUL-terminated string owned by the environment.
    let p = unsafe { libc::getenv(c"LEAKSCOPE_SAMPLE_RATE".as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` is non-null and points to a NUL-terminated string (above);
    // we only read it before returning.
    let s = unsafe { core::ffi::CStr::from_ptr(p) };
    let rate = parse_rate(s.to_bytes());
    if rate.is_none() {
        const MSG: &[u8] = b"leakscope: ignoring LEAKSCOPE_SAMPLE_RATE (want bytes, e.g. 524288 or 512KiB); using 512KiB\n";
        // SAFETY: writes `MSG.len()` bytes from a valid static buffer to fd
        // 2; a failed or short write is harmless and ignored.
        let _ = unsafe { libc::write(2, MSG.as_ptr().cast(), MSG.len()) };
    }
    rate
}

/// Parses a byte count with an optional binary unit (k/K/KiB, m/M/MiB,
/// g/G/GiB). `None` for anything else, including overflow.
fn parse_rate(b: &[u8]) -> Option<u64> {
    let b = b.trim_ascii();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &b[..digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    let unit = b[digits..].trim_ascii_start();
    let mul: u64 = match unit {
        b"" | b"b" | b"B" => 1,
        b"k" | b"K" | b"KiB" | b"kiB" => 1 << 10,
        b"m" | b"M" | b"MiB" => 1 << 20,
        b"g" | b"G" | b"GiB" => 1 << 30,
        _ => return None,
    };
    v.checked_mul(mul)
}

/// Re-reads rate and seed after an epoch change; returns a fresh countdown
/// and stores the new generator state in `rng`.
pub(crate) fn reseed(rng: &mut u64, thread_salt: u64) {
    let seed = SEED.load(Ordering::Relaxed);
    *rng = splitmix(seed ^ thread_salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
}

/// Draws the distance to the next sample for `rate`.
pub(crate) fn draw(rng: &mut u64, rate: u64) -> i64 {
    match rate {
        0 => i64::MAX,
        1 => 0,
        r => {
            // Uniform in (0, 1] from the top 53 bits.
            let u = ((next_u64(rng) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
            let d = -u.ln() * r as f64;
            if d >= (i64::MAX / 2) as f64 {
                i64::MAX / 2
            } else {
                d as i64
            }
        }
    }
}

fn next_u64(rng: &mut u64) -> u64 {
    // xorshift64*: tiny, no allocation, good enough for sampling gaps.
    if *rng == 0 {
        *rng = 0x2545_F491_4F6C_DD1D;
    }
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Go's scale factor: the expected number of allocations one sample of
/// `size` bytes stands for at `rate`.
#[inline]
pub(crate) fn weight(size: u64, rate: u64) -> f64 {
    if rate <= 1 || size == 0 {
        return 1.0;
    }
    let p = 1.0 - (-(size as f64) / rate as f64).exp();
    if p <= 0.0 {
        // Unreachable for size >= 1 and finite rate; never divide by zero.
        rate as f64
    } else {
        1.0 / p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate(b"4096"), Some(4096));
        assert_eq!(parse_rate(b" 1 "), Some(1));
        assert_eq!(parse_rate(b"0"), Some(0));
        assert_eq!(parse_rate(b"64k"), Some(65536));
        assert_eq!(parse_rate(b"512 KiB"), Some(524_288));
        assert_eq!(parse_rate(b"1MiB"), Some(1 << 20));
        assert_eq!(parse_rate(b"2g"), Some(2 << 30));
        assert_eq!(parse_rate(b"-5"), None);
        assert_eq!(parse_rate(b"1kb"), None);
        assert_eq!(parse_rate(b"k"), None);
        assert_eq!(parse_rate(b""), None);
        assert_eq!(parse_rate(b"99999999999999999999"), None);
        assert_eq!(parse_rate(b"9999999999999999999G"), None);
    }

    #[test]
    fn draws_have_the_right_mean() {
        let mut rng = 42;
        let n = 200_000;
        let rate = 1000;
        let sum: f64 = (0..n).map(|_| draw(&mut rng, rate) as f64).sum();
        let mean = sum / n as f64;
        // Exponential: sd = mean, so the sample mean's sd is 1000/sqrt(2e5) ~ 2.2;
        // the truncation to integers lowers the mean by ~0.5. 10 sd of room.
        assert!((mean - 999.5).abs() < 25.0, "mean {mean}");
        assert_eq!(draw(&mut rng, 1), 0);
        assert_eq!(draw(&mut rng, 0), i64::MAX);
    }

    #[test]
    fn weight_is_go_scale_factor() {
        assert_eq!(weight(100, 1), 1.0);
        let w = weight(512 * 1024, 512 * 1024);
        assert!((w - 1.0 / (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert!((weight(1, 1 << 19) - (1u64 << 19) as f64).abs() < 1.0);
    }
}
