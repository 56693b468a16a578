//! Times and dates the API accepts: years 1 to 9999, in UTC, to the
//! microsecond.
//!
//! RFC 3339 (and the OpenAPI `date-time` and `date` formats) write four-digit
//! years; PostgreSQL has no year 0; both stores keep microseconds and the
//! audit chain hashes timestamps as `YYYY-MM-DDTHH:MM:SS.ffffffZ` text. A time
//! outside this range would not read back as it was written: an audit row
//! that no longer decodes (every listing of its tenant fails) or no longer
//! hashes the same, a response that is not RFC 3339.

use chrono::{DateTime, Datelike, NaiveDate, SubsecRound, Utc};

use super::InvalidField;

const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;
const OUT_OF_RANGE: &str = "must be between 0001-01-01 and 9999-12-31 (UTC)";

/// `at`, cut to the microsecond, if its year (in UTC) is 1 to 9999.
pub fn timestamp(field: &'static str, at: DateTime<Utc>) -> Result<DateTime<Utc>, InvalidField> {
    if YEARS.contains(&at.year()) {
        Ok(at.trunc_subsecs(6))
    } else {
        Err(InvalidField::new(field, OUT_OF_RANGE))
    }
}

/// `day`, if its year is 1 to 9999.
pub fn date(field: &'static str, day: NaiveDate) -> Result<NaiveDate, InvalidField> {
    if YEARS.contains(&day.year()) {
        Ok(day)
    } else {
        Err(InvalidField::new(field, OUT_OF_RANGE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> DateTime<Utc> {
        text.parse::<DateTime<chrono::FixedOffset>>()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn years_one_to_9999_in_utc_are_accepted_to_the_microsecond() {
        assert_eq!(
            timestamp("t", parsed("9999-12-31T23:59:59.9999999Z")).unwrap(),
            parsed("9999-12-31T23:59:59.999999Z")
        );
        assert!(timestamp("t", parsed("0001-01-01T00:00:00Z")).is_ok());
        for bad in [
            "0000-12-31T23:59:59Z",
            // 0000-12-31T23:00:00Z in UTC.
            "0001-01-01T00:00:00+01:00",
            "-0001-01-01T00:00:00Z",
            "+12345-01-01T00:00:00Z",
        ] {
            assert_eq!(timestamp("t", parsed(bad)).unwrap_err().field, "t", "{bad}");
        }
        assert!(date("d", NaiveDate::from_ymd_opt(9999, 12, 31).unwrap()).is_ok());
        for year in [0, -1, 10_000] {
            assert!(date("d", NaiveDate::from_ymd_opt(year, 1, 1).unwrap()).is_err());
        }
    }
}
