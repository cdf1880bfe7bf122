//! Primitive binary encoding used by every message: LEB128 varints, zigzag signed
//! integers, and length-prefixed byte strings with explicit maxima.
//!
//! Decoding never panics: every read checks the remaining length and every length
//! prefix is checked against a caller-supplied maximum before anything is allocated.

use thiserror::Error;

/// Why a frame or datagram could not be decoded. Returned for any malformed input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before the value was complete.
    #[error("input truncated")]
    Truncated,
    /// A varint was longer than its type allows.
    #[error("varint overflow")]
    VarintOverflow,
    /// A length prefix exceeded the limit for that field.
    #[error("{field} length {len} exceeds limit {max}")]
    TooLong {
        /// Which field was too long.
        field: &'static str,
        /// Announced length.
        len: u64,
        /// Largest accepted length.
        max: u64,
    },
    /// A tag byte did not name a known message or variant.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// What kind of tag it was.
        what: &'static str,
        /// The tag value read.
        tag: u64,
    },
    /// A string field was not valid UTF-8.
    #[error("invalid utf-8 in {0}")]
    InvalidUtf8(&'static str),
    /// Bytes remained after a complete message.
    #[error("{0} trailing bytes after message")]
    TrailingBytes(usize),
    /// A value was syntactically fine but out of its allowed range.
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
}

/// Appends encoded values to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `capacity` bytes before reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Drops everything after the first `len` bytes (used to undo a partial record).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// The encoded bytes.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// The encoded bytes, borrowed.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Writes one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Writes a little-endian u16.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes a little-endian u32.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Writes an unsigned LEB128 varint.
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// Writes a signed value as a zigzag varint (small magnitudes stay small).
    pub fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    /// Writes a varint length prefix followed by the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// Writes a string as length-prefixed UTF-8.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads encoded values from a byte slice, never past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.u8()?;
            let chunk = u64::from(byte & 0x7f);
            if i == 9 && byte > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= chunk << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    /// Reads a varint that must fit in a u32.
    pub fn varint_u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::InvalidValue(field))
    }

    /// Reads a zigzag-encoded signed varint.
    pub fn zigzag(&mut self) -> Result<i64, DecodeError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// Reads a length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        if len > max as u64 {
            return Err(DecodeError::TooLong {
                field,
                len,
                max: max as u64,
            });
        }
        self.take(len as usize)
    }

    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(field, max)?).map_err(|_| DecodeError::InvalidUtf8(field))
    }

    /// Reads a count prefix of at most `max` items (checked before any allocation).
    pub fn count(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > max as u64 {
            return Err(DecodeError::TooLong {
                field,
                len: n,
                max: max as u64,
            });
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_roundtrips(v in any::<u64>()) {
            let mut w = Writer::default();
            w.varint(v);
            let bytes = w.into_vec();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn zigzag_roundtrips(v in any::<i64>()) {
            let mut w = Writer::default();
            w.zigzag(v);
            let bytes = w.into_vec();
            prop_assert_eq!(Reader::new(&bytes).zigzag().unwrap(), v);
        }
    }

    #[test]
    fn small_signed_values_take_one_byte() {
        for v in -64..64 {
            let mut w = Writer::default();
            w.zigzag(v);
            assert_eq!(w.len(), 1, "value {v}");
        }
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xffu8; 11];
        assert_eq!(
            Reader::new(&bytes).varint(),
            Err(DecodeError::VarintOverflow)
        );
    }

    #[test]
    fn length_prefix_is_checked_before_reading() {
        let mut w = Writer::default();
        w.varint(1_000_000);
        let bytes = w.into_vec();
        assert!(matches!(
            Reader::new(&bytes).bytes("name", 64),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
