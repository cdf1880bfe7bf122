//! Durable actions, connection side: commit the action to the store under the epoch
//! of the player's zone, then hand it to the zone to apply, then acknowledge. The
//! client hears `ActionCommitted` only after the store has it; a second send of the
//! same id is acknowledged again without being applied twice.
//!
//! Bounded: at most [`IN_FLIGHT_PER_SESSION`] actions of one session are being
//! committed at once; more are rejected with `Busy` (the client may resend them).

use crate::link::{ActionInFlight, ClientLink};
use crate::persist::ZoneDirectory;
use crate::persist::lifecycle::ZonePhase;
use crate::zone::{CommittedAction, SendError, ZoneMessage, ZoneRouter};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use zonemesh_shared::control::{ErrorCode, ServerControl};
use zonemesh_store::{ActionCommit, ActionId, DurableAction, Store};

/// Durable actions one session may have in the store's hands at once.
pub(super) const IN_FLIGHT_PER_SESSION: usize = 16;
/// Attempts to hand a committed action to a zone whose inbox is full (10 ms apart).
const DELIVERY_ATTEMPTS: u32 = 50;

/// What committing needs; shared by all sessions.
#[derive(Debug, Clone)]
pub(super) struct ActionDesk {
    pub(super) store: Arc<dyn Store>,
    pub(super) directory: Arc<ZoneDirectory>,
    pub(super) router: Arc<ZoneRouter>,
    pub(super) kinds: Arc<HashSet<u16>>,
}

/// One session's durable actions.
#[derive(Debug)]
pub(super) struct SessionActions {
    desk: ActionDesk,
    in_flight: Arc<Semaphore>,
}

impl SessionActions {
    pub(super) fn new(desk: ActionDesk) -> Self {
        Self {
            desk,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT_PER_SESSION)),
        }
    }

    /// Starts committing one action; its answer reaches the client through `link`.
    pub(super) fn submit(&self, link: &Arc<ClientLink>, action: CommittedAction) {
        if !self.desk.kinds.contains(&action.kind) {
            let message = format!("durable action kind {} is not handled", action.kind);
            link.push_control(rejected(action.id, ErrorCode::ProtocolViolation, message));
            return;
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            let message = "too many durable actions in flight; resend later";
            link.push_control(rejected(action.id, ErrorCode::Busy, message));
            return;
        };
        let Some(in_flight) = link.begin_action() else {
            let message = "the player is moving to another node; send the action again there";
            link.push_control(rejected(action.id, ErrorCode::Busy, message));
            return;
        };
        let (desk, link) = (self.desk.clone(), Arc::clone(link));
        tokio::spawn(async move {
            if let Some(answer) = commit(&desk, &link, action, in_flight).await {
                link.push_control(answer);
            }
            drop(permit);
        });
    }
}

async fn commit(
    desk: &ActionDesk,
    link: &Arc<ClientLink>,
    action: CommittedAction,
    in_flight: ActionInFlight,
) -> Option<ServerControl> {
    let zone = link.zone();
    let Some(ZonePhase::Active { epoch }) = desk.directory.phase(zone) else {
        return Some(rejected(
            action.id,
            ErrorCode::Busy,
            "the player's zone is not active",
        ));
    };
    let record = DurableAction {
        id: ActionId(action.id),
        player: link.name().to_owned(),
        zone: zone.0,
        kind: action.kind,
        payload: Bytes::from(action.payload.clone()),
    };
    match desk.store.commit_action(zone.0, epoch, record).await {
        Ok(ActionCommit::Committed) => {
            // Answered before the zone has it: the zone lets the player cross to
            // another node only once it applied the action, so this answer is on the
            // control stream before the `Redirect` that starts the move.
            link.push_control(ServerControl::ActionCommitted { id: action.id });
            deliver(desk, link, action, in_flight).await;
            None
        }
        Ok(ActionCommit::AlreadyCommitted(_)) => {
            Some(ServerControl::ActionCommitted { id: action.id })
        }
        Err(e) => {
            tracing::warn!(player = link.name(), error = %e, "durable action not stored");
            Some(rejected(
                action.id,
                ErrorCode::Busy,
                format!("not stored: {e}"),
            ))
        }
    }
}

/// Hands a committed action to the player's zone, waiting briefly if its inbox is full.
async fn deliver(
    desk: &ActionDesk,
    link: &Arc<ClientLink>,
    action: CommittedAction,
    in_flight: ActionInFlight,
) {
    let mut msg = ZoneMessage::DurableAction {
        link: Arc::clone(link),
        action,
        hops: 0,
        in_flight,
    };
    for _ in 0..DELIVERY_ATTEMPTS {
        match desk.router.send_now(link.zone(), msg) {
            Ok(()) => return,
            Err(SendError::Full(back)) => msg = back,
            Err(SendError::Stopped(_) | SendError::UnknownZone(_)) => break,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::error!(
        player = link.name(),
        "committed durable action could not reach its zone"
    );
}

fn rejected(id: u128, code: ErrorCode, message: impl Into<String>) -> ServerControl {
    ServerControl::ActionRejected {
        id,
        code,
        message: message.into(),
    }
}
