//! Helpers for tests that run real server processes: free ports, waiting with deadlines,
//! killing by process id.

use std::{
    collections::BTreeSet,
    hash::{BuildHasher, RandomState},
    net::TcpListener,
    process::Child,
    sync::Mutex,
    time::{Duration, Instant},
};

/// A port on loopback that was free a moment ago, for a server a test starts.
///
/// It comes from below the kernel's ephemeral port range. A port from inside that range
/// (what binding port 0 gives) can become the source port of any outgoing connection between
/// the probe and the server's bind, or while a server that restarts on the same port is down
/// (a fault-suite run once failed that way). Below the range only another test's pick can
/// collide, and picks are random, never repeated within a process, and checked by binding.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let low = ephemeral_low();
    let floor = low / 2;
    if floor < 4096 {
        // An unusual range that leaves nothing safe below it: fall back to the kernel's pick.
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port on loopback");
    }
    let random = RandomState::new();
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for attempt in 0u32.. {
        let span = u64::from(low - floor);
        let port = floor + (random.hash_one(attempt) % span) as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(
                attempt < 10_000,
                "no free port on loopback in {floor}..{low}"
            );
            continue;
        }
        given.insert(port);
        return port;
    }
    unreachable!("the loop returns or panics")
}

/// The first port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let low = ephemeral_low();
        let ports: BTreeSet<u16> = (0..200).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 200, "a port was handed out twice");
        for port in ports {
            assert!(
                low / 2 < 4096 || port < low,
                "{port} is in the ephemeral range"
            );
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "{port} is taken"
            );
        }
    }
}
