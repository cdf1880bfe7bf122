//! The first leg of a redirected connect on its own: a QUIC handshake with a node
//! that does not hold the player's zone, `Hello`, and that node's answer, timed at
//! the handshake and at the answer. It speaks the protocol directly (the SDK would
//! follow the redirect at once) with the SDK's TLS and transport settings, and closes
//! without following.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use zonemesh_client::{Client, ClientConfig};
use zonemesh_shared::PROTOCOL_VERSION;
use zonemesh_shared::control::{ClientControl, FrameDecoder, ServerControl};

/// Longest the leg may take.
const LEG_LIMIT: Duration = Duration::from_secs(10);
/// Longest the endpoint may take to close.
const CLOSE_LIMIT: Duration = Duration::from_millis(500);
/// Bytes read from the control stream at a time.
const READ_CHUNK: usize = 4096;

/// How a node answered `Hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Redirect,
    Loading,
    Busy,
    Welcome,
    Other,
}

/// One timed leg.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leg {
    /// From the start (a new endpoint, as `Client::connect` makes) to the completed
    /// QUIC handshake.
    pub(crate) handshake: Duration,
    /// From the start to the node's answer to `Hello`.
    pub(crate) answered: Duration,
    pub(crate) answer: Answer,
}

/// Connects `player` to `addr`, says `Hello` and times the answer.
pub(crate) async fn first_leg(
    addr: SocketAddr,
    shared: &Path,
    player: &str,
) -> anyhow::Result<Leg> {
    // Reading the identity files and minting the token are not the connect's cost.
    let config = ClientConfig::from_dev_data(addr, shared, player)?;
    let quic = config.quic_client_config()?;
    let hello = ClientControl::Hello {
        version: PROTOCOL_VERSION,
        token: config.token.clone(),
    }
    .to_frame();
    let start = Instant::now();
    let endpoint = Client::bind_endpoint(addr)?;
    let leg = tokio::time::timeout(LEG_LIMIT, async {
        let conn = endpoint
            .connect_with(quic, addr, &config.server_name)?
            .await
            .context("handshake")?;
        let handshake = start.elapsed();
        let (mut send, mut recv) = conn.open_bi().await.context("control stream")?;
        send.write_all(&hello).await.context("sending Hello")?;
        let answer = read_answer(&mut recv).await?;
        let answered = start.elapsed();
        conn.close(quinn::VarInt::from_u32(0), b"measured");
        anyhow::Ok(Leg {
            handshake,
            answered,
            answer,
        })
    })
    .await
    .context("the first leg timed out")?;
    let _ = tokio::time::timeout(CLOSE_LIMIT, endpoint.wait_idle()).await;
    leg
}

/// Reads the first control frame and names it.
async fn read_answer(recv: &mut quinn::RecvStream) -> anyhow::Result<Answer> {
    let mut decoder = FrameDecoder::default();
    let mut buf = [0u8; READ_CHUNK];
    loop {
        if let Some(body) = decoder.next_frame()? {
            return Ok(match ServerControl::decode(&body)? {
                ServerControl::Redirect { .. } => Answer::Redirect,
                ServerControl::Loading { .. } => Answer::Loading,
                ServerControl::Busy { .. } => Answer::Busy,
                ServerControl::Welcome { .. } => Answer::Welcome,
                _ => Answer::Other,
            });
        }
        match recv.read(&mut buf).await.context("reading the answer")? {
            Some(n) => decoder.push(&buf[..n]),
            None => bail!("the stream ended before an answer"),
        }
    }
}
