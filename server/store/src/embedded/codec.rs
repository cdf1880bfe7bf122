//! The byte encoding of redb values.
//!
//! Every value starts with a format byte so the layout can change later without a
//! rewrite of old files; integers are little-endian, strings and blobs are
//! length-prefixed. Decoding never trusts the bytes: any truncation, trailing garbage,
//! unknown format or invalid UTF-8 is [`StoreError::Corrupt`], never a panic.
//!
//! Formats: every value is written in format 1, except player records and zone epoch
//! entries, which are written in format 2. A player record's format 2 adds the record
//! version; a format-1 record, written before versions existed, still decodes, with
//! version 0. A zone epoch entry's format 2 adds the holder (a flag byte, then the
//! run and its attempt); a format-1 entry, written before clusters, decodes with no
//! holder. Node lease rows, player claims and membership rows are new and written in
//! format 1.

use bytes::Bytes;

use crate::StoreError;
use crate::cluster::{ClaimRow, Holder, LeaseRow, MemberRow, NodeRun, StoredMember};
use crate::types::{ActionId, DurableAction, PlayerRecord, ZoneRecord};

/// The first value format, still written for everything but player records.
const FORMAT_V1: u8 = 1;

/// Player records with a version, zone epoch entries with a holder.
const FORMAT_V2: u8 = 2;
/// Holder flag of a format-2 epoch entry: no run holds the zone.
const NO_HOLDER: u8 = 0;
/// Holder flag of a format-2 epoch entry: a run and its attempt follow.
const HAS_HOLDER: u8 = 1;

/// A zone's latest epoch, the node that took it, and the run holding it (leased
/// activations only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub(crate) epoch: u64,
    /// Who took the epoch, for tools (a node name, or a run for leased activations).
    pub(crate) owner: String,
    pub(crate) holder: Option<Holder>,
}

/// Appends fields to a value buffer.
struct Writer(Vec<u8>);

impl Writer {
    /// A value in [`FORMAT_V1`].
    fn new(capacity: usize) -> Self {
        Self::with_format(FORMAT_V1, capacity)
    }

    /// A value in `format`.
    fn with_format(format: u8, capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity + 1);
        bytes.push(format);
        Self(bytes)
    }

    fn u16(&mut self, value: u16) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    fn f32(&mut self, value: f32) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }

    /// A blob with a u32 length. Inputs were validated against the limits, which are
    /// far below `u32::MAX`, so the length always fits.
    fn blob(&mut self, value: &[u8]) {
        let len = u32::try_from(value.len()).expect("blob length validated below u32::MAX");
        self.u32(len);
        self.0.extend_from_slice(value);
    }

    /// A string with a u16 length (names are validated to `MAX_NAME_BYTES`).
    fn str(&mut self, value: &str) {
        let len = u16::try_from(value.len()).expect("name length validated below u16::MAX");
        self.u16(len);
        self.0.extend_from_slice(value.as_bytes());
    }
}

/// Reads fields from a stored value, failing with `Corrupt` on any mismatch.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading a value of kind `what` in [`FORMAT_V1`].
    fn new(bytes: &'a [u8], what: &'static str) -> Result<Self, StoreError> {
        Self::with_formats(bytes, what, &[FORMAT_V1]).map(|(reader, _)| reader)
    }

    /// Starts reading a value of kind `what` in one of `known` formats; returns the
    /// reader and the value's format.
    fn with_formats(
        bytes: &'a [u8],
        what: &'static str,
        known: &[u8],
    ) -> Result<(Self, u8), StoreError> {
        let mut reader = Self { bytes, what };
        let [format] = reader.array::<1>()?;
        if !known.contains(&format) {
            return Err(reader.corrupt(&format!("unknown format {format}")));
        }
        Ok((reader, format))
    }

    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: {detail}", self.what))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        if self.bytes.len() < len {
            return Err(self.corrupt("truncated"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let head = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(head);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn u128(&mut self) -> Result<u128, StoreError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    fn f32(&mut self) -> Result<f32, StoreError> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    fn blob(&mut self) -> Result<Bytes, StoreError> {
        let len = usize::try_from(self.u32()?).map_err(|_| self.corrupt("blob too long"))?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let len = usize::from(self.u16()?);
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| self.corrupt("invalid UTF-8"))
    }

    /// Ends the value: leftover bytes mean the layout is not what we think it is.
    fn finish(self) -> Result<(), StoreError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }
}

/// Encodes a zone's epoch entry (always in [`FORMAT_V2`]).
pub(crate) fn encode_epoch(entry: &EpochEntry) -> Vec<u8> {
    let mut w = Writer::with_format(FORMAT_V2, 8 + 2 + entry.owner.len() + 25);
    w.u64(entry.epoch);
    w.str(&entry.owner);
    match entry.holder {
        None => w.0.push(NO_HOLDER),
        Some(holder) => {
            w.0.push(HAS_HOLDER);
            w.u64(holder.run.id);
            w.u64(holder.run.incarnation);
            w.u64(holder.attempt);
        }
    }
    w.0
}

/// Decodes a zone's epoch entry in [`FORMAT_V2`], or in [`FORMAT_V1`] (written
/// before clusters) with no holder.
pub(crate) fn decode_epoch(bytes: &[u8]) -> Result<EpochEntry, StoreError> {
    let (mut r, format) = Reader::with_formats(bytes, "zone epoch", &[FORMAT_V1, FORMAT_V2])?;
    let epoch = r.u64()?;
    let owner = r.string()?;
    let holder = if format == FORMAT_V1 {
        None
    } else {
        decode_holder(&mut r)?
    };
    r.finish()?;
    Ok(EpochEntry {
        epoch,
        owner,
        holder,
    })
}

/// The holder part of a format-2 epoch entry.
fn decode_holder(r: &mut Reader<'_>) -> Result<Option<Holder>, StoreError> {
    let [flag] = r.array::<1>()?;
    match flag {
        NO_HOLDER => Ok(None),
        HAS_HOLDER => Ok(Some(Holder {
            run: NodeRun::new(r.u64()?, r.u64()?),
            attempt: r.u64()?,
        })),
        other => Err(r.corrupt(&format!("unknown holder flag {other}"))),
    }
}

/// Encodes a run's lease.
pub(crate) fn encode_lease(row: &LeaseRow) -> Vec<u8> {
    let mut w = Writer::new(16);
    w.u64(row.expires_unix_ms);
    w.u64(row.generation);
    w.0
}

/// Decodes a run's lease.
pub(crate) fn decode_lease(bytes: &[u8]) -> Result<LeaseRow, StoreError> {
    let mut r = Reader::new(bytes, "node lease")?;
    let row = LeaseRow {
        expires_unix_ms: r.u64()?,
        generation: r.u64()?,
    };
    r.finish()?;
    Ok(row)
}

/// Encodes a player's claim: the run (id, incarnation), then the session.
pub(crate) fn encode_claim(row: &ClaimRow) -> Vec<u8> {
    let mut w = Writer::new(24);
    w.u64(row.run.id);
    w.u64(row.run.incarnation);
    w.u64(row.session);
    w.0
}

/// Decodes a player's claim.
pub(crate) fn decode_claim(bytes: &[u8]) -> Result<ClaimRow, StoreError> {
    let mut r = Reader::new(bytes, "player claim")?;
    let row = ClaimRow {
        run: NodeRun::new(r.u64()?, r.u64()?),
        session: r.u64()?,
    };
    r.finish()?;
    Ok(row)
}

/// Encodes a node id's membership row: the incarnation, the expiry, then the node and
/// client addresses (the node id is the key).
pub(crate) fn encode_member(member: &StoredMember) -> Vec<u8> {
    let row = &member.row;
    let mut w = Writer::new(16 + 4 + row.node_addr.len() + row.client_addr.len());
    w.u64(row.run.incarnation);
    w.u64(member.expires_unix_ms);
    w.str(&row.node_addr);
    w.str(&row.client_addr);
    w.0
}

/// Decodes node id `id`'s membership row.
pub(crate) fn decode_member(id: u64, bytes: &[u8]) -> Result<StoredMember, StoreError> {
    let mut r = Reader::new(bytes, "member row")?;
    let incarnation = r.u64()?;
    let expires_unix_ms = r.u64()?;
    let member = StoredMember {
        row: MemberRow {
            run: NodeRun::new(id, incarnation),
            node_addr: r.string()?,
            client_addr: r.string()?,
        },
        expires_unix_ms,
    };
    r.finish()?;
    Ok(member)
}

/// Encodes a zone record.
pub(crate) fn encode_zone(record: &ZoneRecord) -> Vec<u8> {
    let mut w = Writer::new(24 + 4 + record.state.len());
    w.u64(record.epoch);
    w.u64(record.tick);
    w.u64(record.saved_at_unix_ms);
    w.blob(&record.state);
    w.0
}

/// Decodes a zone record.
pub(crate) fn decode_zone(bytes: &[u8]) -> Result<ZoneRecord, StoreError> {
    let mut r = Reader::new(bytes, "zone record")?;
    let record = ZoneRecord {
        epoch: r.u64()?,
        tick: r.u64()?,
        saved_at_unix_ms: r.u64()?,
        state: r.blob()?,
    };
    r.finish()?;
    Ok(record)
}

/// Encodes a player record (always in [`FORMAT_V2`]).
pub(crate) fn encode_player(record: &PlayerRecord) -> Vec<u8> {
    let len = 28 + 2 + record.player.len() + 4 + record.data.len();
    let mut w = Writer::with_format(FORMAT_V2, len);
    w.str(&record.player);
    w.u32(record.zone);
    w.f32(record.x);
    w.f32(record.y);
    w.u64(record.updated_at_unix_ms);
    w.u64(record.version);
    w.blob(&record.data);
    w.0
}

/// Decodes a player record in [`FORMAT_V2`], or in [`FORMAT_V1`] (written before
/// records had versions) as version 0, so any versioned write replaces it.
pub(crate) fn decode_player(bytes: &[u8]) -> Result<PlayerRecord, StoreError> {
    let (mut r, format) = Reader::with_formats(bytes, "player record", &[FORMAT_V1, FORMAT_V2])?;
    let player = r.string()?;
    let zone = r.u32()?;
    let x = r.f32()?;
    let y = r.f32()?;
    let updated_at_unix_ms = r.u64()?;
    let version = if format == FORMAT_V1 { 0 } else { r.u64()? };
    let record = PlayerRecord {
        player,
        zone,
        x,
        y,
        data: r.blob()?,
        updated_at_unix_ms,
        version,
    };
    r.finish()?;
    Ok(record)
}

/// Encodes a durable action.
pub(crate) fn encode_action(action: &DurableAction) -> Vec<u8> {
    let mut w = Writer::new(22 + 2 + action.player.len() + 4 + action.payload.len());
    w.0.extend_from_slice(&action.id.0.to_le_bytes());
    w.str(&action.player);
    w.u32(action.zone);
    w.u16(action.kind);
    w.blob(&action.payload);
    w.0
}

/// Decodes a durable action.
pub(crate) fn decode_action(bytes: &[u8]) -> Result<DurableAction, StoreError> {
    let mut r = Reader::new(bytes, "durable action")?;
    let action = DurableAction {
        id: ActionId(r.u128()?),
        player: r.string()?,
        zone: r.u32()?,
        kind: r.u16()?,
        payload: r.blob()?,
    };
    r.finish()?;
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player() -> PlayerRecord {
        PlayerRecord {
            player: "ålice".into(),
            zone: 9,
            x: -1.5,
            y: 1e6,
            data: Bytes::from_static(b"inventory"),
            updated_at_unix_ms: 1_700_000_000_000,
            version: (7 << 32) | 3,
        }
    }

    fn action() -> DurableAction {
        DurableAction {
            id: ActionId(u128::MAX - 3),
            player: "bob".into(),
            zone: 2,
            kind: 513,
            payload: Bytes::from_static(b"\0\x01\x02"),
        }
    }

    fn zone() -> ZoneRecord {
        ZoneRecord {
            epoch: 4,
            tick: 99,
            saved_at_unix_ms: 123,
            state: Bytes::from_static(b"world"),
        }
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(
            decode_player(&encode_player(&player())).ok(),
            Some(player())
        );
        assert_eq!(
            decode_action(&encode_action(&action())).ok(),
            Some(action())
        );
        assert_eq!(decode_zone(&encode_zone(&zone())).ok(), Some(zone()));
        for entry in [epoch_entry(None), epoch_entry(Some(holder()))] {
            assert_eq!(decode_epoch(&encode_epoch(&entry)).ok(), Some(entry));
        }
        let lease = LeaseRow {
            expires_unix_ms: 1_700_000_000_123,
            generation: 4,
        };
        assert_eq!(decode_lease(&encode_lease(&lease)).ok(), Some(lease));
        assert_eq!(decode_claim(&encode_claim(&claim())).ok(), Some(claim()));
        let member = member();
        assert_eq!(
            decode_member(u64::MAX, &encode_member(&member)).ok(),
            Some(member)
        );
    }

    fn member() -> StoredMember {
        StoredMember {
            row: MemberRow {
                run: NodeRun::new(u64::MAX, 1 << 63),
                node_addr: "[::1]:9000".into(),
                client_addr: "10.1.2.3:7000".into(),
            },
            expires_unix_ms: 1_700_000_000_456,
        }
    }

    fn claim() -> ClaimRow {
        ClaimRow {
            run: NodeRun::new(u64::MAX, 1 << 63),
            session: u64::MAX - 1,
        }
    }

    fn holder() -> Holder {
        Holder {
            run: NodeRun::new(u64::MAX, u64::MAX - 1),
            attempt: u64::MAX - 2,
        }
    }

    fn epoch_entry(holder: Option<Holder>) -> EpochEntry {
        EpochEntry {
            epoch: 12,
            owner: "node-a".into(),
            holder,
        }
    }

    #[test]
    fn an_epoch_entry_written_before_clusters_decodes_without_a_holder() {
        // Format 1, exactly as the pre-cluster encoder wrote it: epoch, owner.
        let mut old = Writer::new(16);
        old.u64(12);
        old.str("node-a");
        assert_eq!(decode_epoch(&old.0).ok(), Some(epoch_entry(None)));
        let new = encode_epoch(&epoch_entry(Some(holder())));
        assert_eq!(new[0], FORMAT_V2);
    }

    type Decoder = fn(&[u8]) -> Result<(), StoreError>;

    #[test]
    fn every_truncation_is_corrupt() {
        let encoded = [
            encode_player(&player()),
            encode_action(&action()),
            encode_zone(&zone()),
            encode_epoch(&epoch_entry(Some(holder()))),
            encode_lease(&LeaseRow {
                expires_unix_ms: 1,
                generation: 2,
            }),
            encode_claim(&claim()),
            encode_member(&member()),
        ];
        let decoders: [Decoder; 7] = [
            |b| decode_player(b).map(drop),
            |b| decode_action(b).map(drop),
            |b| decode_zone(b).map(drop),
            |b| decode_epoch(b).map(drop),
            |b| decode_lease(b).map(drop),
            |b| decode_claim(b).map(drop),
            |b| decode_member(u64::MAX, b).map(drop),
        ];
        for (bytes, decode) in encoded.iter().zip(decoders) {
            for len in 0..bytes.len() {
                assert!(matches!(decode(&bytes[..len]), Err(StoreError::Corrupt(_))));
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(matches!(decode(&longer), Err(StoreError::Corrupt(_))));
        }
    }

    /// A player record exactly as the format-1 encoder (before versions) wrote it.
    fn encode_player_v1(record: &PlayerRecord) -> Vec<u8> {
        let mut w = Writer::new(64);
        w.str(&record.player);
        w.u32(record.zone);
        w.f32(record.x);
        w.f32(record.y);
        w.u64(record.updated_at_unix_ms);
        w.blob(&record.data);
        w.0
    }

    #[test]
    fn a_player_record_written_before_versions_decodes_as_version_zero() {
        let old = encode_player_v1(&player());
        assert_eq!(old[0], FORMAT_V1);
        let expected = PlayerRecord {
            version: 0,
            ..player()
        };
        assert_eq!(decode_player(&old).ok(), Some(expected));
        for len in 0..old.len() {
            assert!(matches!(
                decode_player(&old[..len]),
                Err(StoreError::Corrupt(_))
            ));
        }
        // New records are written in format 2 and keep their version.
        let new = encode_player(&player());
        assert_eq!(new[0], FORMAT_V2);
        assert_eq!(
            decode_player(&new).map(|r| r.version).ok(),
            Some((7 << 32) | 3)
        );
    }

    #[test]
    fn unknown_format_and_bad_utf8_are_corrupt() {
        let mut bytes = encode_player(&player());
        bytes[0] = 3;
        assert!(matches!(decode_player(&bytes), Err(StoreError::Corrupt(_))));
        // Format 2 is for player records only.
        let mut bytes = encode_zone(&zone());
        bytes[0] = FORMAT_V2;
        assert!(matches!(decode_zone(&bytes), Err(StoreError::Corrupt(_))));
        let mut bytes = encode_player(&player());
        bytes[0] = 0;
        assert!(matches!(decode_player(&bytes), Err(StoreError::Corrupt(_))));
        let mut bytes = encode_epoch(&EpochEntry {
            epoch: 1,
            owner: "ab".into(),
            holder: None,
        });
        // The owner's last byte sits just before the holder flag.
        let owner_end = bytes.len() - 2;
        bytes[owner_end] = 0xff;
        assert!(matches!(decode_epoch(&bytes), Err(StoreError::Corrupt(_))));
        let mut bytes = encode_epoch(&epoch_entry(None));
        let flag = bytes.len() - 1;
        bytes[flag] = 2;
        assert!(matches!(decode_epoch(&bytes), Err(StoreError::Corrupt(_))));
    }
}
