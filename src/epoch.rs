//! `SOURCE_DATE_EPOCH` as a type, and the one place times are formatted
//! (RFC 3339) and parsed back (times users give, e.g. `attestation verify --at`).
//!
//! Per the reproducible-builds.org specification the value is a decimal count
//! of seconds since 1970-01-01 UTC; anything else is a hard error rather than
//! a silent fallback to the wall clock. Where several places give a value, the
//! command line (the environment) wins over the recipe.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, UTC; the one timestamp eifbake writes anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("SOURCE_DATE_EPOCH={0:?} is not a non-negative integer number of seconds (see https://reproducible-builds.org/specs/source-date-epoch/)")]
pub struct EpochError(pub String);

impl FromStr for Epoch {
    type Err = EpochError;
    fn from_str(s: &str) -> Result<Self, EpochError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EpochError(s.to_string()));
        }
        s.parse::<u64>().map(Epoch).map_err(|_| EpochError(s.to_string()))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Epoch {
    /// `SOURCE_DATE_EPOCH` from the environment: `Ok(None)` when unset,
    /// an error when set but malformed (an empty value counts as unset, as the spec allows).
    pub fn from_env() -> Result<Option<Epoch>, EpochError> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => v.parse().map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(EpochError(v.to_string_lossy().into())),
        }
    }

    /// The epoch as an RFC 3339 UTC timestamp (`1970-01-01T00:00:01Z`), computed
    /// without consulting the host's time zone database.
    pub fn rfc3339(&self) -> String {
        let secs = self.0;
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        // Civil-from-days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let mo = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = if mo <= 2 { y + 1 } else { y };
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
    }

    /// Parse a time a user gives: RFC 3339 in UTC (`2024-09-07T14:37:39Z`,
    /// `+00:00` for `Z`, fractional seconds dropped) or integer seconds since 1970.
    pub fn parse_time(s: &str) -> Result<Epoch, TimeError> {
        let err = || TimeError(s.to_string());
        if let Ok(e) = s.parse::<Epoch>() {
            return Ok(e);
        }
        let t = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00")).ok_or_else(err)?;
        let t = t.split_once('.').map_or(t, |(whole, frac)| {
            if !frac.is_empty() && frac.bytes().all(|b| b.is_ascii_digit()) {
                whole
            } else {
                "invalid"
            }
        });
        let b = t.as_bytes();
        let shape = b.len() == 19
            && [4, 7].iter().all(|&i| b[i] == b'-')
            && matches!(b[10], b'T' | b't' | b' ')
            && [13, 16].iter().all(|&i| b[i] == b':');
        if !shape {
            return Err(err());
        }
        let num = |r: std::ops::Range<usize>| t[r].parse::<u16>().map_err(|_| err());
        let (y, mo, d, h, mi, se) =
            (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
        let dt = x509_cert::der::DateTime::new(y, mo as u8, d as u8, h as u8, mi as u8, se as u8)
            .map_err(|_| err())?;
        Ok(Epoch(dt.unix_duration().as_secs()))
    }
}

/// A time that [`Epoch::parse_time`] cannot read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("time {0:?} is neither RFC 3339 in UTC (e.g. 2024-09-07T14:37:39Z) nor integer seconds since 1970")]
pub struct TimeError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly() {
        assert_eq!("1".parse::<Epoch>().unwrap(), Epoch(1));
        for bad in ["", "-1", "1.5", " 1", "1e9", "0x10", "99999999999999999999999"] {
            assert!(bad.parse::<Epoch>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(Epoch(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Epoch(1).rfc3339(), "1970-01-01T00:00:01Z");
        assert_eq!(Epoch(951_782_400).rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(Epoch(1_774_569_600).rfc3339(), "2026-03-27T00:00:00Z");
    }

    #[test]
    fn parses_times_both_ways() {
        for e in [0, 1, 951_782_400, 1_725_719_859, 1_774_569_600] {
            assert_eq!(Epoch::parse_time(&Epoch(e).rfc3339()), Ok(Epoch(e)));
        }
        assert_eq!(Epoch::parse_time("2024-09-07T14:37:39.545Z"), Ok(Epoch(1_725_719_859)));
        assert_eq!(Epoch::parse_time("2024-09-07T14:37:39+00:00"), Ok(Epoch(1_725_719_859)));
        assert_eq!(Epoch::parse_time("1725719859"), Ok(Epoch(1_725_719_859)));
        for bad in [
            "",
            "2024-09-07",
            "2024-09-07T14:37:39",
            "2024-09-07T14:37:39+02:00",
            "2024-02-30T00:00:00Z",
            "2024-09-07T24:00:00Z",
            "2024-09-07T14:37:39.Z",
            "2024-9-07T14:37:39Z",
            "yesterday",
        ] {
            assert!(Epoch::parse_time(bad).is_err(), "{bad:?} accepted");
        }
    }
}
