//! The bank reference server as a library: auth, HTTP routes, assembly.

pub mod auth;
pub mod state;
