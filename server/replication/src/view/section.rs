//! A tracked entity's encoded component section, kept so that sending the same
//! components again reads none of them: they sit behind two pointers (the shared list,
//! then each component's bytes), a cache miss each for every entity a snapshot carries.

/// Sections up to this many bytes are kept inline; longer ones only by length.
const INLINE_BYTES: usize = 24;

/// The component section (see `record::write_components`) last written for one
/// entity, keyed by its components hash (equal hashes mean equal components).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SectionCache {
    /// Components hash the section was written for; meaningful when `measured`.
    hash: u64,
    /// Section length in bytes (saturated).
    len: u32,
    /// False until a section was stored.
    measured: bool,
    /// The section itself when it is at most [`INLINE_BYTES`] long.
    bytes: [u8; INLINE_BYTES],
}

impl SectionCache {
    /// Length of the section for components hashed `hash`, if known.
    pub(crate) fn len(&self, hash: u64) -> Option<usize> {
        (self.measured && self.hash == hash).then_some(self.len as usize)
    }

    /// The section for components hashed `hash`, if kept.
    pub(crate) fn bytes(&self, hash: u64) -> Option<&[u8]> {
        let len = self.len(hash)?;
        self.bytes.get(..len)
    }

    /// Remembers `section`, written for components hashed `hash`. Only sections of
    /// component lists a record may carry belong here: a kept section skips that check.
    pub(crate) fn store(&mut self, hash: u64, section: &[u8]) {
        self.hash = hash;
        self.len = u32::try_from(section.len()).unwrap_or(u32::MAX);
        self.measured = true;
        if let Some(inline) = self.bytes.get_mut(..section.len()) {
            inline.copy_from_slice(section);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_short_sections_and_the_length_of_long_ones() {
        let mut cache = SectionCache::default();
        assert_eq!(cache.len(0), None);
        cache.store(7, &[1, 2, 3]);
        assert_eq!(cache.bytes(7), Some(&[1u8, 2, 3][..]));
        assert_eq!(cache.bytes(8), None, "another hash is other components");
        let long = [9u8; INLINE_BYTES + 1];
        cache.store(8, &long);
        assert_eq!(cache.len(8), Some(INLINE_BYTES + 1));
        assert_eq!(cache.bytes(8), None);
        assert_eq!(cache.len(7), None);
    }
}
