//! Conversions between the store's types and PostgreSQL columns.
//!
//! PostgreSQL has no unsigned integers, so `u32` zones live in `BIGINT`, `u16` kinds in
//! `INTEGER`, `u64` counters and player versions in `BIGINT` (inputs are validated to
//! fit, see [`MAX_STORED_U64`](crate::limits::MAX_STORED_U64)) and action ids in
//! 16-byte big-endian `BYTEA` (so byte order is id order). Node ids, incarnations,
//! activation attempts and session ids are arbitrary `u64`s (ids are random), so they
//! are kept bit for bit in `BIGINT` ([`to_bits`], [`from_bits`]): lossless over the
//! whole range and equality-preserving, but not order-preserving, so SQL only ever
//! compares them for equality and orders incarnations in Rust. Reading never trusts a row: a value out
//! of range or of the wrong type is [`StoreError::Corrupt`].

use bytes::Bytes;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::StoreError;
use crate::cluster::{ClaimRow, Holder, LeaseRow, MemberRow, NodeRun, StoredMember, ZoneRow};
use crate::types::{ActionId, DurableAction, PlayerRecord, ZoneRecord};

/// A `u64` that validation already capped at `i64::MAX`, as a `BIGINT`.
pub(crate) fn to_i64(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::InvalidInput(format!("{what} {value} exceeds i64::MAX")))
}

/// A `BIGINT` column that must hold a non-negative `u64`.
pub(crate) fn to_u64(what: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {value}")))
}

/// A `u64` identity as a `BIGINT` with the same 64 bits (above `i64::MAX` it reads
/// as negative in SQL).
pub(crate) fn to_bits(value: u64) -> i64 {
    value.cast_signed()
}

/// The `u64` identity whose bits a `BIGINT` holds (inverse of [`to_bits`]).
pub(crate) fn from_bits(value: i64) -> u64 {
    value.cast_unsigned()
}

/// A run as its `(id, incarnation)` `BIGINT` pair.
pub(crate) fn run_params(run: NodeRun) -> (i64, i64) {
    (to_bits(run.id), to_bits(run.incarnation))
}

/// A `BIGINT` column that must hold a `u32` zone id.
pub(crate) fn to_zone(value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("zone {value} is out of range")))
}

/// Reads column `column` of `row`, mapping a type mismatch or NULL to `Corrupt`.
pub(crate) fn column<'a, T: FromSql<'a>>(row: &'a Row, column: &str) -> Result<T, StoreError> {
    row.try_get(column)
        .map_err(|error| StoreError::Corrupt(format!("column {column}: {error}")))
}

/// An action id from its `BYTEA` form.
pub(crate) fn to_action_id(bytes: &[u8]) -> Result<ActionId, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("action id has {} bytes, not 16", bytes.len())))?;
    Ok(ActionId::from_be_bytes(array))
}

/// A `zone_state` row (`epoch, tick, saved_at_unix_ms, state`).
pub(crate) fn zone_record(row: &Row) -> Result<ZoneRecord, StoreError> {
    Ok(ZoneRecord {
        epoch: to_u64("zone epoch", column(row, "epoch")?)?,
        tick: to_u64("zone tick", column(row, "tick")?)?,
        saved_at_unix_ms: to_u64("zone saved_at_unix_ms", column(row, "saved_at_unix_ms")?)?,
        state: Bytes::from(column::<Vec<u8>>(row, "state")?),
    })
}

/// A `node_leases` row (`expires_at_unix_ms, generation`).
pub(crate) fn lease_row(row: &Row) -> Result<LeaseRow, StoreError> {
    Ok(LeaseRow {
        expires_unix_ms: to_u64("lease expiry", column(row, "expires_at_unix_ms")?)?,
        generation: to_u64("lease generation", column(row, "generation")?)?,
    })
}

/// A `zone_epochs` row with its holder columns (`epoch, holder_id,
/// holder_incarnation, attempt`: all three holder columns set, or all NULL).
pub(crate) fn zone_row(row: &Row) -> Result<ZoneRow, StoreError> {
    let id: Option<i64> = column(row, "holder_id")?;
    let incarnation: Option<i64> = column(row, "holder_incarnation")?;
    let attempt: Option<i64> = column(row, "attempt")?;
    let holder = match (id, incarnation, attempt) {
        (Some(id), Some(incarnation), Some(attempt)) => Some(Holder {
            run: NodeRun::new(from_bits(id), from_bits(incarnation)),
            attempt: from_bits(attempt),
        }),
        (None, None, None) => None,
        _ => return Err(StoreError::Corrupt("zone holder is partly NULL".into())),
    };
    Ok(ZoneRow {
        epoch: to_u64("zone epoch", column(row, "epoch")?)?,
        holder,
    })
}

/// A `player_claims` row (`node_id, incarnation, session`).
pub(crate) fn claim_row(row: &Row) -> Result<ClaimRow, StoreError> {
    Ok(ClaimRow {
        run: NodeRun::new(
            from_bits(column(row, "node_id")?),
            from_bits(column(row, "incarnation")?),
        ),
        session: from_bits(column(row, "session")?),
    })
}

/// A `cluster_members` row (`node_id, incarnation, expires_at_unix_ms, node_addr,
/// client_addr`).
pub(crate) fn member_row(row: &Row) -> Result<StoredMember, StoreError> {
    Ok(StoredMember {
        row: MemberRow {
            run: NodeRun::new(
                from_bits(column(row, "node_id")?),
                from_bits(column(row, "incarnation")?),
            ),
            node_addr: column(row, "node_addr")?,
            client_addr: column(row, "client_addr")?,
        },
        expires_unix_ms: to_u64("member expiry", column(row, "expires_at_unix_ms")?)?,
    })
}

/// A `players` row.
pub(crate) fn player_record(row: &Row) -> Result<PlayerRecord, StoreError> {
    Ok(PlayerRecord {
        player: column(row, "player")?,
        zone: to_zone(column(row, "zone")?)?,
        x: column(row, "x")?,
        y: column(row, "y")?,
        data: Bytes::from(column::<Vec<u8>>(row, "data")?),
        updated_at_unix_ms: to_u64(
            "player updated_at_unix_ms",
            column(row, "updated_at_unix_ms")?,
        )?,
        version: to_u64("player version", column(row, "version")?)?,
    })
}

/// An `actions` row.
pub(crate) fn durable_action(row: &Row) -> Result<DurableAction, StoreError> {
    let kind: i32 = column(row, "kind")?;
    Ok(DurableAction {
        id: to_action_id(column(row, "id")?)?,
        player: column(row, "player")?,
        zone: to_zone(column(row, "zone")?)?,
        kind: u16::try_from(kind)
            .map_err(|_| StoreError::Corrupt(format!("action kind {kind} is out of range")))?,
        payload: Bytes::from(column::<Vec<u8>>(row, "payload")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_convert_or_fail_cleanly() {
        assert_eq!(to_i64("t", 5).ok(), Some(5));
        assert!(matches!(
            to_i64("t", u64::MAX),
            Err(StoreError::InvalidInput(_))
        ));
        assert_eq!(to_u64("t", 7).ok(), Some(7));
        assert!(matches!(to_u64("t", -1), Err(StoreError::Corrupt(_))));
        assert_eq!(to_zone(i64::from(u32::MAX)).ok(), Some(u32::MAX));
        assert!(matches!(to_zone(-3), Err(StoreError::Corrupt(_))));
        assert!(matches!(to_zone(1 << 40), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn identities_keep_all_sixty_four_bits() {
        for value in [
            0,
            1,
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(from_bits(to_bits(value)), value);
        }
        assert_eq!(to_bits(u64::MAX), -1);
        assert_eq!(to_bits(7), 7);
        let run = NodeRun::new(u64::MAX, 1 << 63);
        assert_eq!(run_params(run), (-1, i64::MIN));
    }

    #[test]
    fn action_ids_are_sixteen_big_endian_bytes() {
        let id = ActionId(0x0102_0304);
        assert_eq!(to_action_id(&id.to_be_bytes()).ok(), Some(id));
        assert!(matches!(
            to_action_id(&[1, 2, 3]),
            Err(StoreError::Corrupt(_))
        ));
        assert!(ActionId(1).to_be_bytes() < ActionId(256).to_be_bytes());
    }
}
