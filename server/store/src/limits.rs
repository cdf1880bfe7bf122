//! Size limits of every stored thing and the validation both backends run before any
//! IO, so an oversized or malformed input fails the same way on each backend and never
//! reaches a transaction.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::StoreError;
use crate::cluster::MemberRow;
use crate::types::{Checkpoint, DurableAction, PlayerRecord, ZoneSnapshot};

/// Most player records in one `checkpoint` or `save_players` call.
pub const MAX_PLAYERS_PER_BATCH: usize = 10_000;
/// Largest encoded zone state.
pub const MAX_ZONE_STATE_BYTES: usize = 64 * 1024 * 1024;
/// Largest opaque data of one player.
pub const MAX_PLAYER_DATA_BYTES: usize = 1024 * 1024;
/// Largest payload of one durable action.
pub const MAX_ACTION_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Most bytes of blobs (zone state plus player data) in one write call, so a single
/// transaction stays well below what either backend holds comfortably in memory.
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;
/// Most players in one [`Store::take_over_players`](crate::Store::take_over_players)
/// call (a zone's players, handed over at once).
pub const MAX_CLAIMS_PER_CALL: usize = 10_000;
/// Longest player or node name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Most actions [`Store::actions_for_player`](crate::Store::actions_for_player) returns;
/// a player with more gets [`StoreError::TooLarge`].
pub const MAX_ACTIONS_PER_READ: usize = 10_000;

/// Longest lease [`Store::renew_lease`](crate::Store::renew_lease) grants. Leases
/// last seconds; an hour is far past any sane setting and keeps expiries in range.
pub const MAX_LEASE_MS: u64 = 60 * 60 * 1000;
/// Most zones [`Store::zones_held_by`](crate::Store::zones_held_by) lists. Policy:
/// truncate (the lowest zones, with [`HeldZones::truncated`](crate::HeldZones::truncated)
/// set) rather than fail, because the caller is failing over a dead run's zones:
/// each one it activates elsewhere leaves the list, so asking again makes progress,
/// where an error would block the failover of a large node for good.
pub const MAX_ZONES_PER_HOLDER_READ: usize = 10_000;
/// Most live rows [`Store::member_table`](crate::Store::member_table) returns; a table
/// with more is [`StoreError::TooLarge`] (a cluster that size is far past what one
/// consistent table serves).
pub const MAX_MEMBERS_PER_READ: usize = 10_000;
/// Longest address text of a membership row, in bytes: the longest `SocketAddr` text
/// (`[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535`) fits exactly.
pub const MAX_ADDR_BYTES: usize = 64;

/// Largest value of the timestamps, ticks and player record versions the store keeps.
/// PostgreSQL has no unsigned 64-bit integer, so every backend caps them at
/// `i64::MAX` alike.
pub const MAX_STORED_U64: u64 = i64::MAX as u64;

/// Checks that a tick or timestamp fits [`MAX_STORED_U64`].
pub fn validate_stored_u64(what: &'static str, value: u64) -> Result<(), StoreError> {
    if value > MAX_STORED_U64 {
        return Err(StoreError::InvalidInput(format!(
            "{what} {value} exceeds {MAX_STORED_U64}"
        )));
    }
    Ok(())
}

/// Checks a name (player or node): non-empty, at most [`MAX_NAME_BYTES`], no control
/// characters (they would make logs and tools ambiguous).
pub fn validate_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::InvalidInput(format!("{what} is empty")));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(StoreError::too_large(what, name.len(), MAX_NAME_BYTES));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput(format!(
            "{what} {name:?} contains control characters"
        )));
    }
    Ok(())
}

/// Checks the players of a [`Store::take_over_players`](crate::Store::take_over_players)
/// call: at most [`MAX_CLAIMS_PER_CALL`], each name valid, none twice.
pub fn validate_takeover(players: &[(String, u64)]) -> Result<(), StoreError> {
    if players.len() > MAX_CLAIMS_PER_CALL {
        return Err(StoreError::too_large(
            "players taken over at once",
            players.len(),
            MAX_CLAIMS_PER_CALL,
        ));
    }
    let mut seen = HashSet::with_capacity(players.len());
    for (player, _) in players {
        validate_name("player name", player)?;
        if !seen.insert(player.as_str()) {
            return Err(StoreError::InvalidInput(format!(
                "player {player:?} is named twice in one takeover"
            )));
        }
    }
    Ok(())
}

/// Checks an address of a membership row: non-empty, at most [`MAX_ADDR_BYTES`], and a
/// `SocketAddr` as Rust parses it (so every backend stores the same texts). Every
/// failure is [`StoreError::InvalidInput`].
pub fn validate_addr(what: &'static str, addr: &str) -> Result<(), StoreError> {
    if addr.is_empty() {
        return Err(StoreError::InvalidInput(format!("{what} is empty")));
    }
    if addr.len() > MAX_ADDR_BYTES {
        return Err(StoreError::InvalidInput(format!(
            "{what} is {} bytes, over {MAX_ADDR_BYTES}",
            addr.len()
        )));
    }
    if addr.parse::<SocketAddr>().is_err() {
        return Err(StoreError::InvalidInput(format!(
            "{what} {addr:?} is not an IP address and port"
        )));
    }
    Ok(())
}

/// Checks both addresses of a membership row.
pub fn validate_member(row: &MemberRow) -> Result<(), StoreError> {
    validate_addr("node address", &row.node_addr)?;
    validate_addr("client address", &row.client_addr)
}

/// Checks a lease duration and returns it in whole milliseconds (fractions are cut):
/// at least 1 ms (a zero lease would be over the moment it is granted) and at most
/// [`MAX_LEASE_MS`].
pub fn validate_lease(duration: Duration) -> Result<u64, StoreError> {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return Err(StoreError::InvalidInput(format!(
            "lease duration {duration:?} is under 1 ms"
        )));
    }
    if millis > MAX_LEASE_MS {
        return Err(StoreError::TooLarge {
            what: "lease duration ms",
            size: millis,
            max: MAX_LEASE_MS,
        });
    }
    Ok(millis)
}

/// Checks a zone snapshot's size.
pub fn validate_snapshot(snapshot: &ZoneSnapshot) -> Result<(), StoreError> {
    validate_stored_u64("zone tick", snapshot.tick)?;
    validate_stored_u64("zone saved_at_unix_ms", snapshot.saved_at_unix_ms)?;
    if snapshot.state.len() > MAX_ZONE_STATE_BYTES {
        return Err(StoreError::too_large(
            "zone state bytes",
            snapshot.state.len(),
            MAX_ZONE_STATE_BYTES,
        ));
    }
    Ok(())
}

/// Checks one player record written by zone `zone`.
pub fn validate_player(zone: u32, record: &PlayerRecord) -> Result<(), StoreError> {
    validate_name("player name", &record.player)?;
    if record.zone != zone {
        return Err(StoreError::InvalidInput(format!(
            "player {:?} claims zone {} but the write is for zone {zone}",
            record.player, record.zone
        )));
    }
    if !record.x.is_finite() || !record.y.is_finite() {
        return Err(StoreError::InvalidInput(format!(
            "player {:?} has a non-finite position",
            record.player
        )));
    }
    validate_stored_u64("player updated_at_unix_ms", record.updated_at_unix_ms)?;
    validate_stored_u64("player version", record.version)?;
    if record.data.len() > MAX_PLAYER_DATA_BYTES {
        return Err(StoreError::too_large(
            "player data bytes",
            record.data.len(),
            MAX_PLAYER_DATA_BYTES,
        ));
    }
    Ok(())
}

/// Checks a batch of player records written by zone `zone`: count, each record, no
/// duplicate names (a batch with two versions of one player is a caller bug, and
/// "last wins" would differ between backends), and the total blob bytes.
pub fn validate_players(zone: u32, players: &[PlayerRecord]) -> Result<usize, StoreError> {
    if players.len() > MAX_PLAYERS_PER_BATCH {
        return Err(StoreError::too_large(
            "players per batch",
            players.len(),
            MAX_PLAYERS_PER_BATCH,
        ));
    }
    let mut names = HashSet::with_capacity(players.len());
    let mut n_bytes = 0usize;
    for record in players {
        validate_player(zone, record)?;
        if !names.insert(record.player.as_str()) {
            return Err(StoreError::InvalidInput(format!(
                "player {:?} appears twice in one batch",
                record.player
            )));
        }
        n_bytes += record.data.len();
    }
    Ok(n_bytes)
}

/// Checks a whole checkpoint of zone `zone`.
pub fn validate_checkpoint(zone: u32, checkpoint: &Checkpoint) -> Result<(), StoreError> {
    let mut n_bytes = validate_players(zone, &checkpoint.players)?;
    if let Some(snapshot) = &checkpoint.zone_state {
        validate_snapshot(snapshot)?;
        n_bytes += snapshot.state.len();
    }
    if n_bytes > MAX_BATCH_BYTES {
        return Err(StoreError::too_large(
            "checkpoint bytes",
            n_bytes,
            MAX_BATCH_BYTES,
        ));
    }
    Ok(())
}

/// Checks a `save_players` batch of zone `zone`.
pub fn validate_player_batch(zone: u32, players: &[PlayerRecord]) -> Result<(), StoreError> {
    let n_bytes = validate_players(zone, players)?;
    if n_bytes > MAX_BATCH_BYTES {
        return Err(StoreError::too_large(
            "player batch bytes",
            n_bytes,
            MAX_BATCH_BYTES,
        ));
    }
    Ok(())
}

/// Checks a durable action committed by zone `zone`.
pub fn validate_action(zone: u32, action: &DurableAction) -> Result<(), StoreError> {
    validate_name("player name", &action.player)?;
    if action.zone != zone {
        return Err(StoreError::InvalidInput(format!(
            "action {} claims zone {} but the write is for zone {zone}",
            action.id, action.zone
        )));
    }
    if action.payload.len() > MAX_ACTION_PAYLOAD_BYTES {
        return Err(StoreError::too_large(
            "action payload bytes",
            action.payload.len(),
            MAX_ACTION_PAYLOAD_BYTES,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ActionId;

    fn player(name: &str, zone: u32) -> PlayerRecord {
        PlayerRecord {
            player: name.to_owned(),
            zone,
            x: 1.0,
            y: 2.0,
            data: Bytes::from_static(b"d"),
            updated_at_unix_ms: 5,
            version: 1,
        }
    }

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(validate_name("n", "alice").is_ok());
        assert!(validate_name("n", &"a".repeat(MAX_NAME_BYTES)).is_ok());
        assert!(matches!(
            validate_name("n", ""),
            Err(StoreError::InvalidInput(_))
        ));
        assert!(matches!(
            validate_name("n", &"a".repeat(MAX_NAME_BYTES + 1)),
            Err(StoreError::TooLarge { .. })
        ));
        assert!(matches!(
            validate_name("n", "a\nb"),
            Err(StoreError::InvalidInput(_))
        ));
    }

    #[test]
    fn players_must_belong_to_the_zone_and_be_finite() {
        assert!(validate_player(3, &player("a", 3)).is_ok());
        assert!(matches!(
            validate_player(4, &player("a", 3)),
            Err(StoreError::InvalidInput(_))
        ));
        let mut nan = player("a", 3);
        nan.x = f32::NAN;
        assert!(matches!(
            validate_player(3, &nan),
            Err(StoreError::InvalidInput(_))
        ));
        let mut inf = player("a", 3);
        inf.y = f32::INFINITY;
        assert!(matches!(
            validate_player(3, &inf),
            Err(StoreError::InvalidInput(_))
        ));
    }

    #[test]
    fn timestamps_fit_a_signed_column() {
        let mut late = player("a", 3);
        late.updated_at_unix_ms = MAX_STORED_U64;
        assert!(validate_player(3, &late).is_ok());
        late.updated_at_unix_ms = MAX_STORED_U64 + 1;
        assert!(matches!(
            validate_player(3, &late),
            Err(StoreError::InvalidInput(_))
        ));
    }

    #[test]
    fn versions_fit_a_signed_column() {
        let mut record = player("a", 3);
        record.version = MAX_STORED_U64;
        assert!(validate_player(3, &record).is_ok());
        record.version = MAX_STORED_U64 + 1;
        assert!(matches!(
            validate_player(3, &record),
            Err(StoreError::InvalidInput(message)) if message.contains("version")
        ));
    }

    #[test]
    fn batches_are_bounded_and_unique() {
        let dup = vec![player("a", 1), player("a", 1)];
        assert!(matches!(
            validate_players(1, &dup),
            Err(StoreError::InvalidInput(_))
        ));
        let many: Vec<_> = (0..=MAX_PLAYERS_PER_BATCH)
            .map(|i| player(&format!("p{i}"), 1))
            .collect();
        assert!(matches!(
            validate_players(1, &many),
            Err(StoreError::TooLarge { size, .. }) if size == 10_001
        ));
        assert_eq!(
            validate_players(1, &many[..MAX_PLAYERS_PER_BATCH]).ok(),
            Some(10_000)
        );
    }

    #[test]
    fn blobs_are_bounded() {
        let mut big = player("a", 1);
        big.data = Bytes::from(vec![0; MAX_PLAYER_DATA_BYTES + 1]);
        assert!(matches!(
            validate_player(1, &big),
            Err(StoreError::TooLarge { .. })
        ));
        let checkpoint = Checkpoint {
            zone_state: Some(ZoneSnapshot {
                tick: 1,
                saved_at_unix_ms: 1,
                state: Bytes::from(vec![0; MAX_ZONE_STATE_BYTES + 1]),
            }),
            players: Vec::new(),
        };
        assert!(matches!(
            validate_checkpoint(1, &checkpoint),
            Err(StoreError::TooLarge {
                what: "zone state bytes",
                ..
            })
        ));
    }

    #[test]
    fn leases_are_whole_milliseconds_within_bounds() {
        assert_eq!(validate_lease(Duration::from_micros(1_500)).ok(), Some(1));
        assert_eq!(
            validate_lease(Duration::from_millis(MAX_LEASE_MS)).ok(),
            Some(MAX_LEASE_MS)
        );
        assert!(matches!(
            validate_lease(Duration::from_micros(999)),
            Err(StoreError::InvalidInput(_))
        ));
        assert!(matches!(
            validate_lease(Duration::from_millis(MAX_LEASE_MS + 1)),
            Err(StoreError::TooLarge { .. })
        ));
        assert!(matches!(
            validate_lease(Duration::MAX),
            Err(StoreError::TooLarge { .. })
        ));
    }

    #[test]
    fn addresses_are_bounded_socket_addrs() {
        let longest = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%4294967295]:65535";
        assert_eq!(longest.len(), MAX_ADDR_BYTES);
        for good in ["127.0.0.1:7000", "[::1]:0", "0.0.0.0:65535", longest] {
            assert!(validate_addr("a", good).is_ok(), "{good}");
        }
        // A valid address padded past the limit (leading zeros in the port) is refused
        // for its length alone.
        let padded = format!("127.0.0.1:{}7000", "0".repeat(MAX_ADDR_BYTES));
        for bad in [
            "",
            "localhost:7000",
            "127.0.0.1",
            "127.0.0.1:70000",
            " 127.0.0.1:7000",
            "127.0.0.1:7000\n",
            padded.as_str(),
        ] {
            assert!(
                matches!(validate_addr("a", bad), Err(StoreError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        let row = MemberRow {
            run: crate::NodeRun::new(1, 1),
            node_addr: "10.0.0.1:9000".into(),
            client_addr: "10.0.0.1:7000".into(),
        };
        assert!(validate_member(&row).is_ok());
        let bad_client = MemberRow {
            client_addr: "10.0.0.1".into(),
            ..row
        };
        assert!(matches!(
            validate_member(&bad_client),
            Err(StoreError::InvalidInput(message)) if message.contains("client address")
        ));
    }

    #[test]
    fn actions_are_checked() {
        let action = DurableAction {
            id: ActionId(1),
            player: "a".into(),
            zone: 2,
            kind: 7,
            payload: Bytes::new(),
        };
        assert!(validate_action(2, &action).is_ok());
        assert!(matches!(
            validate_action(3, &action),
            Err(StoreError::InvalidInput(_))
        ));
        let big = DurableAction {
            payload: Bytes::from(vec![0; MAX_ACTION_PAYLOAD_BYTES + 1]),
            ..action
        };
        assert!(matches!(
            validate_action(2, &big),
            Err(StoreError::TooLarge { .. })
        ));
    }
}
