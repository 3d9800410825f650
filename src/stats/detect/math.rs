//! Small numeric helpers shared by the views: tail probabilities in decades, medians, and
//! numbers written for people.

use std::cell::RefCell;

use statrs::function::erf::erfc;

thread_local! {
    /// The buffer every detector on this thread sorts in: one per thread, not one per
    /// series, and no allocation per value once it has grown.
    static SCRATCH: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// Surprise values are capped here (decades) so scores stay finite and comparable.
pub(super) const MAX_DECADES: f64 = 300.0;

/// Runs `f` with this thread's scratch buffer, emptied (a buffer of its own if the
/// thread's is already in use).
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut Vec<f64>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            f(&mut buf)
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// `-log10 P(|Z| > |z|)` for a standard normal `Z`, accurate far into the tail.
pub(super) fn two_sided_decades(z: f64) -> f64 {
    let u = z.abs() / std::f64::consts::SQRT_2;
    let p = erfc(u);
    let ln_p = if p > 1e-300 {
        p.ln()
    } else {
        // Asymptotic expansion of erfc for large u.
        -u * u - (u * std::f64::consts::PI.sqrt()).ln()
    };
    (-ln_p / std::f64::consts::LN_10).max(0.0)
}

/// `-log10 P(Z > z)` (one-sided), 0 for `z <= 0`.
pub(super) fn one_sided_decades(z: f64) -> f64 {
    if z <= 0.0 {
        0.0
    } else {
        (two_sided_decades(z) + std::f64::consts::LOG10_2).max(0.0)
    }
}

/// Median of a slice, sorting it in place; 0 for an empty slice.
pub(super) fn median_sorted(buf: &mut [f64]) -> f64 {
    buf.sort_unstable_by(|a, b| a.total_cmp(b));
    let n = buf.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        buf[n / 2]
    } else {
        0.5 * (buf[n / 2 - 1] + buf[n / 2])
    }
}

/// `d / (d + half)` in `[0, 1]` (0 for NaN or negative input).
pub(super) fn decades_to_score(d: f64, half: f64) -> f64 {
    let s = d / (d + half);
    if s > 0.0 {
        s.min(1.0)
    } else {
        0.0
    }
}

/// A number for a sentence: four significant digits without trailing zeros, thousands
/// separated by commas (`1,032`, `258`, `0.01235`, `-3.5`).
pub fn plain_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let text = format!("{:.digits$}", v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut out = String::with_capacity(text.len() + int.len() / 3 + 1);
    if v < 0.0 {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// A ratio for a sentence: `4.0x`, `0.25x`, `12x`.
pub(super) fn plain_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}x")
    } else if r >= 0.95 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(plain_number(1032.4), "1,032");
        assert_eq!(plain_number(258.0), "258");
        assert_eq!(plain_number(2.5), "2.5");
        assert_eq!(plain_number(1_234_567.0), "1,234,567");
        assert_eq!(plain_number(-1500.0), "-1,500");
        assert_eq!(plain_number(0.012345), "0.01235");
        assert_eq!(plain_ratio(4.0), "4.0x");
        assert_eq!(plain_ratio(0.25), "0.25x");
        assert_eq!(plain_ratio(12.3), "12x");
    }
}
