//! bincode's errors as plain sentences, since they travel to peers written in any language.
//!
//! bincode's own `Display` is its `Debug` (`UnexpectedEnd { additional: 1 }`). These say the
//! same in words: lowercase, no trailing period, no Rust syntax, so that they read well after
//! "bad arguments for Calculator.add: ".

use bincode::error::{AllowedEnumVariants, DecodeError, EncodeError, IntegerType};

/// What went wrong decoding a body.
pub(super) fn decode(error: &DecodeError) -> String {
    match error {
        DecodeError::UnexpectedEnd { additional } | DecodeError::Io { additional, .. } => {
            format!("the body ends {} too early", bytes(*additional))
        }
        DecodeError::LimitExceeded => "the body declares more than it holds".to_owned(),
        DecodeError::InvalidIntegerType { expected, found } => match marker(found) {
            Some(marker) => {
                format!("an integer marker {marker:#04x} where {} was expected", name(expected))
            }
            None => format!("an integer too wide for {}", name(expected)),
        },
        DecodeError::NonZeroTypeIsZero { non_zero_type } => {
            format!("a zero where a non-zero {} was expected", bare(name(non_zero_type)))
        }
        DecodeError::UnexpectedVariant { type_name, allowed, found } => {
            // bincode reports an option's marker byte as the variant of an enum `Option<T>`.
            if type_name.starts_with("Option") {
                format!("an option marker {found} where 0 or 1 was expected")
            } else {
                format!("enum variant index {found} out of range{}", range(allowed))
            }
        }
        DecodeError::Utf8 { .. } => "a string that is not valid UTF-8".to_owned(),
        DecodeError::InvalidCharEncoding(_) => "a char that is not valid UTF-8".to_owned(),
        DecodeError::InvalidBooleanValue(value) => {
            format!("a bool of {value} where 0 or 1 was expected")
        }
        DecodeError::ArrayLengthMismatch { required, found } => {
            format!("an array of {found} elements where {required} were expected")
        }
        DecodeError::OutsideUsizeRange(len) => {
            format!("a length of {len}, more than this machine can address")
        }
        DecodeError::EmptyEnum { .. } => "a value of an enum that has no variants".to_owned(),
        DecodeError::InvalidDuration { .. } => "a duration too long to represent".to_owned(),
        DecodeError::InvalidSystemTime { .. } => "a time too far from 1970 to represent".to_owned(),
        DecodeError::CStringNulError { position } => {
            format!("a C string with a zero byte at position {position}")
        }
        DecodeError::Other(message) => (*message).to_owned(),
        // A serde `custom` error: a type's own words, or ours from the bounded deserializer.
        DecodeError::OtherString(message) => message.clone(),
        DecodeError::Serde(serde) => unsupported(serde),
        _ => "the body does not decode as the expected type".to_owned(),
    }
}

/// What went wrong encoding a value.
pub(super) fn encode(error: &EncodeError) -> String {
    match error {
        EncodeError::UnexpectedEnd => "the output ran out of room".to_owned(),
        EncodeError::RefCellAlreadyBorrowed { .. } => {
            "a RefCell that is mutably borrowed elsewhere".to_owned()
        }
        EncodeError::Other(message) => (*message).to_owned(),
        // A serde `custom` error, in the type's own words.
        EncodeError::OtherString(message) => message.clone(),
        EncodeError::InvalidPathCharacters => "a path that is not valid UTF-8".to_owned(),
        EncodeError::Io { inner, .. } => format!("a write failed: {inner}"),
        EncodeError::LockFailed { .. } => "a Mutex or RwLock that is poisoned".to_owned(),
        EncodeError::InvalidSystemTime { .. } => "a time before 1970".to_owned(),
        EncodeError::Serde(bincode::serde::EncodeError::SequenceMustHaveLength) => {
            "a sequence or map that does not know its length in advance".to_owned()
        }
        _ => "the value cannot be encoded".to_owned(),
    }
}

fn unsupported(error: &bincode::serde::DecodeError) -> String {
    use bincode::serde::DecodeError as Serde;
    let why = match error {
        Serde::AnyNotSupported => "it needs a self-describing format",
        Serde::IdentifierNotSupported => "it reads field names",
        Serde::IgnoredAnyNotSupported => "it skips unknown values",
        Serde::CannotBorrowOwnedData => "it borrows from the body",
        _ => "it asks for something bincode does not support",
    };
    format!("the type cannot be decoded from bincode: {why}")
}

fn bytes(n: usize) -> String {
    if n == 1 { "1 byte".to_owned() } else { format!("{n} bytes") }
}

/// The first byte of a varint that announces `found`, the wider type that follows it.
fn marker(found: &IntegerType) -> Option<u8> {
    match found {
        IntegerType::U16 | IntegerType::I16 => Some(0xfb),
        IntegerType::U32 | IntegerType::I32 => Some(0xfc),
        IntegerType::U64 | IntegerType::I64 => Some(0xfd),
        IntegerType::U128 | IntegerType::I128 => Some(0xfe),
        IntegerType::Reserved => Some(0xff),
        _ => None,
    }
}

/// An integer type, with its article, by the name most languages know it by; a `usize`
/// travels as a u64.
fn name(integer: &IntegerType) -> &'static str {
    match integer {
        IntegerType::U8 => "a u8",
        IntegerType::U16 => "a u16",
        IntegerType::U32 => "a u32",
        IntegerType::U64 | IntegerType::Usize => "a u64",
        IntegerType::U128 => "a u128",
        IntegerType::I8 => "an i8",
        IntegerType::I16 => "an i16",
        IntegerType::I32 => "an i32",
        IntegerType::I64 | IntegerType::Isize => "an i64",
        IntegerType::I128 => "an i128",
        _ => "an integer",
    }
}

/// `name` without its article.
fn bare(name: &'static str) -> &'static str {
    name.split_once(' ').map_or(name, |(_, bare)| bare)
}

fn range(allowed: &AllowedEnumVariants) -> String {
    match allowed {
        AllowedEnumVariants::Range { min, max } => format!(" ({min} to {max})"),
        AllowedEnumVariants::Allowed(indexes) => {
            let indexes: Vec<String> = indexes.iter().map(u32::to_string).collect();
            format!(" (one of {})", indexes.join(", "))
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8_error() -> std::str::Utf8Error {
        String::from_utf8(vec![0xC3, 0x28]).expect_err("not UTF-8").utf8_error()
    }

    #[test]
    fn common_decode_errors_read_as_sentences() {
        let cases = [
            (DecodeError::UnexpectedEnd { additional: 1 }, "the body ends 1 byte too early"),
            (DecodeError::UnexpectedEnd { additional: 8 }, "the body ends 8 bytes too early"),
            (
                DecodeError::InvalidIntegerType {
                    expected: IntegerType::U8,
                    found: IntegerType::U32,
                },
                "an integer marker 0xfc where a u8 was expected",
            ),
            (
                DecodeError::InvalidIntegerType {
                    expected: IntegerType::I64,
                    found: IntegerType::Reserved,
                },
                "an integer marker 0xff where an i64 was expected",
            ),
            (DecodeError::Utf8 { inner: utf8_error() }, "a string that is not valid UTF-8"),
            (
                DecodeError::UnexpectedVariant {
                    type_name: "Shape",
                    allowed: &AllowedEnumVariants::Range { min: 0, max: 2 },
                    found: 7,
                },
                "enum variant index 7 out of range (0 to 2)",
            ),
            (
                DecodeError::UnexpectedVariant {
                    type_name: "Option<T>",
                    allowed: &AllowedEnumVariants::Range { min: 0, max: 1 },
                    found: 2,
                },
                "an option marker 2 where 0 or 1 was expected",
            ),
            (DecodeError::InvalidBooleanValue(9), "a bool of 9 where 0 or 1 was expected"),
            (DecodeError::InvalidCharEncoding([0xFF, 0, 0, 0]), "a char that is not valid UTF-8"),
            (
                DecodeError::ArrayLengthMismatch { required: 4, found: 3 },
                "an array of 3 elements where 4 were expected",
            ),
            (
                DecodeError::OutsideUsizeRange(u64::MAX),
                "a length of 18446744073709551615, more than this machine can address",
            ),
            (
                DecodeError::Serde(bincode::serde::DecodeError::AnyNotSupported),
                "the type cannot be decoded from bincode: it needs a self-describing format",
            ),
            (DecodeError::OtherString("in its own words".to_owned()), "in its own words"),
        ];
        for (error, expected) in cases {
            let message = decode(&error);
            assert_eq!(message, expected, "for {error:?}");
            assert!(!message.contains(['{', '}']) && !message.contains("::"), "{message}");
        }
    }

    #[test]
    fn common_encode_errors_read_as_sentences() {
        let cases = [
            (
                EncodeError::Serde(bincode::serde::EncodeError::SequenceMustHaveLength),
                "a sequence or map that does not know its length in advance",
            ),
            (EncodeError::OtherString("in its own words".to_owned()), "in its own words"),
            (EncodeError::InvalidPathCharacters, "a path that is not valid UTF-8"),
        ];
        for (error, expected) in cases {
            assert_eq!(encode(&error), expected, "for {error:?}");
        }
    }
}
