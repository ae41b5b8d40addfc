//! Per-call metadata: a few key → value entries a request may carry ([`Metadata`]).

use serde::{Deserialize, Serialize};

/// Most entries one request may carry. A request declaring more breaks the protocol (Close
/// `ProtocolViolation`), so a peer cannot make the server hold many entries.
pub const MAX_ENTRIES: usize = 16;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 64;
/// Longest value, in bytes.
pub const MAX_VALUE: usize = 1024;
/// Most bytes of keys and values together in one request.
pub const MAX_TOTAL: usize = 4096;

/// Key → value entries sent with a request, for what cuts across every method: authentication
/// tokens, trace context (`traceparent`), tenant ids.
///
/// Keys are 1 to [`MAX_KEY`] bytes of lowercase ASCII letters, digits, `-`, `_` and `.`;
/// values are any bytes, at most [`MAX_VALUE`]; at most [`MAX_ENTRIES`] entries and
/// [`MAX_TOTAL`] bytes of keys and values. [`Metadata::insert`] refuses what breaks a limit,
/// so a client never sends it; a server answers a request that breaks one with a `BadMetadata`
/// failure (a count over the limit closes the connection instead). A request without metadata
/// costs no byte for it on the wire.
///
/// ```
/// let mut metadata = rpc_core::Metadata::new();
/// metadata.insert("authorization", "Bearer s3cret")?;
/// assert_eq!(metadata.get_str("authorization"), Some("Bearer s3cret"));
/// # Ok::<(), rpc_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata {
    /// In insertion order; keys are unique. Encoded as bincode's `Vec<(String, Vec<u8>)>`.
    entries: Vec<(String, Vec<u8>)>,
}

impl Metadata {
    /// No entries.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Sets `key` to `value`, replacing an earlier value of `key`; an error (and no change)
    /// if the key is malformed or a limit would be passed.
    pub fn insert(&mut self, key: &str, value: impl AsRef<[u8]>) -> Result<(), crate::Error> {
        let value = value.as_ref();
        let mut next = self.clone();
        match next.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value.to_vec(),
            None => next.entries.push((key.to_owned(), value.to_vec())),
        }
        next.check().map_err(crate::Error::Config)?;
        *self = next;
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| &v[..])
    }

    /// The value of `key`, if it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Removes `key`; its value, if it was there.
    pub fn remove(&mut self, key: &str) -> Option<Vec<u8>> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// The entries, in the order they were inserted (or sent).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), &v[..]))
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An empty set, for calls that carried none.
    pub(crate) fn empty() -> &'static Metadata {
        static EMPTY: Metadata = Metadata { entries: Vec::new() };
        &EMPTY
    }

    /// Whether every limit holds; the error names the first one broken.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(format!(
                "metadata of {} entries exceeds the limit of {MAX_ENTRIES}",
                self.entries.len()
            ));
        }
        let mut total = 0;
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if key.is_empty() || key.len() > MAX_KEY {
                return Err(format!(
                    "metadata key of {} bytes: keys are 1 to {MAX_KEY} bytes",
                    key.len()
                ));
            }
            if let Some(bad) = key.chars().find(|&c| !is_key_char(c)) {
                return Err(format!(
                    "metadata key {:?} holds {bad:?}: keys are lowercase ASCII letters, digits, '-', '_' and '.'",
                    key.escape_debug().to_string()
                ));
            }
            if value.len() > MAX_VALUE {
                return Err(format!(
                    "metadata value of {key:?} is {} bytes; the limit is {MAX_VALUE}",
                    value.len()
                ));
            }
            if self.entries[..i].iter().any(|(k, _)| k == key) {
                return Err(format!("metadata key {key:?} appears twice"));
            }
            total += key.len() + value.len();
        }
        if total > MAX_TOTAL {
            return Err(format!("metadata of {total} bytes exceeds the limit of {MAX_TOTAL}"));
        }
        Ok(())
    }

    /// Entries as decoded from the wire, not yet checked.
    pub(crate) fn from_wire(entries: Vec<(String, Vec<u8>)>) -> Metadata {
        Metadata { entries }
    }
}

fn is_key_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_refuses_what_breaks_a_limit_and_leaves_the_entries_unchanged() {
        let mut m = Metadata::new();
        m.insert("a", "1").expect("fits");
        assert!(m.insert("Upper", "x").is_err());
        assert!(m.insert("", "x").is_err());
        assert!(m.insert(&"k".repeat(MAX_KEY + 1), "x").is_err());
        assert!(m.insert("big", vec![0; MAX_VALUE + 1]).is_err());
        for i in 1..MAX_ENTRIES {
            m.insert(&format!("k{i}"), "v").expect("fits");
        }
        let err = m.insert("one-more", "v").expect_err("too many");
        assert!(err.to_string().contains("limit of 16"), "{err}");
        assert_eq!(m.len(), MAX_ENTRIES);
        assert_eq!(m.get_str("a"), Some("1"));
    }

    #[test]
    fn the_total_size_is_limited_and_a_key_set_twice_keeps_its_last_value() {
        let mut m = Metadata::new();
        for i in 0..4 {
            m.insert(&format!("k{i}"), vec![1; MAX_VALUE - 2]).expect("fits");
        }
        assert!(m.insert("k4", vec![1; 100]).is_err(), "over the total");
        m.insert("k0", "short").expect("replacing shrinks it");
        assert_eq!(m.get("k0"), Some(&b"short"[..]));
        assert_eq!(m.len(), 4);
        let twice = Metadata::from_wire(vec![("a".into(), vec![]), ("a".into(), vec![])]);
        assert!(twice.check().expect_err("duplicate").contains("twice"));
    }
}
