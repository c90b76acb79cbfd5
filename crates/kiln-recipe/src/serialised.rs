//! Serde for the value types: each is kept as the string the recipe format
//! writes (`"1000:1000"`, `"500ms"`, `"docker://HOST/REPO:TAG"`) and parsed
//! again when read back, so a value read from storage is as valid as one
//! read from a recipe.

use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::values::{BaseRef, Duration, ImageName, Mode, Owner, Platform, Port, SecretSource};

/// Serialise through `Display`, deserialise through `FromStr`.
macro_rules! as_string {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                <$t>::from_str(&text).map_err(D::Error::custom)
            }
        }
    )*};
}

as_string!(
    BaseRef,
    Duration,
    ImageName,
    Owner,
    Platform,
    Port,
    SecretSource
);

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.bits())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Mode::new(u32::deserialize(d)?).map_err(D::Error::custom)
    }
}
