//! MaxConcurrency / MaxErrors: parsing the AWS string forms and resolving them against a target count.
//!
//! choice (AWS documents no rounding): a percentage of MaxConcurrency rounds **up** and is at least 1,
//! so `10%` of 15 nodes runs 2 at a time; a percentage of MaxErrors rounds **down**, so `10%` of 15
//! tolerates 1 error and fails on the 2nd — the conservative reading of both limits.

/// A number or a percentage, as sent in MaxConcurrency / MaxErrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u32),
    Percent(u32),
}

impl Limit {
    /// Parses `"10"` or `"10%"`. Pattern checks live in the wire validation; this only interprets.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(p) = s.strip_suffix('%') {
            let n: u32 = p.parse().ok()?;
            (n <= 100).then_some(Self::Percent(n))
        } else {
            s.parse().ok().map(Self::Count)
        }
    }

    /// Concurrency for `targets` nodes: percentages round up, never below 1.
    pub fn concurrency(self, targets: u32) -> u32 {
        let n = match self {
            Self::Count(n) => n,
            Self::Percent(p) => (u64::from(targets) * u64::from(p)).div_ceil(100) as u32,
        };
        n.max(1)
    }

    /// Error budget for `targets` nodes: percentages round down.
    pub fn error_budget(self, targets: u32) -> u32 {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => (u64::from(targets) * u64::from(p) / 100) as u32,
        }
    }
}

/// Default MaxConcurrency echoed when the caller sent none.
pub const DEFAULT_MAX_CONCURRENCY: &str = "50";
/// Default MaxErrors echoed when the caller sent none.
pub const DEFAULT_MAX_ERRORS: &str = "0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        assert_eq!(Limit::parse("50"), Some(Limit::Count(50)));
        assert_eq!(Limit::parse("10%"), Some(Limit::Percent(10)));
        assert_eq!(Limit::parse("x"), None);
        assert_eq!(Limit::Percent(10).concurrency(15), 2);
        assert_eq!(Limit::Percent(1).concurrency(5), 1);
        assert_eq!(Limit::Count(5).concurrency(3), 5);
        assert_eq!(Limit::Percent(10).error_budget(15), 1);
        assert_eq!(Limit::Percent(10).error_budget(50), 5);
        assert_eq!(Limit::Percent(0).error_budget(50), 0);
        assert_eq!(Limit::Count(0).error_budget(50), 0);
    }
}
