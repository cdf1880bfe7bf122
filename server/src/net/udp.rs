//! The UDP sockets under the QUIC endpoints (players' and the nodes' own), with kernel
//! buffers sized for bursts.
//!
//! A zone that moves to this node brings every one of its players' handshakes at the
//! same instant. With the kernel's default receive buffer (208 KiB on Linux) a couple
//! of hundred 1,200-byte Initial packets overflow it; the kernel drops the rest and
//! those clients wait for QUIC's retransmission, about a second. Measured with 200
//! players in a moving zone: p99 pause 1.4 s, with the drops counted as
//! `RcvbufErrors` in `/proc/net/snmp`. Asking for [`SOCKET_BUFFER_BYTES`] is best
//! effort: the kernel caps it at `net.core.rmem_max` / `wmem_max`, and a smaller
//! grant is logged with the setting to raise.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Receive and send buffer asked of the kernel for each endpoint socket.
pub(crate) const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// A QUIC endpoint on `listen` (accepting with `server`) over a socket from [`bind`].
/// Must run inside a tokio runtime.
pub(crate) fn endpoint(
    listen: SocketAddr,
    server: quinn::ServerConfig,
) -> io::Result<quinn::Endpoint> {
    let socket = bind(listen)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| io::Error::other("a QUIC endpoint needs a tokio runtime"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
}

/// A UDP socket bound to `addr` with buffers of [`SOCKET_BUFFER_BYTES`] where the
/// kernel allows them.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&socket);
    // Failing to enlarge a buffer leaves the default one: worth a line, not a refusal.
    let recv = sock
        .set_recv_buffer_size(SOCKET_BUFFER_BYTES)
        .and_then(|()| sock.recv_buffer_size());
    let send = sock
        .set_send_buffer_size(SOCKET_BUFFER_BYTES)
        .and_then(|()| sock.send_buffer_size());
    log_short_buffer(addr, "receive", "net.core.rmem_max", recv);
    log_short_buffer(addr, "send", "net.core.wmem_max", send);
    Ok(socket)
}

/// Logs a buffer the kernel granted smaller than asked (Linux reports twice what it
/// grants, its bookkeeping included, so a full grant reads at least the size asked).
fn log_short_buffer(addr: SocketAddr, which: &str, setting: &str, granted: io::Result<usize>) {
    match granted {
        Ok(bytes) if bytes >= SOCKET_BUFFER_BYTES => {}
        Ok(bytes) => tracing::info!(
            %addr,
            bytes,
            wanted = SOCKET_BUFFER_BYTES,
            "UDP {which} buffer smaller than wanted; raise {setting} so bursts of handshakes are not dropped"
        ),
        Err(e) => tracing::warn!(%addr, "cannot size the UDP {which} buffer: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's cap on a receive buffer, where it can be read (Linux).
    fn rmem_max() -> Option<usize> {
        let text = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok()?;
        text.trim().parse().ok()
    }

    #[test]
    fn a_bound_socket_gets_the_largest_receive_buffer_the_kernel_allows() {
        let socket = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let granted = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("size");
        let plain = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let default = socket2::SockRef::from(&plain)
            .recv_buffer_size()
            .expect("size");
        let wanted = rmem_max().map_or(default, |cap| cap.min(SOCKET_BUFFER_BYTES));
        assert!(
            granted >= wanted.max(default),
            "granted {granted} bytes, wanted {wanted}, default {default}"
        );
        assert_ne!(socket.local_addr().expect("addr").port(), 0);
    }
}
