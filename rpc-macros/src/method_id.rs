//! Method ids: the stable 32-bit number that names a method on the wire.
//!
//! # The rule
//!
//! A method's id is the FNV-1a 32-bit hash of the UTF-8 string
//!
//! ```text
//! {Service}.{method}({ArgType1},{ArgType2},...)->{ReturnType}
//! ```
//!
//! - `{Service}` and `{method}` are the trait's and the method's names, without a raw `r#`
//!   prefix (`r#type` is spelled `type`).
//! - The argument types are those of the parameters after `&self`, in order, separated by `,`
//!   with no space; a call-context parameter (`ctx: &Context`) is not sent and not listed. The
//!   parentheses are there even when the list is empty: `Calculator.reset()->()`.
//! - `{ReturnType}` is the declared return type, or `()` when none is declared.
//! - Each type is spelled as its tokens are written in the trait, with all whitespace removed
//!   (in Rust terms: `quote!(#ty).to_string()` minus whitespace), so formatting does not change
//!   an id but spelling does: `Vec<i64>` and `std::vec::Vec<i64>` give different ids.
//!
//! Examples: `Calculator.add(i64,i64)->i64`, `Calculator.reset()->()`,
//! `Store.get(String)->Option<String>`.
//!
//! FNV-1a 32: start with `h = 0x811c9dc5`; for each byte `b` of the string,
//! `h = (h XOR b) * 0x01000193` modulo 2^32.
//!
//! So adding or reordering methods leaves every other id unchanged, while changing a method's
//! argument or return types gives it a new id: an old peer then gets "unknown method" instead of
//! misreading the bytes.

use quote::ToTokens;

use crate::parse::Method;

/// A method's signature string and its id.
pub(crate) fn id(service: &str, method: &Method<'_>) -> (String, u32) {
    let signature = signature(service, method);
    let id = fnv1a32(signature.as_bytes());
    (signature, id)
}

/// The name of the generated client's constant holding a method's id: `add` → `ADD_ID`.
pub(crate) fn const_name(method: &Method<'_>) -> String {
    format!("{}_ID", method.name.to_uppercase())
}

/// The string a method's id is the hash of; see the module docs.
fn signature(service: &str, method: &Method<'_>) -> String {
    let args: Vec<String> = method.args.iter().map(|arg| spell(arg.ty())).collect();
    let output = method.output.map_or_else(|| "()".to_owned(), spell);
    format!("{service}.{}({})->{output}", method.name, args.join(","))
}

/// FNV-1a, 32 bits.
pub(crate) fn fnv1a32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |h, &b| (h ^ u32::from(b)).wrapping_mul(PRIME))
}

/// A type's tokens with all whitespace removed.
fn spell(ty: &syn::Type) -> String {
    let mut spelled = ty.to_token_stream().to_string();
    spelled.retain(|c| !c.is_whitespace());
    spelled
}

#[cfg(test)]
mod tests {
    use super::fnv1a32;

    #[test]
    fn fnv1a32_matches_the_published_test_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }
}
