//! `bank-load`: an open-loop load generator and fault harness of the bank HTTP API.
//!
//! Layout: `options` parses and checks what the command line asks; `server` starts and owns a
//! `bank-server serve --demo` when the harness brings its own; `setup` makes the load's users,
//! accounts and deposits through the API; `run` is the open-loop engine (constant arrival rates,
//! latency from the intended send time, settlement followed, the transfers' journal); `wire` is
//! the run's own HTTP/1.1 connections (the scheduled requests go there, setup through
//! `bank-client`); `stats` holds the HDR histograms; `watch` samples the server process (memory,
//! open files) for soaks; `report` prints the tables. `maxrate` searches the highest rate each
//! route sustains under a p99 bound. The binary (`main.rs`) only wires these together.

pub mod maxrate;
pub mod options;
pub mod report;
pub mod run;
pub mod server;
pub mod setup;
pub mod stats;
pub mod watch;
pub mod wire;
