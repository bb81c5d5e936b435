//! External beneficiaries: a name plus an IBAN, or a US routing and account number.
//!
//! IBANs are checked by the `iban_validate` crate (country format and mod-97 checksum); ABA
//! routing numbers by their weighted checksum.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest beneficiary name accepted.
pub const BENEFICIARY_NAME_CHARS_MAX: usize = 140;

/// Someone at another bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beneficiary {
    /// Their name, as the receiving bank knows it.
    pub name: String,
    /// Their account.
    #[serde(flatten)]
    pub account: BeneficiaryAccount,
}

/// An account at another bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BeneficiaryAccount {
    /// An IBAN, in electronic form (no spaces) or print form (groups of four).
    Iban {
        /// The IBAN.
        iban: String,
    },
    /// A US account.
    Us {
        /// Nine-digit ABA routing number.
        routing_number: String,
        /// Account number (4–17 digits).
        account_number: String,
    },
}

impl Beneficiary {
    /// A beneficiary with an IBAN, checked and stored in electronic form.
    pub fn iban(name: impl Into<String>, iban: &str) -> Result<Self> {
        let b = Beneficiary { name: name.into(), account: BeneficiaryAccount::Iban { iban: normalize_iban(iban)? } };
        b.validate()?;
        Ok(b)
    }

    /// Checks the name and the account.
    pub fn validate(&self) -> Result<()> {
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > BENEFICIARY_NAME_CHARS_MAX {
            return Err(Error::invalid(format!(
                "beneficiary name must be 1 to {BENEFICIARY_NAME_CHARS_MAX} characters"
            )));
        }
        if self.name.chars().any(char::is_control) {
            return Err(Error::invalid("beneficiary name must not contain control characters"));
        }
        match &self.account {
            BeneficiaryAccount::Iban { iban } => {
                normalize_iban(iban)?;
            }
            BeneficiaryAccount::Us { routing_number, account_number } => {
                check_routing_number(routing_number)?;
                let digits = account_number.len();
                if !(4..=17).contains(&digits) || !account_number.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::invalid("account number must be 4 to 17 digits"));
                }
            }
        }
        Ok(())
    }

    /// One stable rendering (for fingerprints and rail payloads).
    pub fn canonical(&self) -> String {
        match &self.account {
            BeneficiaryAccount::Iban { iban } => {
                format!("{}|iban:{}", self.name, normalize_iban(iban).unwrap_or_else(|_| iban.clone()))
            }
            BeneficiaryAccount::Us { routing_number, account_number } => {
                format!("{}|aba:{routing_number}:{account_number}", self.name)
            }
        }
    }
}

/// Checks an IBAN and returns its electronic form (upper case, no spaces).
pub fn normalize_iban(text: &str) -> Result<String> {
    if text.len() > 64 {
        return Err(Error::invalid("invalid IBAN"));
    }
    use iban::IbanLike;
    let iban: iban::Iban = text.parse().map_err(|_| Error::invalid("invalid IBAN"))?;
    Ok(iban.electronic_str().to_owned())
}

fn check_routing_number(routing: &str) -> Result<()> {
    let bad = || Error::invalid("routing number must be 9 digits with a valid checksum");
    if routing.len() != 9 || !routing.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let d: Vec<u32> = routing.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8]);
    if !sum.is_multiple_of(10) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_are_checked() {
        assert_eq!(
            Beneficiary::iban("Jane", "DE89 3704 0044 0532 0130 00").map(|b| b.canonical()).ok(),
            Some("Jane|iban:DE89370400440532013000".into())
        );
        assert!(Beneficiary::iban("Jane", "GB82WEST12345698765432").is_ok());
        for bad in ["DE89370400440532013001", "XX00", "", "DE89 3704 0044 0532 0130 0", "GB82WEST1234569876543Z"] {
            assert!(Beneficiary::iban("Jane", bad).is_err(), "{bad}");
        }
        assert!(Beneficiary::iban("", "GB82WEST12345698765432").is_err());
    }

    #[test]
    fn us_accounts_are_checked() {
        let ok = |routing: &str, account: &str| {
            Beneficiary {
                name: "Joe".into(),
                account: BeneficiaryAccount::Us { routing_number: routing.into(), account_number: account.into() },
            }
            .validate()
        };
        assert!(ok("021000021", "123456789").is_ok());
        assert!(ok("021000022", "123456789").is_err());
        assert!(ok("02100002", "123456789").is_err());
        assert!(ok("021000021", "123").is_err());
        assert!(ok("021000021", "12345678901234567890").is_err());
        assert!(ok("021000021", "12a456").is_err());
    }
}
