//! The ZoneMesh zone server as a library: the game API ([`game`]), zones ticking ECS
//! worlds ([`zone`], [`node`]), the QUIC network shell ([`net`]), the development
//! identity ([`dev`]) and the demo world ([`demo`]). The `zonemesh` binary is a thin
//! command line over [`net::Server`].
//!
//! See ARCHITECTURE.md at the repository root for the big picture.

pub mod admin;
pub mod cluster;
pub mod demo;
pub mod dev;
pub mod game;
pub mod identity;
pub mod link;
pub mod net;
pub mod node;
pub mod persist;
pub mod zone;

pub use net::{NetLimits, Server, ServerConfig, ServerStatus, StatusSource};
pub use node::{Node, NodeConfig};
