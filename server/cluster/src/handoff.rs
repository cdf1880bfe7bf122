//! Live zone handoff, without IO: moving a running zone from the node that holds it
//! (the source, A) to another node (the target, B) while its players stay connected.
//! The source's half is [`SourceHandoffs`], the target's [`TargetHandoffs`]; the
//! messages between them are [`HandoffMsg`]. The runtime carries out the actions the
//! cores return (freezing the zone, talking to the store, capturing and restoring the
//! snapshot, redirecting clients) and reports back through the cores' callbacks.
//!
//! The protocol, for a handoff `id` of zone Z held by A at epoch e:
//!
//! 1. A sends [`HandoffMsg::Prepare`] (every [`PREPARE_RESEND_MS`], giving up after
//!    [`PREPARE_TIMEOUT_MS`] with nothing frozen). B answers [`HandoffMsg::Ready`]
//!    and prewarms, or [`HandoffMsg::Refused`]. A repeated `Prepare` is answered
//!    again as the handoff stands (the first answer, or a later one), never acted on
//!    twice; one after an `Abort` is not answered.
//! 2. On `Ready` A freezes Z at its next tick boundary ([`SourceAction::Freeze`]: inputs
//!    are buffered, no new durable action starts, those in flight finish), then saves a
//!    final checkpoint and releases Z in the store at epoch e
//!    ([`SourceAction::CheckpointAndRelease`]). A release that fails unfreezes Z: A
//!    keeps it.
//! 3. Once released, A ships the complete snapshot ([`SourceAction::ShipState`], again
//!    every [`STATE_RESEND_MS`] until [`STATE_TIMEOUT_MS`] after the release). B
//!    restores it and asks the store for a new activation (epoch e+1 or later), and
//!    answers [`HandoffMsg::Activated`] with its epoch, or `Refused` if the store
//!    did not grant it (it then drops the restored zone). A repeated `State` gets the
//!    same answer again; one for a handoff dropped here (after an `Abort`, or no
//!    state within [`STATE_WAIT_MS`] of `Ready`) gets `Refused`.
//! 4. On `Activated` A redirects its clients to B with resume tokens and forwards the
//!    inputs it buffered ([`SourceAction::RedirectClients`]): the zone moved.
//! 5. On `Refused`, or no answer, after the release, Z is held by nobody A knows of: A
//!    asks the store to activate it again here ([`SourceAction::Reactivate`]).
//!
//! Why no two nodes ever accept inputs for Z: A stops accepting inputs (frozen)
//! before it releases Z, and accepts them again only after an unfreeze (before any
//! release, so the store still names A and nobody else can be granted Z) or after the
//! store granted it a new activation. B accepts inputs only after the store granted
//! it a new activation, which the store gives only while no live run holds Z. So the
//! store's single activation decides every race; the messages only make the common
//! case fast.
//!
//! A late `Activated` (it arrives after A gave up and asked to reactivate): A does not
//! redirect then, since its own reactivation races B's in the store and only the store
//! knows which one won. The core reports it ([`SourceAction::LateActivated`], for the
//! log); if B won, A's reactivation fails and the runtime sends Z's players away to
//! reconnect (they find Z on B); if A won, B's activation failed and B answered
//! `Refused`, so a late `Activated` cannot be from this race at all.
//!
//! A release whose outcome is unknown (the store call timed out) must be reported as
//! released (`ok = true`): shipping the state and, failing that, reactivating both go
//! through the store, which decides; unfreezing a zone the store may no longer give A
//! would not be safe.
//!
//! Handoff ids are chosen by the source, unique per source run; a runtime should start
//! them at a random value (see [`SourceHandoffs::new`]) so two sources' ids do not
//! collide at one target. Every message names the run it is for, and a core drops a
//! message for another run. At most [`HANDOFFS_IN_FLIGHT_MAX`] handoffs are in
//! flight per side; every wait has a timer except the runtime's own callbacks
//! (`released`, `activated`), which the runtime must always make (its store calls are
//! bounded by their own timeouts). Ended handoffs are remembered for
//! [`REMEMBER_MS`] to answer repeats, at most [`REMEMBERED_MAX`] of them.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use zonemesh_shared::codec::{DecodeError, Reader, Writer};
use zonemesh_shared::datagram::InputFrame;
use zonemesh_shared::ids::ZoneId;
use zonemesh_shared::node::NodeRef;
use zonemesh_shared::quant::Vec2;

use crate::Millis;

/// Largest snapshot a `State` message carries.
pub const SNAPSHOT_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Handoffs in flight at once on one side; more are refused.
pub const HANDOFFS_IN_FLIGHT_MAX: usize = 16;
/// Ended handoffs remembered on one side (to answer repeats), oldest forgotten first.
pub const REMEMBERED_MAX: usize = 256;
/// How often an unanswered `Prepare` is sent again.
pub const PREPARE_RESEND_MS: u64 = 250;
/// How long the source waits for an answer to `Prepare`.
pub const PREPARE_TIMEOUT_MS: u64 = 2_000;
/// How long the source waits for the runtime to freeze the zone.
pub const FREEZE_TIMEOUT_MS: u64 = 5_000;
/// How often the source ships the state again while no answer came.
pub const STATE_RESEND_MS: u64 = 500;
/// How long after the release the source waits for an answer to `State`.
pub const STATE_TIMEOUT_MS: u64 = 5_000;
/// How long the target keeps a prepared zone waiting for its state.
pub const STATE_WAIT_MS: u64 = 10_000;
/// How long an ended handoff is remembered after its last message.
pub const REMEMBER_MS: u64 = 10_000;

const TAG_PREPARE: u8 = 1;
const TAG_READY: u8 = 2;
const TAG_REFUSED: u8 = 3;
const TAG_STATE: u8 = 4;
const TAG_ACTIVATED: u8 = 5;
const TAG_ABORT: u8 = 6;
const TAG_FORWARD: u8 = 7;

/// Items one `Forward` message carries at most.
pub const FORWARDED_ITEMS_MAX: usize = 65_536;
/// Inputs one forwarded item carries at most (as many as one input datagram).
pub const FORWARDED_INPUTS_MAX: usize = 8;
/// Largest forwarded game event payload (a control frame's limit).
pub const FORWARDED_PAYLOAD_MAX: usize = 16 * 1024;

/// An input or game event a player sent to the source while its zone was frozen,
/// forwarded to the target once the zone moved.
#[derive(Debug, Clone, PartialEq)]
pub enum ForwardedItem {
    /// The newest inputs of a player's session (inputs are states: older ones add
    /// nothing; the target applies only those newer than what it applied).
    Input {
        /// The session.
        session: u64,
        /// Its inputs, as the client sent them.
        inputs: Vec<InputFrame>,
    },
    /// A reliable game event, in the order received.
    Event {
        /// The session.
        session: u64,
        /// Game-defined kind.
        kind: u16,
        /// Game-defined payload.
        payload: Vec<u8>,
    },
}

/// A zone's complete state as the source captured it (its `Debug` shows only the
/// length: a snapshot may be megabytes).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Snapshot(pub Vec<u8>);

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Snapshot({} bytes)", self.0.len())
    }
}

/// Why a target does not take a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The target has no room for the zone (or too many handoffs in flight).
    Full,
    /// The target already holds the zone.
    AlreadyHolds,
    /// The target is shutting down.
    Stopping,
    /// The target does not know the handoff (never prepared, or forgotten).
    Unknown,
    /// Another handoff of the zone to the target is in flight.
    InProgress,
    /// The store did not grant the target an activation.
    NotGranted,
}

/// A message between the source and the target of a handoff.
#[derive(Debug, Clone, PartialEq)]
pub enum HandoffMsg {
    /// Source → target: get ready to take `zone`.
    Prepare {
        /// The handoff, chosen by the source; repeats keep it.
        id: u64,
        /// The zone.
        zone: ZoneId,
        /// The source's activation epoch of the zone.
        epoch: u64,
        /// The source run (answers go to it).
        from: NodeRef,
        /// The target run.
        to: NodeRef,
    },
    /// Target → source: ready to take the zone.
    Ready {
        /// The handoff.
        id: u64,
        /// The source run.
        to: NodeRef,
    },
    /// Target → source: will not (or could not) take the zone.
    Refused {
        /// The handoff.
        id: u64,
        /// The source run.
        to: NodeRef,
        /// Why.
        reason: RefuseReason,
    },
    /// Source → target: the frozen zone's complete state, after the release.
    State {
        /// The handoff.
        id: u64,
        /// The target run.
        to: NodeRef,
        /// The zone.
        zone: ZoneId,
        /// The source's (released) activation epoch.
        epoch: u64,
        /// The tick the zone was frozen at.
        tick: u64,
        /// The state, at most [`SNAPSHOT_BYTES_MAX`] bytes.
        snapshot: Snapshot,
    },
    /// Target → source: the store granted the target the zone at `epoch`.
    Activated {
        /// The handoff.
        id: u64,
        /// The source run.
        to: NodeRef,
        /// The target's activation epoch.
        epoch: u64,
    },
    /// Source → target: the source gave the handoff up; drop what was prepared.
    Abort {
        /// The handoff.
        id: u64,
        /// The target run.
        to: NodeRef,
    },
    /// Source → target, after the move: what the players sent while the zone was
    /// frozen (best effort; the runtime's business, the cores ignore it).
    Forward {
        /// The handoff.
        id: u64,
        /// The target run.
        to: NodeRef,
        /// The zone.
        zone: ZoneId,
        /// Inputs and events, at most [`FORWARDED_ITEMS_MAX`].
        items: Vec<ForwardedItem>,
    },
}

impl HandoffMsg {
    /// The node run the message is for.
    pub fn to(&self) -> NodeRef {
        match self {
            HandoffMsg::Prepare { to, .. }
            | HandoffMsg::Ready { to, .. }
            | HandoffMsg::Refused { to, .. }
            | HandoffMsg::State { to, .. }
            | HandoffMsg::Activated { to, .. }
            | HandoffMsg::Abort { to, .. }
            | HandoffMsg::Forward { to, .. } => *to,
        }
    }

    /// The handoff the message is about.
    pub fn id(&self) -> u64 {
        match self {
            HandoffMsg::Prepare { id, .. }
            | HandoffMsg::Ready { id, .. }
            | HandoffMsg::Refused { id, .. }
            | HandoffMsg::State { id, .. }
            | HandoffMsg::Activated { id, .. }
            | HandoffMsg::Abort { id, .. }
            | HandoffMsg::Forward { id, .. } => *id,
        }
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let extra = match self {
            HandoffMsg::State { snapshot, .. } => snapshot.0.len(),
            _ => 0,
        };
        let mut w = Writer::with_capacity(48 + extra);
        w.u8(self.tag());
        w.varint(self.id());
        self.to().encode(&mut w);
        match self {
            HandoffMsg::Prepare {
                zone, epoch, from, ..
            } => {
                w.u32(zone.0);
                w.varint(*epoch);
                from.encode(&mut w);
            }
            HandoffMsg::Refused { reason, .. } => w.u8(reason_code(*reason)),
            HandoffMsg::State {
                zone,
                epoch,
                tick,
                snapshot,
                ..
            } => {
                w.u32(zone.0);
                w.varint(*epoch);
                w.varint(*tick);
                w.bytes(&snapshot.0);
            }
            HandoffMsg::Activated { epoch, .. } => w.varint(*epoch),
            HandoffMsg::Forward { zone, items, .. } => {
                w.u32(zone.0);
                encode_forwarded(items, &mut w);
            }
            HandoffMsg::Ready { .. } | HandoffMsg::Abort { .. } => {}
        }
        w.into_vec()
    }

    /// Reads the wire form; any other byte string is an error (never a panic).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let tag = r.u8()?;
        if !(TAG_PREPARE..=TAG_FORWARD).contains(&tag) {
            return Err(DecodeError::UnknownTag {
                what: "handoff message",
                tag: u64::from(tag),
            });
        }
        let id = r.varint()?;
        let to = NodeRef::decode(&mut r)?;
        let msg = match tag {
            TAG_PREPARE => HandoffMsg::Prepare {
                id,
                to,
                zone: ZoneId(r.u32()?),
                epoch: r.varint()?,
                from: NodeRef::decode(&mut r)?,
            },
            TAG_READY => HandoffMsg::Ready { id, to },
            TAG_REFUSED => HandoffMsg::Refused {
                id,
                to,
                reason: reason_from(r.u8()?)?,
            },
            TAG_STATE => HandoffMsg::State {
                id,
                to,
                zone: ZoneId(r.u32()?),
                epoch: r.varint()?,
                tick: r.varint()?,
                snapshot: Snapshot(r.bytes("snapshot", SNAPSHOT_BYTES_MAX)?.to_vec()),
            },
            TAG_ACTIVATED => HandoffMsg::Activated {
                id,
                to,
                epoch: r.varint()?,
            },
            TAG_FORWARD => HandoffMsg::Forward {
                id,
                to,
                zone: ZoneId(r.u32()?),
                items: decode_forwarded(&mut r)?,
            },
            _ => HandoffMsg::Abort { id, to },
        };
        r.finish()?;
        Ok(msg)
    }

    fn tag(&self) -> u8 {
        match self {
            HandoffMsg::Prepare { .. } => TAG_PREPARE,
            HandoffMsg::Ready { .. } => TAG_READY,
            HandoffMsg::Refused { .. } => TAG_REFUSED,
            HandoffMsg::State { .. } => TAG_STATE,
            HandoffMsg::Activated { .. } => TAG_ACTIVATED,
            HandoffMsg::Abort { .. } => TAG_ABORT,
            HandoffMsg::Forward { .. } => TAG_FORWARD,
        }
    }
}

fn encode_forwarded(items: &[ForwardedItem], w: &mut Writer) {
    w.varint(items.len() as u64);
    for item in items {
        match item {
            ForwardedItem::Input { session, inputs } => {
                w.u8(1);
                w.varint(*session);
                w.varint(inputs.len() as u64);
                for i in inputs {
                    w.u32(i.seq);
                    w.u32(i.velocity.x.to_bits());
                    w.u32(i.velocity.y.to_bits());
                    w.u8(i.buttons);
                }
            }
            ForwardedItem::Event {
                session,
                kind,
                payload,
            } => {
                w.u8(2);
                w.varint(*session);
                w.u16(*kind);
                w.bytes(payload);
            }
        }
    }
}

fn decode_forwarded(r: &mut Reader<'_>) -> Result<Vec<ForwardedItem>, DecodeError> {
    let n = r.count("forwarded items", FORWARDED_ITEMS_MAX)?;
    let mut items = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let item = match r.u8()? {
            1 => {
                let session = r.varint()?;
                let k = r.count("forwarded inputs", FORWARDED_INPUTS_MAX)?;
                let mut inputs = Vec::with_capacity(k);
                for _ in 0..k {
                    let seq = r.u32()?;
                    let x = crate::crossing::finite(r)?;
                    let y = crate::crossing::finite(r)?;
                    inputs.push(InputFrame {
                        seq,
                        velocity: Vec2::new(x, y),
                        buttons: r.u8()?,
                    });
                }
                ForwardedItem::Input { session, inputs }
            }
            2 => ForwardedItem::Event {
                session: r.varint()?,
                kind: r.u16()?,
                payload: r.bytes("forwarded event", FORWARDED_PAYLOAD_MAX)?.to_vec(),
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "forwarded item",
                    tag: u64::from(tag),
                });
            }
        };
        items.push(item);
    }
    Ok(items)
}

fn reason_code(reason: RefuseReason) -> u8 {
    match reason {
        RefuseReason::Full => 1,
        RefuseReason::AlreadyHolds => 2,
        RefuseReason::Stopping => 3,
        RefuseReason::Unknown => 4,
        RefuseReason::InProgress => 5,
        RefuseReason::NotGranted => 6,
    }
}

fn reason_from(code: u8) -> Result<RefuseReason, DecodeError> {
    Ok(match code {
        1 => RefuseReason::Full,
        2 => RefuseReason::AlreadyHolds,
        3 => RefuseReason::Stopping,
        4 => RefuseReason::Unknown,
        5 => RefuseReason::InProgress,
        6 => RefuseReason::NotGranted,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "refuse reason",
                tag: u64::from(tag),
            });
        }
    })
}

/// How a handoff ended, on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffOutcome {
    /// The target holds the zone at `epoch`; the clients were redirected.
    Moved {
        /// The target's activation epoch.
        epoch: u64,
    },
    /// The zone did not move (it was unfrozen or reactivated here, see the actions).
    Aborted(AbortReason),
}

/// Why a handoff was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The target never answered `Prepare`.
    NoAnswer,
    /// The target refused.
    Refused(RefuseReason),
    /// The runtime did not freeze the zone in time.
    FreezeTimedOut,
    /// The store did not release the zone.
    ReleaseFailed,
    /// The target never answered `State`.
    NoActivation,
}

/// Why a handoff could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// [`HANDOFFS_IN_FLIGHT_MAX`] handoffs are in flight already.
    Full,
    /// A handoff of the zone is in flight already.
    ZoneMoving,
    /// The target is this run.
    ToSelf,
}

/// What the source's runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceAction {
    /// Send the message to its `to`.
    Send(HandoffMsg),
    /// Freeze the zone at its next tick boundary, then call
    /// [`SourceHandoffs::frozen`].
    Freeze {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
    },
    /// Save the frozen zone's final checkpoint and release it in the store at
    /// `epoch`, then call [`SourceHandoffs::released`].
    CheckpointAndRelease {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
        /// The epoch to release.
        epoch: u64,
    },
    /// Accept inputs for the zone again (the store still names this run): apply the
    /// buffered inputs.
    Unfreeze {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
    },
    /// Capture the frozen zone's complete state and send it to `to` as
    /// [`HandoffMsg::State`] (again, if asked again: the zone is still frozen, so the
    /// snapshot may be kept).
    ShipState {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
        /// The released epoch.
        epoch: u64,
        /// The tick the zone was frozen at.
        tick: u64,
        /// The target run.
        to: NodeRef,
    },
    /// The released zone did not move: activate it here again and unfreeze it; if the
    /// store grants it elsewhere, send its players away to reconnect. A grant at an
    /// epoch other than the released one plus one means the zone was held elsewhere
    /// in between: the frozen state is stale, so load the zone's saved state instead.
    Reactivate {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
    },
    /// The zone is on `to` now: redirect its clients there with resume tokens and
    /// forward the inputs buffered meanwhile, then unload it here (without a save).
    RedirectClients {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
        /// The target run.
        to: NodeRef,
        /// The target's activation epoch.
        epoch: u64,
    },
    /// The handoff ended (for the rebalancer and the log).
    Finished {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
        /// How it ended.
        outcome: HandoffOutcome,
    },
    /// The target reported an activation after this run asked to reactivate the zone;
    /// only for the log (the store decided between the two).
    LateActivated {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
        /// The target's activation epoch.
        epoch: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum SourcePhase {
    Preparing {
        last_sent: Millis,
    },
    Freezing {
        since: Millis,
    },
    Releasing {
        tick: u64,
        refused: Option<RefuseReason>,
    },
    Shipping {
        tick: u64,
        released_at: Millis,
        last_sent: Millis,
    },
    Ended {
        at: Millis,
        outcome: HandoffOutcome,
        reactivated: bool,
    },
}

#[derive(Debug)]
struct Outgoing {
    zone: ZoneId,
    epoch: u64,
    to: NodeRef,
    started: Millis,
    phase: SourcePhase,
}

impl Outgoing {
    fn is_live(&self) -> bool {
        !matches!(self.phase, SourcePhase::Ended { .. })
    }

    /// When `handle_timeout` has something to do for it (`None`: waiting for the
    /// runtime).
    fn deadline(&self) -> Option<Millis> {
        match self.phase {
            SourcePhase::Preparing { last_sent } => {
                Some((last_sent + PREPARE_RESEND_MS).min(self.started + PREPARE_TIMEOUT_MS))
            }
            SourcePhase::Freezing { since } => Some(since + FREEZE_TIMEOUT_MS),
            SourcePhase::Releasing { .. } => None,
            SourcePhase::Shipping {
                released_at,
                last_sent,
                ..
            } => Some((last_sent + STATE_RESEND_MS).min(released_at + STATE_TIMEOUT_MS)),
            SourcePhase::Ended { at, .. } => Some(at + REMEMBER_MS),
        }
    }
}

/// The source's handoffs: the zones this run is giving away.
#[derive(Debug)]
pub struct SourceHandoffs {
    me: NodeRef,
    next_id: u64,
    handoffs: BTreeMap<u64, Outgoing>,
    actions: VecDeque<SourceAction>,
}

impl SourceHandoffs {
    /// The handoffs of run `me`, whose ids start at `first_id` (a runtime passes a
    /// random value, so ids of different sources do not collide at a target).
    pub fn new(me: NodeRef, first_id: u64) -> Self {
        Self {
            me,
            next_id: first_id,
            handoffs: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// Handoffs in flight (not ended).
    pub fn in_flight(&self) -> usize {
        self.handoffs.values().filter(|h| h.is_live()).count()
    }

    /// Starts moving `zone`, held here at `epoch`, to `to`; returns the handoff's id.
    pub fn start(
        &mut self,
        now: Millis,
        zone: ZoneId,
        epoch: u64,
        to: NodeRef,
    ) -> Result<u64, StartError> {
        if to == self.me {
            return Err(StartError::ToSelf);
        }
        if self
            .handoffs
            .values()
            .any(|h| h.is_live() && h.zone == zone)
        {
            return Err(StartError::ZoneMoving);
        }
        if self.in_flight() >= HANDOFFS_IN_FLIGHT_MAX {
            return Err(StartError::Full);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        // A wrapped id still naming a remembered handoff: that one is long over.
        self.handoffs.insert(
            id,
            Outgoing {
                zone,
                epoch,
                to,
                started: now,
                phase: SourcePhase::Preparing { last_sent: now },
            },
        );
        self.send_prepare(id);
        forget_oldest(&mut self.handoffs, |h| match h.phase {
            SourcePhase::Ended { at, .. } => Some(at),
            _ => None,
        });
        Ok(id)
    }

    /// The next action to carry out, until `None`.
    pub fn poll_action(&mut self) -> Option<SourceAction> {
        self.actions.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.handoffs.values().filter_map(Outgoing::deadline).min()
    }

    /// A message from a target.
    pub fn handle_message(&mut self, now: Millis, msg: HandoffMsg) {
        if msg.to() != self.me {
            return;
        }
        match msg {
            HandoffMsg::Ready { id, .. } => self.on_ready(now, id),
            HandoffMsg::Refused { id, reason, .. } => self.on_refused(now, id, reason),
            HandoffMsg::Activated { id, epoch, .. } => self.on_activated(now, id, epoch),
            // A target's messages only, and the runtime's own.
            HandoffMsg::Prepare { .. }
            | HandoffMsg::State { .. }
            | HandoffMsg::Abort { .. }
            | HandoffMsg::Forward { .. } => {}
        }
    }

    /// Whether handoff `id` waits for its zone to freeze (a zone frozen for a
    /// handoff no longer waiting must be unfrozen by the runtime).
    pub fn awaits_freeze(&self, id: u64) -> bool {
        self.handoffs
            .get(&id)
            .is_some_and(|h| matches!(h.phase, SourcePhase::Freezing { .. }))
    }

    /// The runtime froze the zone of handoff `id` at `tick`.
    pub fn frozen(&mut self, id: u64, tick: u64) {
        let Some(h) = self.handoffs.get_mut(&id) else {
            return;
        };
        if let SourcePhase::Freezing { .. } = h.phase {
            h.phase = SourcePhase::Releasing {
                tick,
                refused: None,
            };
            self.actions.push_back(SourceAction::CheckpointAndRelease {
                id,
                zone: h.zone,
                epoch: h.epoch,
            });
        }
    }

    /// The store released the zone of handoff `id` (`ok`), or surely did not. An
    /// unknown outcome is reported as `ok` (see the module docs).
    pub fn released(&mut self, now: Millis, id: u64, ok: bool) {
        let Some(h) = self.handoffs.get_mut(&id) else {
            return;
        };
        let SourcePhase::Releasing { tick, refused } = h.phase else {
            return;
        };
        match (ok, refused) {
            (false, refused) => {
                let reason = refused.map_or(AbortReason::ReleaseFailed, AbortReason::Refused);
                self.unfreeze_and_abort(now, id, reason);
            }
            (true, Some(reason)) => self.reactivate(now, id, AbortReason::Refused(reason)),
            (true, None) => {
                h.phase = SourcePhase::Shipping {
                    tick,
                    released_at: now,
                    last_sent: now,
                };
                self.ship_state(id);
            }
        }
    }

    /// Resends and gives up whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        let due: Vec<u64> = self
            .handoffs
            .iter()
            .filter(|(_, h)| h.deadline().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.timeout(now, id);
        }
    }

    fn timeout(&mut self, now: Millis, id: u64) {
        let Some(h) = self.handoffs.get_mut(&id) else {
            return;
        };
        match h.phase {
            SourcePhase::Preparing { .. } if now >= h.started + PREPARE_TIMEOUT_MS => {
                self.send_abort(id);
                self.finish(now, id, AbortReason::NoAnswer.into(), false);
            }
            SourcePhase::Preparing { .. } => {
                h.phase = SourcePhase::Preparing { last_sent: now };
                self.send_prepare(id);
            }
            SourcePhase::Freezing { .. } => {
                self.unfreeze_and_abort(now, id, AbortReason::FreezeTimedOut);
            }
            SourcePhase::Shipping { released_at, .. } if now >= released_at + STATE_TIMEOUT_MS => {
                self.reactivate(now, id, AbortReason::NoActivation);
            }
            SourcePhase::Shipping {
                tick, released_at, ..
            } => {
                h.phase = SourcePhase::Shipping {
                    tick,
                    released_at,
                    last_sent: now,
                };
                self.ship_state(id);
            }
            SourcePhase::Ended { .. } => {
                self.handoffs.remove(&id);
            }
            SourcePhase::Releasing { .. } => {}
        }
    }

    fn on_ready(&mut self, now: Millis, id: u64) {
        let Some(h) = self.handoffs.get_mut(&id) else {
            return;
        };
        match h.phase {
            SourcePhase::Preparing { .. } => {
                h.phase = SourcePhase::Freezing { since: now };
                self.actions
                    .push_back(SourceAction::Freeze { id, zone: h.zone });
            }
            // The target prepared for a handoff given up here: let it drop that now
            // rather than after its wait.
            SourcePhase::Ended {
                outcome: HandoffOutcome::Aborted(_),
                ..
            } => self.send_abort(id),
            _ => {}
        }
    }

    fn on_refused(&mut self, now: Millis, id: u64, reason: RefuseReason) {
        let Some(h) = self.handoffs.get_mut(&id) else {
            return;
        };
        let aborted = AbortReason::Refused(reason);
        match h.phase {
            SourcePhase::Preparing { .. } => self.finish(now, id, aborted.into(), false),
            SourcePhase::Freezing { .. } => self.unfreeze_and_abort(now, id, aborted),
            // The release is under way: what to do depends on whether it happens.
            SourcePhase::Releasing { tick, .. } => {
                h.phase = SourcePhase::Releasing {
                    tick,
                    refused: Some(reason),
                };
            }
            SourcePhase::Shipping { .. } => self.reactivate(now, id, aborted),
            SourcePhase::Ended { .. } => {}
        }
    }

    fn on_activated(&mut self, now: Millis, id: u64, epoch: u64) {
        let Some(h) = self.handoffs.get(&id) else {
            return;
        };
        // The store's epochs only grow: an activation not newer than the released one
        // is not the target's (a corrupt or misdirected message).
        if epoch <= h.epoch {
            return;
        }
        let zone = h.zone;
        match h.phase {
            SourcePhase::Shipping { .. } => {
                let to = h.to;
                self.actions.push_back(SourceAction::RedirectClients {
                    id,
                    zone,
                    to,
                    epoch,
                });
                self.finish(now, id, HandoffOutcome::Moved { epoch }, false);
            }
            SourcePhase::Ended {
                reactivated: true, ..
            } => {
                self.actions
                    .push_back(SourceAction::LateActivated { id, zone, epoch });
            }
            // No state was shipped before these, so the target cannot have activated.
            _ => {}
        }
    }

    fn unfreeze_and_abort(&mut self, now: Millis, id: u64, reason: AbortReason) {
        let Some(h) = self.handoffs.get(&id) else {
            return;
        };
        self.actions
            .push_back(SourceAction::Unfreeze { id, zone: h.zone });
        self.send_abort(id);
        self.finish(now, id, reason.into(), false);
    }

    fn reactivate(&mut self, now: Millis, id: u64, reason: AbortReason) {
        let Some(h) = self.handoffs.get(&id) else {
            return;
        };
        self.actions
            .push_back(SourceAction::Reactivate { id, zone: h.zone });
        self.send_abort(id);
        self.finish(now, id, reason.into(), true);
    }

    fn finish(&mut self, now: Millis, id: u64, outcome: HandoffOutcome, reactivated: bool) {
        let Some(h) = self.handoffs.get_mut(&id) else {
            return;
        };
        h.phase = SourcePhase::Ended {
            at: now,
            outcome,
            reactivated,
        };
        self.actions.push_back(SourceAction::Finished {
            id,
            zone: h.zone,
            outcome,
        });
    }

    fn send_prepare(&mut self, id: u64) {
        if let Some(h) = self.handoffs.get(&id) {
            self.actions
                .push_back(SourceAction::Send(HandoffMsg::Prepare {
                    id,
                    zone: h.zone,
                    epoch: h.epoch,
                    from: self.me,
                    to: h.to,
                }));
        }
    }

    fn send_abort(&mut self, id: u64) {
        if let Some(h) = self.handoffs.get(&id) {
            self.actions
                .push_back(SourceAction::Send(HandoffMsg::Abort { id, to: h.to }));
        }
    }

    fn ship_state(&mut self, id: u64) {
        if let Some(h) = self.handoffs.get(&id)
            && let SourcePhase::Shipping { tick, .. } = h.phase
        {
            self.actions.push_back(SourceAction::ShipState {
                id,
                zone: h.zone,
                epoch: h.epoch,
                tick,
                to: h.to,
            });
        }
    }
}

impl From<AbortReason> for HandoffOutcome {
    fn from(reason: AbortReason) -> Self {
        HandoffOutcome::Aborted(reason)
    }
}

/// Forgets ended entries, oldest first, while more than [`REMEMBERED_MAX`] are kept
/// (`ended_at` is `None` for a live one, which is never forgotten).
fn forget_oldest<K: Ord + Copy, V>(
    entries: &mut BTreeMap<K, V>,
    ended_at: impl Fn(&V) -> Option<Millis>,
) {
    while entries.len() > REMEMBERED_MAX {
        let oldest = entries
            .iter()
            .filter_map(|(k, v)| ended_at(v).map(|at| (at, *k)))
            .min();
        let Some((_, key)) = oldest else {
            return;
        };
        entries.remove(&key);
    }
}

/// What the target's runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetAction {
    /// Send the message to its `to`.
    Send(HandoffMsg),
    /// Get ready to host the zone (load its static data, reserve room); it accepts
    /// no inputs yet.
    Prewarm {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
    },
    /// Build the zone from the source's snapshot (not accepting inputs yet).
    Restore {
        /// The handoff.
        id: u64,
        /// The source run (whose players' claims the target takes over).
        from: NodeRef,
        /// The zone.
        zone: ZoneId,
        /// The source's released epoch.
        epoch: u64,
        /// The tick the source froze the zone at.
        tick: u64,
        /// The state.
        snapshot: Snapshot,
    },
    /// Ask the store for a new activation of the restored zone, then call
    /// [`TargetHandoffs::activated`]; accept inputs only once granted. A grant at an
    /// epoch other than the released one (the `Restore`'s) plus one means the zone
    /// was held in between (the source took it back, and may have released it again
    /// since): the restored state is stale, so load the zone's saved state instead.
    Activate {
        /// The zone.
        zone: ZoneId,
        /// The handoff.
        attempt: u64,
    },
    /// Forget what was prepared or restored for the zone (it is not activated here).
    Drop {
        /// The handoff.
        id: u64,
        /// The zone.
        zone: ZoneId,
    },
}

#[derive(Debug, Clone, Copy)]
enum TargetPhase {
    /// `Ready` sent, waiting for the state.
    Prepared { ready_at: Millis },
    /// State restored, the store asked.
    Activating,
    /// The store granted `epoch`.
    Activated { epoch: u64, last: Millis },
    /// Refused (at `Prepare`, or the store did not grant the zone).
    Refused { reason: RefuseReason, last: Millis },
    /// Dropped on `Abort` or after waiting for the state too long.
    Dropped { last: Millis },
}

#[derive(Debug)]
struct Incoming {
    id: u64,
    from: NodeRef,
    epoch: u64,
    phase: TargetPhase,
}

impl Incoming {
    fn is_live(&self) -> bool {
        matches!(
            self.phase,
            TargetPhase::Prepared { .. } | TargetPhase::Activating
        )
    }

    fn ended_at(&self) -> Option<Millis> {
        match self.phase {
            TargetPhase::Prepared { .. } | TargetPhase::Activating => None,
            TargetPhase::Activated { last, .. }
            | TargetPhase::Refused { last, .. }
            | TargetPhase::Dropped { last } => Some(last),
        }
    }

    fn deadline(&self) -> Option<Millis> {
        match self.phase {
            TargetPhase::Prepared { ready_at } => Some(ready_at + STATE_WAIT_MS),
            _ => self.ended_at().map(|last| last + REMEMBER_MS),
        }
    }

    fn touch(&mut self, now: Millis) {
        match &mut self.phase {
            TargetPhase::Activated { last, .. }
            | TargetPhase::Refused { last, .. }
            | TargetPhase::Dropped { last } => *last = now,
            TargetPhase::Prepared { .. } | TargetPhase::Activating => {}
        }
    }
}

/// The target's handoffs: the zones this run is taking over, one handoff per zone.
#[derive(Debug)]
pub struct TargetHandoffs {
    me: NodeRef,
    handoffs: BTreeMap<ZoneId, Incoming>,
    actions: VecDeque<TargetAction>,
}

impl TargetHandoffs {
    /// The handoffs of run `me`.
    pub fn new(me: NodeRef) -> Self {
        Self {
            me,
            handoffs: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// Handoffs in flight (prepared or activating).
    pub fn in_flight(&self) -> usize {
        self.handoffs.values().filter(|h| h.is_live()).count()
    }

    /// The next action to carry out, until `None`.
    pub fn poll_action(&mut self) -> Option<TargetAction> {
        self.actions.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.handoffs.values().filter_map(Incoming::deadline).min()
    }

    /// A message from a source. `admit` says whether this run can take a zone now
    /// (room, not holding it, not stopping); it is asked only for a new `Prepare`.
    pub fn handle_message(
        &mut self,
        now: Millis,
        msg: HandoffMsg,
        admit: impl FnOnce(ZoneId) -> Result<(), RefuseReason>,
    ) {
        if msg.to() != self.me {
            return;
        }
        match msg {
            HandoffMsg::Prepare {
                id,
                zone,
                epoch,
                from,
                ..
            } => self.on_prepare(now, id, zone, epoch, from, admit),
            HandoffMsg::State {
                id,
                zone,
                epoch,
                tick,
                snapshot,
                ..
            } => self.on_state(now, id, zone, epoch, tick, snapshot),
            HandoffMsg::Abort { id, .. } => self.on_abort(now, id),
            // A source's messages only, and the runtime's own.
            HandoffMsg::Ready { .. }
            | HandoffMsg::Refused { .. }
            | HandoffMsg::Activated { .. }
            | HandoffMsg::Forward { .. } => {}
        }
    }

    /// The store answered the activation of `zone` for handoff `attempt`: granted at
    /// `Some(epoch)`, or not.
    pub fn activated(&mut self, now: Millis, zone: ZoneId, attempt: u64, epoch: Option<u64>) {
        let Some(h) = self.handoffs.get_mut(&zone) else {
            return;
        };
        if h.id != attempt || !matches!(h.phase, TargetPhase::Activating) {
            return;
        }
        match epoch {
            Some(epoch) => h.phase = TargetPhase::Activated { epoch, last: now },
            None => {
                h.phase = TargetPhase::Refused {
                    reason: RefuseReason::NotGranted,
                    last: now,
                };
                self.actions
                    .push_back(TargetAction::Drop { id: attempt, zone });
            }
        }
        self.answer(zone);
    }

    /// Drops prepared zones whose state did not come, and forgets old answers.
    pub fn handle_timeout(&mut self, now: Millis) {
        let due: Vec<ZoneId> = self
            .handoffs
            .iter()
            .filter(|(_, h)| h.deadline().is_some_and(|at| at <= now))
            .map(|(zone, _)| *zone)
            .collect();
        for zone in due {
            let Some(h) = self.handoffs.get_mut(&zone) else {
                continue;
            };
            if let TargetPhase::Prepared { .. } = h.phase {
                h.phase = TargetPhase::Dropped { last: now };
                self.actions
                    .push_back(TargetAction::Drop { id: h.id, zone });
            } else {
                self.handoffs.remove(&zone);
            }
        }
    }

    fn on_prepare(
        &mut self,
        now: Millis,
        id: u64,
        zone: ZoneId,
        epoch: u64,
        from: NodeRef,
        admit: impl FnOnce(ZoneId) -> Result<(), RefuseReason>,
    ) {
        if let Some(h) = self.handoffs.get_mut(&zone) {
            if h.id == id && h.from == from {
                // A repeat: the first answer again (a dropped one is not answered: its
                // source gave it up).
                h.touch(now);
                if !matches!(h.phase, TargetPhase::Dropped { .. }) {
                    self.answer(zone);
                }
                return;
            }
            if h.is_live() {
                self.send(HandoffMsg::Refused {
                    id,
                    to: from,
                    reason: RefuseReason::InProgress,
                });
                return;
            }
        }
        let verdict = if self.in_flight() >= HANDOFFS_IN_FLIGHT_MAX {
            Err(RefuseReason::Full)
        } else {
            admit(zone)
        };
        let phase = match verdict {
            Ok(()) => {
                self.actions.push_back(TargetAction::Prewarm { id, zone });
                TargetPhase::Prepared { ready_at: now }
            }
            Err(reason) => TargetPhase::Refused { reason, last: now },
        };
        self.handoffs.insert(
            zone,
            Incoming {
                id,
                from,
                epoch,
                phase,
            },
        );
        self.answer(zone);
        forget_oldest(&mut self.handoffs, Incoming::ended_at);
    }

    fn on_state(
        &mut self,
        now: Millis,
        id: u64,
        zone: ZoneId,
        epoch: u64,
        tick: u64,
        snapshot: Snapshot,
    ) {
        let Some(h) = self.handoffs.get_mut(&zone) else {
            return;
        };
        // Not the handoff prepared here: nobody to answer (the source gives up).
        if h.id != id || h.epoch != epoch {
            return;
        }
        match h.phase {
            TargetPhase::Prepared { .. } => {
                h.phase = TargetPhase::Activating;
                self.actions.push_back(TargetAction::Restore {
                    id,
                    from: h.from,
                    zone,
                    epoch,
                    tick,
                    snapshot,
                });
                self.actions
                    .push_back(TargetAction::Activate { zone, attempt: id });
            }
            // The answer comes once the store answers.
            TargetPhase::Activating => {}
            TargetPhase::Activated { .. } | TargetPhase::Refused { .. } => {
                h.touch(now);
                self.answer(zone);
            }
            TargetPhase::Dropped { .. } => {
                h.touch(now);
                let to = h.from;
                self.send(HandoffMsg::Refused {
                    id,
                    to,
                    reason: RefuseReason::Unknown,
                });
            }
        }
    }

    fn on_abort(&mut self, now: Millis, id: u64) {
        // Aborts carry no zone: an id prepared for two zones (two sources' ids
        // colliding) is left to time out rather than guessed.
        let mut prepared = self
            .handoffs
            .iter_mut()
            .filter(|(_, h)| h.id == id && matches!(h.phase, TargetPhase::Prepared { .. }));
        let (Some((zone, h)), None) = (prepared.next(), prepared.next()) else {
            return;
        };
        let zone = *zone;
        h.phase = TargetPhase::Dropped { last: now };
        self.actions.push_back(TargetAction::Drop { id, zone });
    }

    /// Sends the answer the handoff of `zone` stands at (none while activating or
    /// after a drop).
    fn answer(&mut self, zone: ZoneId) {
        let Some(h) = self.handoffs.get(&zone) else {
            return;
        };
        let (id, to) = (h.id, h.from);
        let msg = match h.phase {
            TargetPhase::Prepared { .. } => HandoffMsg::Ready { id, to },
            TargetPhase::Activated { epoch, .. } => HandoffMsg::Activated { id, to, epoch },
            TargetPhase::Refused { reason, .. } => HandoffMsg::Refused { id, to, reason },
            TargetPhase::Activating | TargetPhase::Dropped { .. } => return,
        };
        self.send(msg);
    }

    fn send(&mut self, msg: HandoffMsg) {
        self.actions.push_back(TargetAction::Send(msg));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::sim::SimRng;

    const A: NodeRef = NodeRef::new(1, 1);
    const B: NodeRef = NodeRef::new(2, 1);
    const Z: ZoneId = ZoneId(7);
    const EPOCH: u64 = 5;
    const TICK: u64 = 4_321;

    /// Something the pump does at a given time.
    #[derive(Debug)]
    enum Event {
        ToSource(HandoffMsg),
        ToTarget(HandoffMsg),
        Frozen(u64),
        Released(u64),
        Activate(u64),
    }

    /// What the network does to one message.
    #[derive(Debug, Clone, Copy)]
    enum Fate {
        Deliver(u64),
        Lose,
    }

    /// A source and a target core wired together through a network, a store holding
    /// one zone, and both runtimes, all modelled; it checks the invariants after every
    /// step.
    struct Pump {
        now: Millis,
        source: SourceHandoffs,
        target: TargetHandoffs,
        events: BTreeMap<(Millis, u64), Event>,
        seq: u64,
        /// Random faults (loss, duplication, reordering, slow runtimes), if any.
        rng: Option<SimRng>,
        /// The share of messages lost under random faults.
        loss: f64,
        /// Set faults: the fate of the `n`-th message with a tag (`None`: every one).
        rules: Vec<(u8, Option<usize>, Fate)>,
        sent: BTreeMap<u8, usize>,
        admit: Result<(), RefuseReason>,
        release_ok: bool,
        grant: bool,
        freeze_ms: u64,
        // The store: who holds the zone, at which epoch.
        holder: Option<NodeRef>,
        epoch: u64,
        // The runtimes.
        a_accepting: bool,
        a_freezing: bool,
        b_accepting: bool,
        granted: BTreeSet<u64>,
        /// Whether an `Activated` reached the source.
        a_heard_activated: bool,
        source_log: Vec<SourceAction>,
        target_log: Vec<TargetAction>,
        outcome: Option<(Millis, HandoffOutcome)>,
    }

    impl Pump {
        fn new() -> Self {
            Self {
                now: Millis(0),
                source: SourceHandoffs::new(A, 100),
                target: TargetHandoffs::new(B),
                events: BTreeMap::new(),
                seq: 0,
                rng: None,
                loss: 0.0,
                rules: Vec::new(),
                sent: BTreeMap::new(),
                admit: Ok(()),
                release_ok: true,
                grant: true,
                freeze_ms: 30,
                holder: Some(A),
                epoch: EPOCH,
                a_accepting: true,
                a_freezing: false,
                b_accepting: false,
                granted: BTreeSet::new(),
                a_heard_activated: false,
                source_log: Vec::new(),
                target_log: Vec::new(),
                outcome: None,
            }
        }

        fn random(seed: u64) -> Self {
            let mut rng = SimRng::new(seed);
            let mut pump = Self::new();
            if rng.chance(0.1) {
                pump.admit = Err(RefuseReason::Full);
            }
            pump.grant = !rng.chance(0.1);
            pump.loss = [0.0, 0.2, 0.5, 0.8][rng.index(4)];
            pump.rng = Some(rng);
            pump
        }

        /// Starts the handoff and runs until `limit`.
        fn run(&mut self, limit: u64) -> u64 {
            let id = self.source.start(self.now, Z, EPOCH, B).expect("starts");
            self.drain();
            while self.advance(Millis(limit)) {}
            id
        }

        fn later(&mut self, ms: u64, event: Event) {
            self.seq += 1;
            self.events.insert((self.now + ms, self.seq), event);
        }

        /// A runtime's delay: `usual` ms, or random (rarely `slow`).
        fn delay(&mut self, usual: u64, slow: u64) -> u64 {
            let Some(rng) = &mut self.rng else {
                return usual;
            };
            if rng.chance(0.02) {
                slow
            } else {
                rng.range(0, 2 * usual)
            }
        }

        fn net(&mut self, msg: HandoffMsg) {
            let msg = HandoffMsg::decode(&msg.encode()).expect("the wire form decodes");
            let tag = msg.tag();
            let n = *self.sent.entry(tag).and_modify(|n| *n += 1).or_insert(0);
            let rule = self
                .rules
                .iter()
                .find(|(t, nth, _)| *t == tag && nth.is_none_or(|k| k == n));
            let fates = match (rule, &mut self.rng) {
                (Some((_, _, fate)), _) => vec![*fate],
                (None, None) => vec![Fate::Deliver(20)],
                (None, Some(rng)) => {
                    let copies = if rng.chance(0.1) { 2 } else { 1 };
                    (0..copies)
                        .map(|_| {
                            if rng.chance(self.loss) {
                                Fate::Lose
                            } else if rng.chance(0.01) {
                                Fate::Deliver(STATE_TIMEOUT_MS + 1_000)
                            } else {
                                Fate::Deliver(rng.range(0, 400))
                            }
                        })
                        .collect()
                }
            };
            for fate in fates {
                if let Fate::Deliver(ms) = fate {
                    let event = if msg.to() == A {
                        Event::ToSource(msg.clone())
                    } else {
                        Event::ToTarget(msg.clone())
                    };
                    self.later(ms, event);
                }
            }
        }

        fn drain(&mut self) {
            loop {
                if let Some(action) = self.source.poll_action() {
                    self.on_source(action);
                } else if let Some(action) = self.target.poll_action() {
                    self.on_target(action);
                } else {
                    break;
                }
                assert!(
                    !(self.a_accepting && self.b_accepting),
                    "both nodes accept inputs at {}",
                    self.now
                );
            }
        }

        fn on_source(&mut self, action: SourceAction) {
            match &action {
                SourceAction::Send(msg) => return self.net(msg.clone()),
                SourceAction::Freeze { id, .. } => {
                    self.a_freezing = true;
                    let ms = self.delay(self.freeze_ms, FREEZE_TIMEOUT_MS + 1_000);
                    self.later(ms, Event::Frozen(*id));
                }
                SourceAction::CheckpointAndRelease { id, epoch, .. } => {
                    assert_eq!(*epoch, EPOCH);
                    let ms = self.delay(50, 2_000);
                    self.later(ms, Event::Released(*id));
                }
                SourceAction::Unfreeze { .. } => {
                    assert_eq!(self.holder, Some(A), "unfrozen a zone it does not hold");
                    assert!(!self.b_accepting && !self.a_heard_activated);
                    self.a_freezing = false;
                    self.a_accepting = true;
                }
                SourceAction::ShipState {
                    id,
                    zone,
                    epoch,
                    tick,
                    to,
                } => {
                    let msg = HandoffMsg::State {
                        id: *id,
                        to: *to,
                        zone: *zone,
                        epoch: *epoch,
                        tick: *tick,
                        snapshot: Snapshot(vec![0xab; 64]),
                    };
                    self.net(msg);
                }
                SourceAction::Reactivate { .. } => {
                    assert!(!self.a_heard_activated, "reactivated after an activation");
                    self.a_freezing = false;
                    // The store decides; if it names B, A's players are sent away.
                    if self.holder.is_none() {
                        self.holder = Some(A);
                        self.epoch += 1;
                        self.a_accepting = true;
                    }
                }
                SourceAction::RedirectClients { id, epoch, .. } => {
                    assert!(self.granted.contains(id), "redirected to an ungranted run");
                    assert_eq!((self.holder, self.epoch), (Some(B), *epoch));
                }
                SourceAction::Finished { outcome, .. } => {
                    assert!(self.outcome.is_none(), "finished twice");
                    self.outcome = Some((self.now, *outcome));
                }
                SourceAction::LateActivated { .. } => {}
            }
            self.source_log.push(action);
        }

        fn on_target(&mut self, action: TargetAction) {
            match &action {
                TargetAction::Send(msg) => return self.net(msg.clone()),
                TargetAction::Activate { zone, attempt } => {
                    assert_eq!(*zone, Z);
                    let ms = self.delay(50, STATE_TIMEOUT_MS + 1_000);
                    self.later(ms, Event::Activate(*attempt));
                }
                TargetAction::Drop { .. } => assert!(!self.b_accepting, "dropped a live zone"),
                TargetAction::Prewarm { .. } | TargetAction::Restore { .. } => {}
            }
            self.target_log.push(action);
        }

        fn on_event(&mut self, event: Event) {
            match event {
                Event::ToSource(msg) => {
                    self.a_heard_activated |= matches!(msg, HandoffMsg::Activated { .. });
                    self.source.handle_message(self.now, msg);
                }
                Event::ToTarget(msg) => {
                    let admit = self.admit;
                    self.target.handle_message(self.now, msg, |_| admit);
                }
                Event::Frozen(id) => {
                    if self.a_freezing {
                        self.a_accepting = false;
                        self.source.frozen(id, TICK);
                    }
                }
                Event::Released(id) => {
                    let ok = self.release_ok && !self.rng.as_mut().is_some_and(|r| r.chance(0.1));
                    if ok {
                        assert_eq!(self.holder, Some(A));
                        assert!(!self.a_accepting, "released a zone taking inputs");
                        self.holder = None;
                    }
                    self.source.released(self.now, id, ok);
                }
                Event::Activate(id) => {
                    let granted = self.grant && self.holder.is_none();
                    if granted {
                        self.holder = Some(B);
                        self.epoch += 1;
                        self.b_accepting = true;
                        self.granted.insert(id);
                    }
                    let epoch = granted.then_some(self.epoch);
                    self.target.activated(self.now, Z, id, epoch);
                }
            }
        }

        /// One step: the next event or timer, if it is due by `limit`.
        fn advance(&mut self, limit: Millis) -> bool {
            let next = [
                self.events.keys().next().map(|(at, _)| *at),
                self.source.poll_timeout(),
                self.target.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|at| *at <= limit) else {
                return false;
            };
            self.now = self.now.max(next);
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let event = entry.remove();
                self.on_event(event);
                self.drain();
            }
            self.source.handle_timeout(self.now);
            self.target.handle_timeout(self.now);
            self.drain();
            true
        }

        fn outcome(&self) -> HandoffOutcome {
            self.outcome.expect("the handoff ended").1
        }

        fn count_source(&self, f: impl Fn(&SourceAction) -> bool) -> usize {
            self.source_log.iter().filter(|a| f(a)).count()
        }

        fn count_target(&self, f: impl Fn(&TargetAction) -> bool) -> usize {
            self.target_log.iter().filter(|a| f(a)).count()
        }
    }

    fn drain_source(s: &mut SourceHandoffs) -> Vec<SourceAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn drain_target(t: &mut TargetHandoffs) -> Vec<TargetAction> {
        std::iter::from_fn(|| t.poll_action()).collect()
    }

    fn prepare(id: u64, zone: ZoneId) -> HandoffMsg {
        HandoffMsg::Prepare {
            id,
            zone,
            epoch: EPOCH,
            from: A,
            to: B,
        }
    }

    fn state(id: u64) -> HandoffMsg {
        HandoffMsg::State {
            id,
            to: B,
            zone: Z,
            epoch: EPOCH,
            tick: TICK,
            snapshot: Snapshot(vec![1, 2, 3]),
        }
    }

    #[test]
    fn handoff_happy_path_moves_the_zone() {
        let mut pump = Pump::new();
        let id = pump.run(60_000);
        assert_eq!(pump.outcome(), HandoffOutcome::Moved { epoch: EPOCH + 1 });
        let steps: Vec<&SourceAction> = pump
            .source_log
            .iter()
            .filter(|a| !matches!(a, SourceAction::Finished { .. }))
            .collect();
        assert_eq!(
            steps,
            [
                &SourceAction::Freeze { id, zone: Z },
                &SourceAction::CheckpointAndRelease {
                    id,
                    zone: Z,
                    epoch: EPOCH
                },
                &SourceAction::ShipState {
                    id,
                    zone: Z,
                    epoch: EPOCH,
                    tick: TICK,
                    to: B
                },
                &SourceAction::RedirectClients {
                    id,
                    zone: Z,
                    to: B,
                    epoch: EPOCH + 1
                },
            ]
        );
        assert_eq!(pump.holder, Some(B));
        assert!(pump.b_accepting && !pump.a_accepting);
        assert!(matches!(
            pump.target_log[..],
            [
                TargetAction::Prewarm { .. },
                TargetAction::Restore { tick: TICK, .. },
                TargetAction::Activate { .. }
            ]
        ));
        assert_eq!((pump.source.in_flight(), pump.target.in_flight()), (0, 0));
        assert_eq!(pump.source.poll_timeout(), None, "all forgotten");
        assert_eq!(pump.target.poll_timeout(), None, "all forgotten");
    }

    #[test]
    fn handoff_without_ready_aborts_with_nothing_frozen() {
        let mut pump = Pump::new();
        pump.rules.push((TAG_READY, None, Fate::Lose));
        pump.run(60_000);
        let (at, outcome) = pump.outcome.expect("ended");
        assert_eq!(outcome, HandoffOutcome::Aborted(AbortReason::NoAnswer));
        assert_eq!(at, Millis(PREPARE_TIMEOUT_MS));
        assert_eq!(pump.sent[&TAG_PREPARE] + 1, 8, "sent every 250 ms");
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::Freeze { .. })),
            0
        );
        assert_eq!(
            pump.count_target(|a| matches!(a, TargetAction::Drop { .. })),
            1,
            "the abort drops the prewarmed zone"
        );
        assert!(pump.a_accepting && pump.holder == Some(A));
    }

    #[test]
    fn handoff_release_failure_unfreezes_the_zone() {
        let mut pump = Pump::new();
        pump.release_ok = false;
        pump.run(60_000);
        assert_eq!(
            pump.outcome(),
            HandoffOutcome::Aborted(AbortReason::ReleaseFailed)
        );
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::Unfreeze { .. })),
            1
        );
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::ShipState { .. })),
            0
        );
        assert_eq!(
            pump.count_target(|a| matches!(a, TargetAction::Drop { .. })),
            1
        );
        assert!(pump.a_accepting && pump.holder == Some(A));
    }

    #[test]
    fn handoff_freeze_timeout_unfreezes_the_zone() {
        let mut pump = Pump::new();
        pump.freeze_ms = FREEZE_TIMEOUT_MS + 1_000;
        pump.run(60_000);
        assert_eq!(
            pump.outcome(),
            HandoffOutcome::Aborted(AbortReason::FreezeTimedOut)
        );
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::Unfreeze { .. })),
            1
        );
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::CheckpointAndRelease { .. })),
            0,
            "a late freeze releases nothing"
        );
        assert!(pump.a_accepting && pump.holder == Some(A));
    }

    #[test]
    fn handoff_lost_state_is_shipped_again() {
        let mut pump = Pump::new();
        pump.rules.push((TAG_STATE, Some(0), Fate::Lose));
        pump.run(60_000);
        assert_eq!(pump.outcome(), HandoffOutcome::Moved { epoch: EPOCH + 1 });
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::ShipState { .. })),
            2
        );
    }

    #[test]
    fn handoff_refused_by_the_target_changes_nothing() {
        let mut pump = Pump::new();
        pump.admit = Err(RefuseReason::Full);
        pump.run(60_000);
        assert_eq!(
            pump.outcome(),
            HandoffOutcome::Aborted(AbortReason::Refused(RefuseReason::Full))
        );
        assert_eq!(
            pump.source_log.len(),
            1,
            "only Finished: {:?}",
            pump.source_log
        );
        assert!(pump.target_log.is_empty());
        assert!(pump.a_accepting && pump.holder == Some(A));
    }

    #[test]
    fn handoff_failed_activation_reactivates_the_source() {
        let mut pump = Pump::new();
        pump.grant = false;
        pump.run(60_000);
        assert_eq!(
            pump.outcome(),
            HandoffOutcome::Aborted(AbortReason::Refused(RefuseReason::NotGranted))
        );
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::Reactivate { .. })),
            1
        );
        assert_eq!(
            pump.count_target(|a| matches!(a, TargetAction::Drop { .. })),
            1
        );
        assert_eq!((pump.holder, pump.epoch), (Some(A), EPOCH + 1));
        assert!(pump.a_accepting && !pump.b_accepting);
    }

    #[test]
    fn handoff_lost_activated_is_answered_again() {
        let mut pump = Pump::new();
        pump.rules.push((TAG_ACTIVATED, Some(0), Fate::Lose));
        pump.run(60_000);
        assert_eq!(pump.outcome(), HandoffOutcome::Moved { epoch: EPOCH + 1 });
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::ShipState { .. })),
            2
        );
        assert_eq!(pump.sent[&TAG_ACTIVATED], 1, "sent twice");
        assert_eq!(
            pump.count_target(|a| matches!(a, TargetAction::Activate { .. })),
            1,
            "activated once"
        );
    }

    #[test]
    fn handoff_late_activated_after_reactivate_is_only_logged() {
        let mut pump = Pump::new();
        pump.rules
            .push((TAG_ACTIVATED, None, Fate::Deliver(STATE_TIMEOUT_MS + 1_000)));
        let id = pump.run(60_000);
        assert_eq!(
            pump.outcome(),
            HandoffOutcome::Aborted(AbortReason::NoActivation)
        );
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::Reactivate { .. })),
            1
        );
        assert_eq!(
            pump.count_source(|a| matches!(a, SourceAction::RedirectClients { .. })),
            0
        );
        assert!(pump.source_log.contains(&SourceAction::LateActivated {
            id,
            zone: Z,
            epoch: EPOCH + 1
        }));
        // B won the store's race: A's reactivation failed and its players went away.
        assert_eq!(pump.holder, Some(B));
        assert!(pump.b_accepting && !pump.a_accepting);
    }

    #[test]
    fn handoff_refusal_during_release_is_decided_by_the_release() {
        for ok in [true, false] {
            let mut s = SourceHandoffs::new(A, 1);
            let id = s.start(Millis(0), Z, EPOCH, B).expect("starts");
            s.handle_message(Millis(1), HandoffMsg::Ready { id, to: A });
            s.frozen(id, TICK);
            drain_source(&mut s);
            let reason = RefuseReason::Stopping;
            s.handle_message(Millis(2), HandoffMsg::Refused { id, to: A, reason });
            assert!(drain_source(&mut s).is_empty(), "waits for the release");
            s.released(Millis(3), id, ok);
            let actions = drain_source(&mut s);
            let expected = if ok {
                SourceAction::Reactivate { id, zone: Z }
            } else {
                SourceAction::Unfreeze { id, zone: Z }
            };
            assert_eq!(actions[0], expected);
            assert!(actions.contains(&SourceAction::Finished {
                id,
                zone: Z,
                outcome: HandoffOutcome::Aborted(AbortReason::Refused(reason)),
            }));
        }
    }

    #[test]
    fn handoff_repeats_get_the_first_answer() {
        let mut t = TargetHandoffs::new(B);
        t.handle_message(Millis(0), prepare(1, Z), |_| Ok(()));
        assert_eq!(
            drain_target(&mut t),
            [
                TargetAction::Prewarm { id: 1, zone: Z },
                TargetAction::Send(HandoffMsg::Ready { id: 1, to: A }),
            ]
        );
        t.handle_message(Millis(1), prepare(1, Z), |_| Err(RefuseReason::Full));
        assert_eq!(
            drain_target(&mut t),
            [TargetAction::Send(HandoffMsg::Ready { id: 1, to: A })]
        );
        t.handle_message(Millis(2), state(1), |_| Ok(()));
        assert_eq!(drain_target(&mut t).len(), 2, "restore and activate");
        t.handle_message(Millis(3), state(1), |_| Ok(()));
        assert!(drain_target(&mut t).is_empty(), "activating: no answer yet");
        t.activated(Millis(4), Z, 1, Some(EPOCH + 1));
        let activated = TargetAction::Send(HandoffMsg::Activated {
            id: 1,
            to: A,
            epoch: EPOCH + 1,
        });
        assert_eq!(drain_target(&mut t), std::slice::from_ref(&activated));
        t.handle_message(Millis(5), state(1), |_| Ok(()));
        assert_eq!(drain_target(&mut t), [activated]);

        // A refusal is repeated too, even once the target could take the zone.
        let other = ZoneId(8);
        t.handle_message(Millis(6), prepare(2, other), |_| {
            Err(RefuseReason::Stopping)
        });
        t.handle_message(Millis(7), prepare(2, other), |_| Ok(()));
        let refused = TargetAction::Send(HandoffMsg::Refused {
            id: 2,
            to: A,
            reason: RefuseReason::Stopping,
        });
        assert_eq!(drain_target(&mut t), [refused.clone(), refused]);

        // The source ignores duplicates of answers it acted on.
        let mut s = SourceHandoffs::new(A, 1);
        let id = s.start(Millis(0), Z, EPOCH, B).expect("starts");
        drain_source(&mut s);
        s.handle_message(Millis(1), HandoffMsg::Ready { id, to: A });
        s.handle_message(Millis(2), HandoffMsg::Ready { id, to: A });
        assert_eq!(drain_source(&mut s), [SourceAction::Freeze { id, zone: Z }]);
    }

    #[test]
    fn handoff_messages_for_another_run_are_dropped() {
        let old_a = NodeRef::new(1, 0);
        let mut s = SourceHandoffs::new(A, 1);
        let id = s.start(Millis(0), Z, EPOCH, B).expect("starts");
        drain_source(&mut s);
        s.handle_message(Millis(1), HandoffMsg::Ready { id, to: old_a });
        assert!(drain_source(&mut s).is_empty());

        let mut t = TargetHandoffs::new(B);
        let mut p = prepare(1, Z);
        if let HandoffMsg::Prepare { to, .. } = &mut p {
            *to = NodeRef::new(2, 2);
        }
        t.handle_message(Millis(0), p, |_| Ok(()));
        assert!(drain_target(&mut t).is_empty());
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn handoff_stale_ids_and_callbacks_are_ignored() {
        let mut s = SourceHandoffs::new(A, 1);
        s.handle_message(
            Millis(0),
            HandoffMsg::Activated {
                id: 9,
                to: A,
                epoch: 99,
            },
        );
        s.frozen(9, TICK);
        s.released(Millis(0), 9, true);
        assert!(drain_source(&mut s).is_empty());

        let mut t = TargetHandoffs::new(B);
        t.handle_message(Millis(0), state(9), |_| Ok(()));
        t.activated(Millis(0), Z, 9, Some(99));
        t.handle_message(Millis(0), HandoffMsg::Abort { id: 9, to: B }, |_| Ok(()));
        assert!(drain_target(&mut t).is_empty());

        // A prepared zone whose state never comes is dropped, and a late state refused.
        t.handle_message(Millis(0), prepare(1, Z), |_| Ok(()));
        drain_target(&mut t);
        assert_eq!(t.poll_timeout(), Some(Millis(STATE_WAIT_MS)));
        t.handle_timeout(Millis(STATE_WAIT_MS));
        assert_eq!(
            drain_target(&mut t),
            [TargetAction::Drop { id: 1, zone: Z }]
        );
        t.handle_message(Millis(STATE_WAIT_MS + 1), state(1), |_| Ok(()));
        assert_eq!(
            drain_target(&mut t),
            [TargetAction::Send(HandoffMsg::Refused {
                id: 1,
                to: A,
                reason: RefuseReason::Unknown,
            })]
        );
        t.handle_timeout(Millis(STATE_WAIT_MS + 1 + REMEMBER_MS));
        assert_eq!(t.poll_timeout(), None, "forgotten");
    }

    #[test]
    fn handoff_in_flight_is_bounded() {
        let mut s = SourceHandoffs::new(A, 1);
        for z in 0..HANDOFFS_IN_FLIGHT_MAX {
            let zone = ZoneId(u32::try_from(z).expect("small"));
            s.start(Millis(0), zone, EPOCH, B).expect("room");
        }
        assert_eq!(
            s.start(Millis(0), ZoneId(1_000), EPOCH, B),
            Err(StartError::Full)
        );
        assert_eq!(
            s.start(Millis(0), ZoneId(0), EPOCH, B),
            Err(StartError::ZoneMoving)
        );
        assert_eq!(
            SourceHandoffs::new(A, 1).start(Millis(0), Z, EPOCH, A),
            Err(StartError::ToSelf)
        );
        // Given up, they free their slots.
        s.handle_timeout(Millis(PREPARE_TIMEOUT_MS));
        assert_eq!(s.in_flight(), 0);
        assert!(
            s.start(Millis(PREPARE_TIMEOUT_MS), ZoneId(1_000), EPOCH, B)
                .is_ok()
        );

        let mut t = TargetHandoffs::new(B);
        for z in 0..HANDOFFS_IN_FLIGHT_MAX {
            let zone = ZoneId(u32::try_from(z).expect("small"));
            t.handle_message(Millis(0), prepare(z as u64, zone), |_| Ok(()));
        }
        drain_target(&mut t);
        t.handle_message(Millis(0), prepare(1_000, ZoneId(1_000)), |_| Ok(()));
        t.handle_message(Millis(0), prepare(1_001, ZoneId(0)), |_| Ok(()));
        assert_eq!(
            drain_target(&mut t),
            [
                TargetAction::Send(HandoffMsg::Refused {
                    id: 1_000,
                    to: A,
                    reason: RefuseReason::Full
                }),
                TargetAction::Send(HandoffMsg::Refused {
                    id: 1_001,
                    to: A,
                    reason: RefuseReason::InProgress
                }),
            ]
        );
        assert_eq!(t.in_flight(), HANDOFFS_IN_FLIGHT_MAX);
    }

    #[test]
    fn handoff_remembered_answers_are_bounded() {
        let mut t = TargetHandoffs::new(B);
        for z in 0..(REMEMBERED_MAX as u32 + 50) {
            t.handle_message(
                Millis(u64::from(z)),
                prepare(u64::from(z), ZoneId(z)),
                |_| Err(RefuseReason::Full),
            );
        }
        assert_eq!(t.handoffs.len(), REMEMBERED_MAX);
        assert!(
            !t.handoffs.contains_key(&ZoneId(0)),
            "the oldest went first"
        );
    }

    /// Many seeds of loss, duplication, reordering and slow runtimes: the pump checks
    /// after every step that no two nodes accept inputs, that clients are redirected
    /// only to a granted activation and that nothing is unfrozen the store gave away.
    #[test]
    fn handoff_random_faults_keep_the_invariants() {
        let mut ends: BTreeMap<String, usize> = BTreeMap::new();
        for seed in 0..2_000 {
            let mut pump = Pump::random(seed);
            pump.run(120_000);
            let (at, outcome) = pump
                .outcome
                .unwrap_or_else(|| panic!("seed {seed}: never ended"));
            // Prepare, a slow freeze, a slow release, and the state's wait.
            let bound = PREPARE_TIMEOUT_MS + FREEZE_TIMEOUT_MS + 2_000 + STATE_TIMEOUT_MS;
            assert!(at.0 <= bound, "seed {seed}: ended at {at}");
            let holder = pump.holder.unwrap_or_else(|| panic!("seed {seed}: unheld"));
            let serving = if holder == A {
                pump.a_accepting
            } else {
                pump.b_accepting
            };
            assert!(serving, "seed {seed}: the holder {holder} is not serving");
            if let HandoffOutcome::Moved { epoch } = outcome {
                assert_eq!((holder, pump.epoch), (B, epoch), "seed {seed}");
            }
            assert_eq!(pump.source.in_flight() + pump.target.in_flight(), 0);
            assert!(pump.source.handoffs.is_empty() && pump.target.handoffs.is_empty());
            let late = pump.count_source(|a| matches!(a, SourceAction::LateActivated { .. }));
            let key = if late > 0 {
                "late activated".to_owned()
            } else {
                format!("{outcome:?}")
            };
            *ends.entry(key).or_default() += 1;
        }
        for kind in [
            "Aborted(NoAnswer)",
            "Aborted(Refused(Full))",
            "Aborted(FreezeTimedOut)",
            "Aborted(ReleaseFailed)",
            "Aborted(Refused(NotGranted))",
            "Aborted(NoActivation)",
            "late activated",
        ] {
            assert!(ends.contains_key(kind), "no {kind} in {ends:?}");
        }
        let moved = ends
            .iter()
            .filter(|(k, _)| k.starts_with("Moved"))
            .map(|(_, n)| *n)
            .sum::<usize>();
        assert!(moved > 500, "{ends:?}");
    }

    fn messages() -> Vec<HandoffMsg> {
        vec![
            HandoffMsg::Prepare {
                id: u64::MAX,
                zone: ZoneId(u32::MAX),
                epoch: 1 << 40,
                from: A,
                to: NodeRef::new(u64::MAX, 3),
            },
            HandoffMsg::Ready { id: 0, to: A },
            HandoffMsg::Refused {
                id: 3,
                to: A,
                reason: RefuseReason::AlreadyHolds,
            },
            HandoffMsg::Refused {
                id: 3,
                to: A,
                reason: RefuseReason::NotGranted,
            },
            HandoffMsg::State {
                id: 4,
                to: B,
                zone: Z,
                epoch: 9,
                tick: 123_456_789,
                snapshot: Snapshot((0..=255).collect()),
            },
            HandoffMsg::State {
                id: 4,
                to: B,
                zone: Z,
                epoch: 9,
                tick: 0,
                snapshot: Snapshot::default(),
            },
            HandoffMsg::Activated {
                id: 5,
                to: A,
                epoch: 10,
            },
            HandoffMsg::Abort { id: 6, to: B },
            HandoffMsg::Forward {
                id: 7,
                to: B,
                zone: ZoneId(3),
                items: vec![
                    ForwardedItem::Input {
                        session: 11,
                        inputs: vec![InputFrame {
                            seq: 40,
                            velocity: Vec2::new(1.5, -2.0),
                            buttons: 3,
                        }],
                    },
                    ForwardedItem::Event {
                        session: 11,
                        kind: 9,
                        payload: vec![1, 2, 3],
                    },
                ],
            },
        ]
    }

    #[test]
    fn handoff_messages_round_trip() {
        for msg in messages() {
            assert_eq!(HandoffMsg::decode(&msg.encode()).expect("decodes"), msg);
        }
    }

    #[test]
    fn handoff_cut_and_extended_messages_are_errors() {
        for msg in messages() {
            let bytes = msg.encode();
            for cut in 0..bytes.len() {
                assert!(
                    HandoffMsg::decode(&bytes[..cut]).is_err(),
                    "{msg:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                HandoffMsg::decode(&longer),
                Err(DecodeError::TrailingBytes(1))
            );
        }
    }

    #[test]
    fn handoff_unknown_tags_and_oversize_snapshots_are_refused() {
        for tag in [0, TAG_FORWARD + 1, 0xff] {
            assert!(matches!(
                HandoffMsg::decode(&[tag, 1, 1, 1]),
                Err(DecodeError::UnknownTag { .. })
            ));
        }
        let mut bytes = HandoffMsg::Refused {
            id: 1,
            to: A,
            reason: RefuseReason::Full,
        }
        .encode();
        *bytes.last_mut().expect("reason") = 99;
        assert!(matches!(
            HandoffMsg::decode(&bytes),
            Err(DecodeError::UnknownTag { .. })
        ));
        let mut w = Writer::with_capacity(32);
        w.u8(TAG_STATE);
        w.varint(1);
        B.encode(&mut w);
        w.u32(Z.0);
        w.varint(EPOCH);
        w.varint(TICK);
        w.varint(SNAPSHOT_BYTES_MAX as u64 + 1);
        assert!(matches!(
            HandoffMsg::decode(w.as_slice()),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn handoff_arbitrary_bytes_never_panic() {
        let mut rng = SimRng::new(7);
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let _ = HandoffMsg::decode(&bytes);
            for tag in TAG_PREPARE..=TAG_ABORT {
                let mut tagged = vec![tag];
                tagged.extend_from_slice(&bytes);
                let _ = HandoffMsg::decode(&tagged);
            }
        }
    }
}
