//! Money: amounts as integer micro-units, currencies as ISO 4217 codes.

use serde::Serialize;
use serde_json::Value;

use super::InvalidField;

const MICROS_PER_UNIT: i64 = 1_000_000;
/// The largest amount accepted anywhere (one trillion units): far above any
/// real budget, far below what an `i64` of micro-units holds when summed.
const MAX_UNITS: i64 = 1_000_000_000_000;

/// An amount of money, exact to a millionth of a unit. Stored as
/// micro-units; shown as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, utoipa::ToSchema)]
#[schema(value_type = f64, example = 12500.5)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub fn from_micros(micros: i64) -> Self {
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
    }

    #[test]
    fn currencies_are_iso_4217_codes() {
        assert_eq!(Currency::parse("c", "USD").unwrap().as_str(), "USD");
        for bad in ["usd", "XYZ", "US", "USDD", ""] {
            assert!(Currency::parse("c", bad).is_err(), "{bad}");
        }
    }
}
