//! [`Text`]: the string fields of a [`crate::TrackEvent`] (name, user, server, context,
//! error type), kept inline up to [`Text::INLINE`] bytes, so that building an event with the
//! short names applications use (`"help"`, `"response_time"`, `"user123"`) allocates nothing.
//! Measured with `examples/allocs_per_event.rs`: building an event was most of the
//! allocations of the `do_send` path (one per string field), the mailbox two.

use std::borrow::Cow;
use std::fmt;

/// A string of a [`crate::TrackEvent`]: up to [`Text::INLINE`] bytes inline, longer ones on
/// the heap. Derefs to `str`; built from `&str`, `String` and the other types a `String` is
/// built from, so every builder taking `impl Into<Text>` takes what it took as
/// `impl Into<String>` before.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    /// `bytes[..len]` is the text, valid UTF-8 (copied from a `str`, cut at its length).
    Inline {
        len: u8,
        bytes: [u8; Text::INLINE],
    },
    Heap(Box<str>),
}

impl Text {
    /// The longest text kept inline, in bytes.
    pub const INLINE: usize = 22;

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // SAFETY: `bytes[..len]` was copied from a `str` and cut at its end (see
                // `Repr::Inline`), so it is valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(&bytes[..usize::from(*len)]) }
            }
            Repr::Heap(s) => s,
        }
    }

    /// `parts` one after another: inline if they fit, else in one heap allocation.
    pub(crate) fn concat<'a>(parts: impl Iterator<Item = &'a str> + Clone) -> Text {
        let len: usize = parts.clone().map(str::len).sum();
        if len > Text::INLINE {
            let mut s = String::with_capacity(len);
            parts.for_each(|p| s.push_str(p));
            return Text(Repr::Heap(s.into_boxed_str()));
        }
        let mut bytes = [0u8; Text::INLINE];
        let mut at = 0;
        for p in parts {
            bytes[at..at + p.len()].copy_from_slice(p.as_bytes());
            at += p.len();
        }
        // whole `str`s one after another: valid UTF-8
        Text(Repr::Inline {
            len: len as u8,
            bytes,
        })
    }

    /// Heap bytes beyond the value itself.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            Repr::Heap(s) => s.len(),
        }
    }

    /// Inline if short enough.
    fn inline(s: &str) -> Option<Text> {
        let len = u8::try_from(s.len())
            .ok()
            .filter(|&n| usize::from(n) <= Text::INLINE)?;
        let mut bytes = [0u8; Text::INLINE];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Text(Repr::Inline { len, bytes }))
    }
}

impl Default for Text {
    fn default() -> Self {
        Text(Repr::Inline {
            len: 0,
            bytes: [0; Text::INLINE],
        })
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::inline(s).unwrap_or_else(|| Text(Repr::Heap(s.into())))
    }
}

impl From<&mut str> for Text {
    fn from(s: &mut str) -> Self {
        Text::from(&*s)
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::from(s.as_str())
    }
}

impl From<String> for Text {
    /// Keeps the `String`'s buffer unless the text fits inline.
    fn from(s: String) -> Self {
        Text::inline(&s).unwrap_or_else(|| Text(Repr::Heap(s.into_boxed_str())))
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Self {
        Text::inline(&s).unwrap_or(Text(Repr::Heap(s)))
    }
}

impl From<Cow<'_, str>> for Text {
    fn from(s: Cow<'_, str>) -> Self {
        match s {
            Cow::Borrowed(s) => Text::from(s),
            Cow::Owned(s) => Text::from(s),
        }
    }
}

impl From<char> for Text {
    fn from(c: char) -> Self {
        Text::from(c.encode_utf8(&mut [0; 4]) as &str)
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        match t.0 {
            Repr::Heap(s) => s.into_string(),
            Repr::Inline { .. } => t.as_str().to_owned(),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Ordered as the `str`s are.
impl Ord for Text {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Cow::<'de, str>::deserialize(d).map(Text::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_inline_and_long_text_on_the_heap_both_read_back_as_given() {
        for s in [
            "",
            "help",
            "é✓ unicode",
            &"x".repeat(22),
            &"y".repeat(23),
            &"z".repeat(300),
        ] {
            let t = Text::from(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(
                matches!(t.0, Repr::Inline { .. }),
                s.len() <= Text::INLINE,
                "{s}"
            );
            assert_eq!(Text::from(s.to_string()), t);
            assert_eq!(String::from(t.clone()), s);
            assert_eq!(format!("{t:?}"), format!("{s:?}"));
        }
    }

    #[test]
    fn a_text_is_as_large_as_a_string() {
        assert_eq!(std::mem::size_of::<Text>(), std::mem::size_of::<String>());
    }

    #[test]
    fn concat_is_inline_when_the_parts_fit() {
        let short = Text::concat(["help", "user123", "server456"].into_iter());
        assert_eq!(
            (short.as_str(), short.heap_bytes()),
            ("helpuser123server456", 0)
        );
        let long = Text::concat(["help", "user123", "server456", "extra"].into_iter());
        assert_eq!(long.as_str(), "helpuser123server456extra");
        assert!(long.heap_bytes() >= 25);
    }

    #[test]
    fn serialises_as_a_string() {
        let t = Text::from("response_time");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"response_time\"");
        assert_eq!(serde_json::from_str::<Text>(&json).unwrap(), t);
        let escaped: Text = serde_json::from_str("\"a\\nb\"").unwrap();
        assert_eq!(escaped, "a\nb");
    }
}
