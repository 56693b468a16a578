//! Money: amounts as integer micro-units, currencies as ISO 4217 codes.

use serde::Serialize;
use serde_json::Value;

use super::InvalidField;

const MICROS_PER_UNIT: i64 = 1_000_000;
/// The largest amount accepted anywhere (one trillion units): far above any
/// real budget. In micro-units it is 1e18, and `i64::MAX` is about 9.22e18:
/// nine of them still fit in a sum, ten do not, so every sum of amounts is
/// checked ([`Amount::checked_sum`]) or bounded ([`SpendMultiple`]).
const MAX_UNITS: i64 = 1_000_000_000_000;

/// An amount of money, exact to a millionth of a unit. Stored as
/// micro-units (a `BIGINT` / `INTEGER` column, `*_micros`); shown as a JSON
/// number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, utoipa::ToSchema, sqlx::Type,
)]
#[sqlx(transparent)]
#[schema(value_type = f64, example = 12500.5)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    /// The documented maximum (1e12 units): of one package's budget, of a
    /// buy's total budget, of a rate and of one day's spend.
    pub const MAX: Amount = Amount(MAX_UNITS * MICROS_PER_UNIT);

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// The amount as a float, for display and notifications.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_UNIT as f64
    }

    /// Parses a JSON number or decimal string with at most six decimals,
    /// between 0 and one trillion.
    pub fn parse(field: &'static str, value: &Value) -> Result<Self, InvalidField> {
        let text = match value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_owned(),
            _ => return Err(InvalidField::new(field, "must be a number")),
        };
        Self::parse_decimal(&text).ok_or_else(|| {
            InvalidField::new(
                field,
                "must be a decimal number between 0 and 1e12 with at most 6 decimals",
            )
        })
    }

    /// Parses a positive amount (> 0).
    pub fn parse_positive(field: &'static str, value: &Value) -> Result<Self, InvalidField> {
        let amount = Self::parse(field, value)?;
        if amount.0 == 0 {
            return Err(InvalidField::new(field, "must be greater than 0"));
        }
        Ok(amount)
    }

    fn parse_decimal(text: &str) -> Option<Self> {
        // serde_json prints large or tiny floats with an exponent; refuse
        // those rather than guess.
        if text.starts_with('-') || text.contains(['e', 'E']) {
            return None;
        }
        let (units, fraction) = text.split_once('.').unwrap_or((text, ""));
        if units.is_empty()
            || fraction.len() > 6
            || !units.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let units: i64 = units.parse().ok()?;
        if units > MAX_UNITS {
            return None;
        }
        let fraction: i64 = format!("{fraction:0<6}").parse().ok()?;
        let micros = units.checked_mul(MICROS_PER_UNIT)?.checked_add(fraction)?;
        (micros <= MAX_UNITS * MICROS_PER_UNIT).then_some(Self(micros))
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// The sum of `amounts`, or `None` when it does not fit in 64 bits of
    /// micro-units: a sum is never wrapped, saturated or cut short.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Amount>) -> Option<Amount> {
        amounts
            .into_iter()
            .try_fold(Amount::ZERO, Amount::checked_add)
    }
}

impl std::fmt::Display for Amount {
    /// Units with up to six decimals, exactly (`12.5`, `1000000000000`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let micros = self.0.unsigned_abs();
        let per_unit = MICROS_PER_UNIT.unsigned_abs();
        let (units, fraction) = (micros / per_unit, micros % per_unit);
        if fraction == 0 {
            write!(f, "{sign}{units}")
        } else {
            let fraction = format!("{fraction:06}");
            write!(f, "{sign}{units}.{}", fraction.trim_end_matches('0'))
        }
    }
}

/// `DELIVERY_SPEND_MAX_BUDGET_MULTIPLE`: how many times its budget a media
/// buy's recorded delivery spend may total. A delivery post beyond it is
/// refused (422), not stored and flagged: the bound is what keeps every sum
/// of a buy's spend inside an `i64` (see [`SpendMultiple::CEILING`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendMultiple(i64);

impl SpendMultiple {
    /// Twice the budget: room for an ad server's over-delivery, far below
    /// anything that could wrap.
    pub const DEFAULT: SpendMultiple = SpendMultiple(2 * MICROS_PER_UNIT);
    /// The largest multiple: nine times the largest budget is 9e18
    /// micro-units, under `i64::MAX` (about 9.22e18), so a buy's total spend
    /// always fits whatever the setting.
    pub const CEILING: SpendMultiple = SpendMultiple(9 * MICROS_PER_UNIT);

    /// A decimal from 1 to 9 with at most six decimals (`2`, `1.25`).
    pub fn parse(text: &str) -> Result<Self, String> {
        Amount::parse_decimal(text.trim())
            .filter(|m| (MICROS_PER_UNIT..=Self::CEILING.0).contains(&m.0))
            .map(|m| Self(m.0))
            .ok_or_else(|| "expected a number from 1 to 9 (such as 2 or 1.5)".to_owned())
    }

    /// The most a buy of `budget` may have spent in all. Computed in 128
    /// bits; at most `i64::MAX` (a budget above [`Amount::MAX`], written
    /// before the bound, caps there).
    pub fn cap(self, budget: Amount) -> Amount {
        let micros = i128::from(budget.0) * i128::from(self.0) / i128::from(MICROS_PER_UNIT);
        Amount(i64::try_from(micros.max(0)).unwrap_or(i64::MAX))
    }

    /// Whether a buy of `budget` whose recorded spend totals `before` may
    /// total `after` (`None`: a sum that does not fit). A change that does
    /// not raise the total (a correction) is always allowed, even when an
    /// earlier budget cut left the total above the cap.
    pub fn allows(self, budget: Amount, before: Option<Amount>, after: Option<Amount>) -> bool {
        match after {
            None => false,
            Some(after) => after <= self.cap(budget) || before.is_some_and(|b| after <= b),
        }
    }
}

impl std::fmt::Display for SpendMultiple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Amount(self.0).fmt(f)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

/// An ISO 4217 currency code (upper case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

/// In the OpenAPI document: a string, one of the codes [`Currency::parse`]
/// accepts.
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An ISO 4217 currency code (upper case)."))
            .enum_values(Some(ISO_4217.split_ascii_whitespace()))
            .examples(["USD"])
            .into()
    }
}

impl utoipa::ToSchema for Currency {}

/// Active ISO 4217 codes (the standard's list, as of 2026).
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP \
DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR \
ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK \
MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG \
QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND \
TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC \
XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA YER ZAR ZMW ZWG";

impl Currency {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        let known = value.len() == 3 && ISO_4217.split_ascii_whitespace().any(|c| c == value);
        if known {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidField::new(
                field,
                "must be an ISO 4217 currency code such as USD",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidField;

    fn try_from(value: String) -> Result<Self, InvalidField> {
        Self::parse("currency", &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_exact_to_the_micro_unit() {
        let ok = [
            (json!(10000), 10_000_000_000),
            (json!(0.1), 100_000),
            (json!("12.345678"), 12_345_678),
            (json!(1e12), 1_000_000_000_000_000_000),
            (json!(0), 0),
        ];
        for (value, micros) in ok {
            assert_eq!(
                Amount::parse("b", &value).unwrap().micros(),
                micros,
                "{value}"
            );
        }
        for bad in [
            json!(-1),
            json!(1e13),
            json!("1.0000001"),
            json!("x"),
            json!(null),
            json!(true),
            json!("1e3"),
        ] {
            assert!(Amount::parse("b", &bad).is_err(), "{bad}");
        }
        assert!(Amount::parse_positive("b", &json!(0)).is_err());
        assert!(Amount::parse_positive("b", &json!("0.000")).is_err());
        assert_eq!(Amount::parse("b", &json!(1e12)).unwrap(), Amount::MAX);
    }

    #[test]
    fn sums_are_checked_never_wrapped() {
        let max = Amount::MAX;
        assert_eq!(
            Amount::checked_sum([max; 9]),
            Some(Amount::from_micros(9_000_000_000_000_000_000))
        );
        // The tenth of 1e12 does not fit: no wrapped, saturated or partial sum.
        assert_eq!(Amount::checked_sum([max; 10]), None);
        assert_eq!(Amount::checked_sum([]), Some(Amount::ZERO));
        assert_eq!(Amount::from_micros(12_500_000).to_string(), "12.5");
        assert_eq!(Amount::from_micros(1).to_string(), "0.000001");
        assert_eq!(max.to_string(), "1000000000000");
    }

    #[test]
    fn the_spend_multiple_bounds_every_sum_of_a_buys_spend() {
        assert_eq!(SpendMultiple::parse("2"), Ok(SpendMultiple::DEFAULT));
        assert_eq!(SpendMultiple::parse("9"), Ok(SpendMultiple::CEILING));
        let m = SpendMultiple::parse("1.5").unwrap();
        assert_eq!(m.to_string(), "1.5");
        for bad in ["0.99", "9.000001", "10", "-2", "1e1", "x", ""] {
            assert!(SpendMultiple::parse(bad).is_err(), "{bad}");
        }
        let hundred = Amount::from_micros(100_000_000);
        assert_eq!(m.cap(hundred), Amount::from_micros(150_000_000));
        // The ceiling times the largest budget fits in an i64.
        assert_eq!(
            SpendMultiple::CEILING.cap(Amount::MAX),
            Amount::checked_sum([Amount::MAX; 9]).unwrap()
        );
        // A budget written before the bound caps at i64::MAX, never wraps.
        assert_eq!(
            SpendMultiple::CEILING.cap(Amount::from_micros(i64::MAX)),
            Amount::from_micros(i64::MAX)
        );
        let d = SpendMultiple::DEFAULT;
        let at = |micros| Some(Amount::from_micros(micros));
        assert!(d.allows(hundred, at(0), at(200_000_000)));
        assert!(!d.allows(hundred, at(0), at(200_000_001)));
        assert!(!d.allows(hundred, at(0), None), "an overflowing sum");
        // A correction downwards is allowed above the cap.
        assert!(d.allows(hundred, at(500_000_000), at(400_000_000)));
        assert!(!d.allows(hundred, at(500_000_000), at(500_000_001)));
    }

    #[test]
    fn currencies_are_iso_4217_codes() {
        assert_eq!(Currency::parse("c", "USD").unwrap().as_str(), "USD");
        for bad in ["usd", "XYZ", "US", "USDD", ""] {
            assert!(Currency::parse("c", bad).is_err(), "{bad}");
        }
    }
}
