//! Server-side time. Every deadline (ExpiresAfter, ping age) is computed from this clock, never the agent's.

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Now, in epoch milliseconds.
pub fn now_millis() -> Millis {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

/// Formats epoch milliseconds as ISO-8601 UTC with millisecond precision, e.g. `2019-02-14T19:26:26.439Z`.
pub fn iso8601(ms: Millis) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Formats a duration in ms as an ISO-8601 duration the way SSM does: `PT0.541S`, `PT1H0.271S`, `PT2M3.5S`.
pub fn iso8601_duration(ms: Millis) -> String {
    let ms = ms.max(0);
    let hours = ms / 3_600_000;
    let minutes = (ms % 3_600_000) / 60_000;
    let secs = (ms % 60_000) / 1000;
    let frac = ms % 1000;
    let mut out = String::from("PT");
    if hours > 0 {
        out.push_str(&format!("{hours}H"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}M"));
    }
    out.push_str(&format!("{secs}.{frac:03}S"));
    out
}

/// Parses the timestamp forms accepted by the InvokedAfter/InvokedBefore filters: RFC 3339 / ISO-8601
/// (`2024-07-07T00:00:00Z`, with fractions or an offset), a bare date (`2024-07-07`, midnight UTC) or
/// a date-time without a zone (taken as UTC).
pub fn parse_timestamp(s: &str) -> Option<Millis> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as Millis);
    }
    let naive_formats = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ];
    for f in naive_formats {
        if let Ok(t) = time::PrimitiveDateTime::parse(s, &f) {
            return Some((t.assume_utc().unix_timestamp_nanos() / 1_000_000) as Millis);
        }
    }
    let date = format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date) {
        return Some((d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as Millis);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_ssm() {
        assert_eq!(iso8601(1_550_172_386_439), "2019-02-14T19:26:26.439Z");
        assert_eq!(iso8601_duration(541), "PT0.541S");
        assert_eq!(iso8601_duration(3_600_271), "PT1H0.271S");
        assert_eq!(iso8601_duration(123_500), "PT2M3.500S");
    }

    #[test]
    fn parses_filter_timestamps() {
        assert_eq!(
            parse_timestamp("2019-02-14T19:26:26.439Z"),
            Some(1_550_172_386_439)
        );
        assert_eq!(
            parse_timestamp("2019-02-14T19:26:26Z"),
            Some(1_550_172_386_000)
        );
        assert_eq!(
            parse_timestamp("2019-02-14T19:26:26"),
            Some(1_550_172_386_000)
        );
        assert_eq!(
            parse_timestamp("2019-02-14T20:26:26+01:00"),
            Some(1_550_172_386_000)
        );
        assert_eq!(parse_timestamp("2019-02-14"), Some(1_550_102_400_000));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2019-13-01T00:00:00Z"), None);
    }
}
