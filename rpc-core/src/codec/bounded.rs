//! A serde `Deserializer` around bincode's that allocates only for what the body holds.
//!
//! bincode and serde both trust a length the body declares: bincode allocates a string's
//! length before reading its bytes, and serde's `Vec` and map visitors reserve room for the
//! declared number of elements (up to 1 MiB per container). [`Bounded`] stands between them:
//! it reads strings and byte strings itself, from the body, once their length is known to fit;
//! it tells visitors a `size_hint` no larger than the bytes left and a budget for the whole
//! body; and it counts the elements of every sequence and map. Every other call passes straight
//! through, so the bytes accepted and the values produced are bincode's.

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::body::Body;

/// bincode's deserializer `de`, held to the body's size.
pub(super) struct Bounded<'b, D> {
    de: D,
    body: &'b Body<'b>,
}

impl<'b, D> Bounded<'b, D> {
    pub(super) fn new(de: D, body: &'b Body<'b>) -> Self {
        Bounded { de, body }
    }
}

impl<'b, 'de, D: Deserializer<'de>> Bounded<'b, D> {
    /// A string's or byte string's bytes, taken from the body once its declared length is
    /// known to fit: bincode would allocate the length first and read after.
    fn length_prefixed(self) -> Result<&'b [u8], D::Error> {
        let body = self.body;
        // Read through bincode so the length is a varint exactly as bincode reads one.
        let len = self.de.deserialize_u64(Length)?;
        let left = body.left();
        usize::try_from(len).ok().and_then(|len| body.take(len)).ok_or_else(|| {
            de::Error::custom(format_args!(
                "a length of {len} bytes where the body has {left} left"
            ))
        })
    }
}

/// Calls that read no length and hand the visitor no nested deserializer go straight through.
macro_rules! pass_through {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    pass_through! {
        deserialize_any deserialize_bool deserialize_char deserialize_unit
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        match std::str::from_utf8(self.length_prefixed()?) {
            // An owned string, as bincode hands visitors.
            Ok(text) => visitor.visit_string(text.to_owned()),
            Err(_) => Err(de::Error::custom("a string that is not valid UTF-8")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // One copy from the body into the buffer the visitor keeps (a `Bytes` takes it whole).
        visitor.visit_byte_buf(self.length_prefixed()?.to_vec())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_option(Wrap::fixed(visitor, self.body))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_newtype_struct(name, Wrap::fixed(visitor, self.body))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_seq(Wrap::declared(visitor, self.body))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_tuple(len, Wrap::fixed(visitor, self.body))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_tuple_struct(name, len, Wrap::fixed(visitor, self.body))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_map(Wrap::declared(visitor, self.body))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_struct(name, fields, Wrap::fixed(visitor, self.body))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_enum(name, variants, Wrap::fixed(visitor, self.body))
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Reads a length: bincode hands it to `visit_u64`.
struct Length;

impl Visitor<'_> for Length {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a length")
    }

    fn visit_u64<E: de::Error>(self, len: u64) -> Result<u64, E> {
        Ok(len)
    }
}

/// A visitor whose nested deserializers, sequences, maps and enums are wrapped in turn.
struct Wrap<'b, V> {
    visitor: V,
    body: &'b Body<'b>,
    /// Whether a sequence visited comes with a length from the body (a `Vec`), rather than one
    /// fixed by the type (a tuple or a struct's fields).
    declared: bool,
}

impl<'b, V> Wrap<'b, V> {
    fn declared(visitor: V, body: &'b Body<'b>) -> Self {
        Wrap { visitor, body, declared: true }
    }

    fn fixed(visitor: V, body: &'b Body<'b>) -> Self {
        Wrap { visitor, body, declared: false }
    }
}

// bincode's deserializer calls only these on the visitors it is given for options, newtypes,
// sequences, tuples, structs, maps and enums; anything else keeps serde's default (an error).
impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Bounded::new(de, self.body))
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Bounded::new(de, self.body))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let declared = self.declared;
        self.visitor.visit_seq(Seq { seq, body: self.body, declared, granted: Cell::new(None) })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Map { map, body: self.body, granted: Cell::new(None) })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(Enum { data, body: self.body })
    }
}

/// A sequence's `size_hint` as far as the body allows. `granted` is the room granted on the
/// first call: asking again does not spend the body-wide budget again, and a visitor that
/// reserves on every call can hold room for no more than that plus the elements it has.
fn bounded_hint(
    declared: Option<usize>,
    granted: &Cell<Option<usize>>,
    body: &Body<'_>,
) -> Option<usize> {
    let declared = declared?;
    Some(match granted.get() {
        Some(granted) => declared.min(granted),
        None => {
            let granted_now = body.reserve(declared);
            granted.set(Some(granted_now));
            granted_now
        }
    })
}

struct Seq<'b, A> {
    seq: A,
    body: &'b Body<'b>,
    declared: bool,
    granted: Cell<Option<usize>>,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let element = self.seq.next_element_seed(Seed { seed, body: self.body })?;
        if element.is_some() && self.declared {
            self.body.count_element()?;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        if !self.declared {
            // A tuple's or struct's length comes from the type, not the body.
            return self.seq.size_hint();
        }
        bounded_hint(self.seq.size_hint(), &self.granted, self.body)
    }
}

struct Map<'b, A> {
    map: A,
    body: &'b Body<'b>,
    granted: Cell<Option<usize>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let key = self.map.next_key_seed(Seed { seed, body: self.body })?;
        if key.is_some() {
            self.body.count_element()?;
        }
        Ok(key)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(Seed { seed, body: self.body })
    }

    fn size_hint(&self) -> Option<usize> {
        bounded_hint(self.map.size_hint(), &self.granted, self.body)
    }
}

/// A seed whose deserializer is wrapped.
struct Seed<'b, S> {
    seed: S,
    body: &'b Body<'b>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Bounded::new(de, self.body))
    }
}

struct Enum<'b, A> {
    data: A,
    body: &'b Body<'b>,
}

impl<'b, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'b, A> {
    type Error = A::Error;
    type Variant = Variant<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        // The seed reads only the variant index, from a deserializer of its own.
        let (value, variant) = self.data.variant_seed(seed)?;
        Ok((value, Variant { variant, body: self.body }))
    }
}

struct Variant<'b, A> {
    variant: A,
    body: &'b Body<'b>,
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.variant.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.variant.newtype_variant_seed(Seed { seed, body: self.body })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.variant.tuple_variant(len, Wrap::fixed(visitor, self.body))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.variant.struct_variant(fields, Wrap::fixed(visitor, self.body))
    }
}
