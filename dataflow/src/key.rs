//! [`Key`]: the canonical encoding of a record's key columns, stored inline when short.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Encodings up to this many bytes are stored inline (an `int64` key takes 9).
const INLINE: usize = 22;

/// A key: the concatenated [`Datum::encode_key`](tidewater_connectors::types::Datum::encode_key)
/// encodings of the key columns (equal keys, equal bytes). Short keys — every integer key and
/// strings up to 17 bytes — live inline in the 24-byte value, so a key costs no allocation;
/// longer ones are boxed. Equality, order and hash are those of the bytes.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    /// A key from its encoded bytes.
    pub fn from_slice(b: &[u8]) -> Key {
        if b.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..b.len()].copy_from_slice(b);
            Key(Repr::Inline {
                len: b.len() as u8,
                bytes,
            })
        } else {
            Key(Repr::Heap(b.into()))
        }
    }

    /// The encoded bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Heap(b) => b,
        }
    }
}

impl PartialEq for Key {
    #[inline]
    fn eq(&self, other: &Key) -> bool {
        match (&self.0, &other.0) {
            // Unused inline bytes are zero, so whole arrays compare like the slices (and
            // without a call to memcmp).
            (Repr::Inline { len: a, bytes: x }, Repr::Inline { len: b, bytes: y }) => {
                a == b && x == y
            }
            _ => self.as_slice() == other.as_slice(),
        }
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:02x?})", self.as_slice())
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("key bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Key, E> {
                Ok(Key::from_slice(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Key::from_slice(&v))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_boxed_keys_compare_by_bytes_and_round_trip() {
        let short = Key::from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 7]);
        let long = Key::from_slice(&[6; 40]);
        assert_eq!(short.as_slice(), &[2, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(long.as_slice(), &[6; 40][..]);
        assert!(short < long);
        assert_eq!(Key::from_slice(&[]).as_slice(), &[] as &[u8]);
        for k in [short, long] {
            let bin = bincode::serialize(&k).unwrap();
            assert_eq!(bincode::deserialize::<Key>(&bin).unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<Key>(&json).unwrap(), k);
        }
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }
}
