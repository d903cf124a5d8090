//! Request timestamps: the basic ISO-8601 form SigV4 signs (`YYYYMMDDTHHMMSSZ`), the RFC 1123
//! `Date` header fallback, and Unix seconds. Hand-written parsers on bytes, so no input can make
//! them panic or accept a sign, a fraction or an offset that the string to sign would not contain.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Parses `YYYYMMDDTHHMMSSZ` exactly (16 ASCII bytes, a real calendar date and time of day) and
/// returns Unix seconds.
pub(crate) fn parse_basic(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[4..6])?;
    let day = digits(&b[6..8])?;
    let hour = digits(&b[9..11])?;
    let minute = digits(&b[11..13])?;
    let second = digits(&b[13..15])?;
    to_unix(year, month, day, hour, minute, second)
}

/// Parses an RFC 1123 `Date` header (`Sun, 30 Aug 2015 12:36:00 GMT`, the form botocore writes)
/// and returns Unix seconds. The weekday name is checked for shape, not for agreement with the date.
pub(crate) fn parse_rfc1123(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    // "Www, DD Mon YYYY HH:MM:SS GMT" is 29 bytes.
    if b.len() != 29
        || b[3] != b','
        || b[4] != b' '
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
        || b[19] != b':'
        || b[22] != b':'
        || b[25] != b' '
        || &b[26..29] != b"GMT"
    {
        return None;
    }
    const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    if !DAYS.iter().any(|d| d[..] == b[0..3]) {
        return None;
    }
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| m[..] == b[8..11])? as u32 + 1;
    let day = digits(&b[5..7])?;
    let year = digits(&b[12..16])?;
    let hour = digits(&b[17..19])?;
    let minute = digits(&b[20..22])?;
    let second = digits(&b[23..25])?;
    to_unix(year, month, day, hour, minute, second)
}

/// Formats Unix seconds as `YYYYMMDDTHHMMSSZ`. Instants outside years 0000..=9999 are clamped to
/// that range, so the output is always 16 characters (only a broken clock gets there).
pub fn format_basic(unix: i64) -> String {
    const MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let t = OffsetDateTime::from_unix_timestamp(unix.clamp(MIN, MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn to_unix(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<i64> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    let time = Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    Some(
        PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_round_trips_and_rejects_near_misses() {
        assert_eq!(parse_basic("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(format_basic(1_440_938_160), "20150830T123600Z");
        for bad in [
            "",
            "20150830T123600",
            "20150830 123600Z",
            "2015083OT123600Z",
            "20150230T123600Z",
            "20150830T246000Z",
            "+0150830T123600Z",
            "20150830T123600z",
            "20150830T12360\u{e9}",
        ] {
            assert_eq!(parse_basic(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc1123_parses_the_botocore_form() {
        assert_eq!(
            parse_rfc1123("Sun, 30 Aug 2015 12:36:00 GMT"),
            Some(1_440_938_160)
        );
        assert_eq!(parse_rfc1123("Sun, 30 Aug 2015 12:36:00 UTC"), None);
        assert_eq!(parse_rfc1123("Xyz, 30 Aug 2015 12:36:00 GMT"), None);
        assert_eq!(parse_rfc1123("Sun, 31 Feb 2015 12:36:00 GMT"), None);
        assert_eq!(parse_rfc1123("Sun, 30 Aug 2015 12:36:00 GM\u{e9}"), None);
    }

    #[test]
    fn format_clamps_absurd_instants() {
        assert_eq!(format_basic(i64::MIN), "00000101T000000Z");
        assert_eq!(format_basic(i64::MAX), "99991231T235959Z");
    }
}
