//! [`Route`]: the sans-IO record of where a connect went: redirects followed (with the
//! hop limit) and node changes, so a client can say how it got to its server.
//!
//! Definitions, which [`crate::Client::redirects_followed`] and
//! [`crate::Client::node_changes`] document for users:
//! - a *redirect followed* is a `Redirect` answer the client acted on by connecting to
//!   the address it named; the one that breaks the hop limit is not followed;
//! - a *node change* is a completed QUIC handshake with a server address other than
//!   that of the previous completed handshake. The first server reached is not a
//!   change, nor is a retry or a redirect that lands on the same address; an address
//!   that never answered is not a node the session was on.

use crate::error::ClientError;
use std::net::SocketAddr;

/// How a session got to its server: the figures a [`Route`] ends with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RouteStats {
    /// `Redirect` answers followed.
    pub(crate) redirects_followed: u32,
    /// Handshakes completed with a different address than the one before.
    pub(crate) node_changes: u32,
    /// Connections whose `Hello` the server took with 0-RTT (a resumed TLS session:
    /// the answer came one round trip after the first packet).
    pub(crate) zero_rtt_answers: u32,
}

impl RouteStats {
    /// Adds the figures of a later connect or move.
    pub(crate) fn add(&mut self, later: RouteStats) {
        self.redirects_followed = self
            .redirects_followed
            .saturating_add(later.redirects_followed);
        self.node_changes = self.node_changes.saturating_add(later.node_changes);
        self.zero_rtt_answers = self.zero_rtt_answers.saturating_add(later.zero_rtt_answers);
    }
}

/// The route of one connect (all its attempts), fed by the connect loop.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    max_redirects: u32,
    stats: RouteStats,
    /// The address of the last completed handshake.
    last_reached: Option<SocketAddr>,
}

impl Route {
    /// A route that allows at most `max_redirects` redirects.
    pub(crate) fn new(max_redirects: u32) -> Self {
        Self {
            max_redirects,
            stats: RouteStats::default(),
            last_reached: None,
        }
    }

    /// A QUIC handshake with `addr` completed.
    pub(crate) fn handle_reached(&mut self, addr: SocketAddr) {
        let previous = self.last_reached.replace(addr);
        if previous.is_some_and(|p| p != addr) {
            self.stats.node_changes = self.stats.node_changes.saturating_add(1);
        }
    }

    /// A server answered a `Hello` the client sent with 0-RTT, and the server took it
    /// as such.
    pub(crate) fn handle_zero_rtt_answer(&mut self) {
        self.stats.zero_rtt_answers = self.stats.zero_rtt_answers.saturating_add(1);
    }

    /// A server answered `Redirect`: `Ok` to follow it, `TooManyRedirects` when that
    /// would pass the hop limit (a redirect loop ends here).
    pub(crate) fn handle_redirect(&mut self) -> Result<(), ClientError> {
        if self.stats.redirects_followed >= self.max_redirects {
            let limit = self.max_redirects;
            return Err(ClientError::TooManyRedirects { limit });
        }
        self.stats.redirects_followed += 1;
        Ok(())
    }

    /// The figures so far.
    pub(crate) fn stats(&self) -> RouteStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn only_reaching_a_different_address_is_a_node_change() {
        let mut route = Route::new(5);
        route.handle_reached(addr(1));
        assert_eq!(
            route.stats().node_changes,
            0,
            "the first server is no change"
        );
        route.handle_reached(addr(1));
        assert_eq!(route.stats().node_changes, 0, "a retry on the same server");
        route.handle_reached(addr(2));
        route.handle_reached(addr(1));
        assert_eq!(route.stats().node_changes, 2, "there and back again");
        assert_eq!(route.stats().redirects_followed, 0);
    }

    #[test]
    fn the_hop_limit_refuses_the_redirect_past_it() {
        let mut route = Route::new(2);
        assert!(route.handle_redirect().is_ok());
        assert!(route.handle_redirect().is_ok());
        assert!(matches!(
            route.handle_redirect(),
            Err(ClientError::TooManyRedirects { limit: 2 })
        ));
        assert_eq!(
            route.stats().redirects_followed,
            2,
            "the refused one is not followed"
        );
    }

    #[test]
    fn a_zero_limit_follows_no_redirect() {
        let mut route = Route::new(0);
        assert!(matches!(
            route.handle_redirect(),
            Err(ClientError::TooManyRedirects { limit: 0 })
        ));
        assert_eq!(route.stats(), RouteStats::default());
    }
}
