//! The byte notation of the vectors (conformance/README.md, "Bytes"): hex, `[ … ]` frames,
//! `HELLO`, `ID` and `hh*N` repetition.

/// The hello the reference client sends, and the reference server with the default 4 MiB limit.
pub const HELLO: [u8; 14] = [0, 0, 0, 10, b'R', b'P', b'C', 0, 2, 0xfc, 0x00, 0x00, 0x40, 0x00];

/// What the tokens `HELLO` and `ID` stand for where a text is expanded.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    /// The bytes of `HELLO`.
    pub hello: &'a [u8],
    /// The id `ID` stands for; `None` where it may not appear.
    pub id: Option<u64>,
}

/// The bytes `text` stands for.
pub fn expand(text: &str, tokens: Tokens<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    // Where the payload of the frame being written starts, inside `[ … ]`.
    let mut open: Option<usize> = None;
    for token in text.split_whitespace() {
        match token {
            "[" if open.is_some() => return Err("a `[` inside a frame".to_owned()),
            "[" => {
                out.extend_from_slice(&[0; 4]);
                open = Some(out.len());
            }
            "]" => {
                let start = open.take().ok_or("a `]` without its `[`")?;
                let len = u32::try_from(out.len() - start).map_err(|_| "a frame over 4 GiB")?;
                out[start - 4..start].copy_from_slice(&len.to_be_bytes());
            }
            "HELLO" => out.extend_from_slice(tokens.hello),
            "ID" => out.extend(varint(tokens.id.ok_or("`ID` where no request id is known")?)),
            _ => match token.split_once('*') {
                Some((bytes, count)) => {
                    let bytes = hex_run(bytes)?;
                    let count: usize =
                        count.parse().map_err(|_| format!("a bad repeat count in {token:?}"))?;
                    for _ in 0..count {
                        out.extend_from_slice(&bytes);
                    }
                }
                None => out.extend(hex_run(token)?),
            },
        }
    }
    if open.is_some() {
        return Err("a `[` without its `]`".to_owned());
    }
    Ok(out)
}

/// An even number of hex digits as bytes.
fn hex_run(digits: &str) -> Result<Vec<u8>, String> {
    if digits.is_empty() || digits.len() % 2 != 0 || !digits.is_ascii() {
        return Err(format!("{digits:?} is not a run of hex byte pairs"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| format!("bad hex {digits:?}"))
        })
        .collect()
}

/// `n` as a varint in its shortest form (WIRE.md, "Encoding").
pub fn varint(n: u64) -> Vec<u8> {
    if n <= 250 {
        vec![n as u8]
    } else if let Ok(n) = u16::try_from(n) {
        [&[0xfb][..], &n.to_le_bytes()].concat()
    } else if let Ok(n) = u32::try_from(n) {
        [&[0xfc][..], &n.to_le_bytes()].concat()
    } else {
        [&[0xfd][..], &n.to_le_bytes()].concat()
    }
}

/// Bytes as the vectors write them, for messages: `01 02 0a`, long runs shortened.
pub fn show(bytes: &[u8]) -> String {
    const SHOWN: usize = 48;
    let hex: Vec<String> = bytes.iter().take(SHOWN).map(|b| format!("{b:02x}")).collect();
    let more = bytes.len().saturating_sub(SHOWN);
    if more > 0 { format!("{} … ({more} more bytes)", hex.join(" ")) } else { hex.join(" ") }
}

/// Reads a header's fields the way WIRE.md defines them, independently of the crate under
/// test, so a runner bug and an implementation bug cannot cancel out.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// A varint in its shortest form.
    pub fn varint(&mut self) -> Result<u64, String> {
        let mark = *self.bytes.get(self.at).ok_or("cut short")?;
        self.at += 1;
        let width = match mark {
            0..=250 => return Ok(u64::from(mark)),
            0xfb => 2,
            0xfc => 4,
            0xfd => 8,
            _ => return Err(format!("integer mark {mark:#04x}")),
        };
        let raw = self.bytes.get(self.at..self.at + width).ok_or("cut short")?;
        self.at += width;
        let mut le = [0; 8];
        le[..width].copy_from_slice(raw);
        let n = u64::from_le_bytes(le);
        if varint(n).len() != width + 1 {
            return Err(format!("{n} not in its shortest form"));
        }
        Ok(n)
    }

    /// A string: varint length, then UTF-8.
    pub fn text(&mut self) -> Result<String, String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "a huge text")?;
        let bytes =
            self.bytes.get(self.at..).and_then(|rest| rest.get(..len)).ok_or("cut short")?;
        self.at += len;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a text that is not UTF-8".to_owned())
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Tokens<'static> = Tokens { hello: &HELLO, id: None };

    #[test]
    fn frames_hello_ids_and_repeats_expand_as_documented() {
        assert_eq!(expand("", PLAIN).unwrap(), [0u8; 0]);
        assert_eq!(expand("0102 0a", PLAIN).unwrap(), [1, 2, 10]);
        assert_eq!(expand("[ 01 01 00 0a ]", PLAIN).unwrap(), [0, 0, 0, 4, 1, 1, 0, 10]);
        assert_eq!(expand("[ ]", PLAIN).unwrap(), [0, 0, 0, 0]);
        assert_eq!(expand("HELLO", PLAIN).unwrap(), HELLO);
        assert_eq!(
            expand("e282ac*2 00*3", PLAIN).unwrap(),
            [0xe2, 0x82, 0xac, 0xe2, 0x82, 0xac, 0, 0, 0]
        );
        let with_id = Tokens { hello: &HELLO, id: Some(300) };
        assert_eq!(expand("[ 03 ID ]", with_id).unwrap(), [0, 0, 0, 4, 3, 0xfb, 0x2c, 0x01]);
        for bad in ["[", "]", "[ [ ]", "0", "zz", "ID", "00*x", "*3"] {
            assert!(expand(bad, PLAIN).is_err(), "{bad}");
        }
    }
}
