//! What a soak watches on the server process beside the latencies: its resident memory and its
//! open files, read from `/proc/<pid>` (Linux; `None` elsewhere or once the process is gone).

use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// Resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// Open file descriptors (sockets, database files, pipes).
    pub open_files: u64,
}

/// Reads `pid`'s resident memory and open files now.
pub fn sample(pid: u32) -> Option<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())?;
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(ProcessSample { rss_bytes: rss_kib * 1024, open_files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_open_files() {
        let me = sample(std::process::id()).expect("a Linux /proc");
        assert!(me.rss_bytes > 1024 * 1024, "{me:?}");
        let before = me.open_files;
        let files: Vec<std::fs::File> =
            (0..8).map(|_| std::fs::File::open("/proc/self/status").expect("open")).collect();
        let after = sample(std::process::id()).expect("sample").open_files;
        assert!(after >= before + 8, "{before} → {after}");
        drop(files);
    }

    #[test]
    fn a_process_that_is_gone_has_no_sample() {
        assert_eq!(sample(u32::MAX), None);
    }
}
