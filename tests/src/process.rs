//! Helpers for tests that run real server processes: free ports, waiting with deadlines,
//! killing by process id.

use std::{
    net::TcpListener,
    process::Child,
    time::{Duration, Instant},
};

/// A port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on loopback")
}

/// Polls `ready` until it returns true or `deadline` passes.
pub fn wait_until(
    what: &str,
    deadline: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    while Instant::now() < end {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    Err(format!("{what} not ready within {deadline:?}"))
}

/// Sends `signal` to `pid` (via the `kill` command; no unsafe code).
pub fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// Kills a child process and reaps it.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether this process runs as root (servers such as PostgreSQL refuse to).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The uid and gid of a system user, from /etc/passwd.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _ = f.next();
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// The command line's `--name value` pairs, for the test binaries.
pub fn flags() -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if let (Some(name), Some(value)) = (flag.strip_prefix("--"), it.next()) {
            out.insert(name.to_owned(), value);
        }
    }
    out
}
