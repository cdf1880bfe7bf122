//! The ZoneMesh zone server as a library: the game API ([`game`]), zones ticking ECS
//! worlds ([`zone`], [`node`]), the QUIC network shell ([`net`]), the development
//! identity ([`dev`]), the demo world ([`demo`]), clustering ([`cluster`]) and a
//! cluster node from its configuration file ([`config`], [`serve`]). The `zonemesh`
//! binary is a thin command line over [`net::Server`].
//!
//! See ARCHITECTURE.md at the repository root for the big picture.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod dev;
pub mod game;
pub mod identity;
pub mod link;
pub mod net;
pub mod node;
pub mod persist;
pub mod serve;
pub mod zone;

pub use net::{NetLimits, Server, ServerConfig, ServerStatus, StatusSource};
pub use node::{Node, NodeConfig};
