//! Small input types whose `parse` holds the rule, shared by every event that carries them, and their serde
//! `Deserialize` so derived events refuse a bad value with the rule's own message.

use serde::{Deserialize, Deserializer, de};

/// An id or reference that comes from outside (a caller's consumption id, a payment side's reference): 1-255
/// printable ASCII characters without spaces, so it can key an item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(text: &str) -> Result<ExternalId, String> {
        if !text.is_empty() && text.len() <= 255 && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(ExternalId(text.to_owned()))
        } else {
            Err("must be 1-255 printable ASCII characters without spaces".into())
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Free text a person wrote (a reason, a reference): not empty, at most [`MAX_TEXT_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

/// The longest [`Text`].
pub const MAX_TEXT_CHARS: usize = 500;

impl Text {
    pub fn parse(text: &str) -> Result<Text, String> {
        if !text.is_empty() && text.chars().count() <= MAX_TEXT_CHARS {
            Ok(Text(text.to_owned()))
        } else {
            Err(format!("must be a non-empty string of at most {MAX_TEXT_CHARS} characters"))
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An account id (see [`super::is_valid_account_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(text: &str) -> Result<AccountId, String> {
        if super::is_valid_account_id(text) {
            Ok(AccountId(text.to_owned()))
        } else {
            Err("is not an account id (1-64 letters, digits, '-' or '_')".into())
        }
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

macro_rules! deserialize_by_parse {
    ($($name:ident),*) => {$(
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).map_err(|why| de::Error::custom(format!("{text:?} {why}")))
            }
        }
    )*};
}
deserialize_by_parse!(ExternalId, Text, AccountId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_holds_its_rule() {
        assert!(ExternalId::parse("ch_123").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(256)] {
            assert!(ExternalId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Text::parse("card declined").is_ok());
        assert!(Text::parse("").is_err() && Text::parse(&"é".repeat(501)).is_err());
        assert!(Text::parse(&"é".repeat(500)).is_ok());
        assert!(AccountId::parse("acct-a").is_ok() && AccountId::parse("acct a").is_err());
        let error = serde_json::from_str::<ExternalId>("\"a b\"").unwrap_err().to_string();
        assert!(error.contains("printable ASCII"), "{error}");
    }
}
