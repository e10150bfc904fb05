//! Number formatting for human-readable output.

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1.234e9 → "1.23B", 9.4e6 → "9.43M" (parameter and token counts, FLOPs).
pub fn si(x: f64) -> String {
    let (value, suffix) = match x.abs() {
        a if a >= 1e15 => return format!("{x:.3e}"),
        a if a >= 1e12 => (x / 1e12, "T"),
        a if a >= 1e9 => (x / 1e9, "B"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "K"),
        _ => (x, ""),
    };
    format!("{value:.3}{suffix}")
}

/// Three significant digits for labels: 23712 → "23.7k", 1.247e9 → "1.25G".
pub fn si3(x: f64) -> String {
    let (value, suffix) = match x.abs() {
        a if a >= 1e12 => (x / 1e12, "T"),
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    let digits = if value.abs() >= 100.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$}{suffix}")
}

/// A span of seconds in the largest sensible unit: 42s, 12m 5s, 3h 20m.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

/// Four significant digits: 0.04312, 2.151, 1.234e-5, 6.700e31.
pub fn sig(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let exponent = x.abs().log10().floor();
    if (-3.0..5.0).contains(&exponent) {
        format!("{:.*}", (3.0 - exponent).max(0.0) as usize, x)
    } else {
        format!("{x:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_247_442_432), "1,247,442,432");
        assert_eq!(si(2_442_057_984.0), "2.442B");
        assert_eq!(si(9_426_240.0), "9.426M");
        assert_eq!(si3(23_712.0), "23.7k");
        assert_eq!(si3(377_472.0), "377k");
    }
}
