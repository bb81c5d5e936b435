//! Tests of the `bank-server` process: the compiled binary's subcommands (`binary`), the
//! background loops over a real local backend (`loops`) and the demo seed (`demo`).

mod binary;
mod demo;
mod loops;
mod postgres;
mod scaleout;

use std::collections::HashMap;
use std::path::Path;

use bank_server::config::Config;

/// A configuration over `data_dir` with otherwise default (or `extra`) variables.
pub(crate) fn config_in(data_dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    vars.insert("BANK_DATA_DIR".into(), data_dir.display().to_string());
    Config::from_lookup(|name| vars.get(name).cloned()).expect("valid configuration")
}
