//! The bank reference server as a library: auth, HTTP routes, assembly.

pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod http;
pub mod notify;
pub mod run;
pub mod state;
