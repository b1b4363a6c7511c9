//! A real ZooKeeper ensemble for a test: several servers on loopback, each with its own
//! directory and free ports, a quorum among them; servers can be killed and restarted one by
//! one, and all are killed when it is dropped.

use std::{path::PathBuf, process::Child, time::Duration};

use crate::{
    process::{free_port, kill, wait_until},
    zookeeper::{four_letter, require_installed, spawn_server},
};

/// One server of the ensemble.
struct Server {
    /// Its `myid`, from 1.
    id: usize,
    client_port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

/// A running ensemble.
pub struct Ensemble {
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

/// What a server says of itself (ZooKeeper's `srvr` command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Leader,
    Follower,
    /// Running, but not in a quorum: it serves no client.
    NotServing,
    /// Not answering (killed, or not started yet).
    Down,
}

impl Ensemble {
    /// Starts `size` servers and waits until they form a quorum with every server in it.
    pub fn start(size: usize) -> Self {
        require_installed();
        let dir = tempfile::Builder::new()
            .prefix("overmind-zk-ensemble-")
            .tempdir()
            .expect("temp dir");
        // Quorum and election ports, then client ports, all free now.
        let peers: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let members: String = peers
            .iter()
            .enumerate()
            .map(|(i, (quorum, election))| {
                format!("server.{}=127.0.0.1:{quorum}:{election}\n", i + 1)
            })
            .collect();
        let servers = (1..=size)
            .map(|id| {
                let server_dir = dir.path().join(format!("server-{id}"));
                let data = server_dir.join("data");
                std::fs::create_dir_all(&data).expect("create the server's data directory");
                std::fs::write(data.join("myid"), format!("{id}\n")).expect("write myid");
                let client_port = free_port();
                std::fs::write(
                    server_dir.join("zoo.cfg"),
                    format!(
                        "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client_port}\n\
                         clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                         4lw.commands.whitelist=ruok,srvr,mntr\nminSessionTimeout=1000\n\
                         maxSessionTimeout=60000\n{members}",
                        data.display()
                    ),
                )
                .expect("write zoo.cfg");
                Server {
                    id,
                    client_port,
                    child: None,
                    dir: server_dir,
                }
            })
            .collect();
        let mut ensemble = Self { servers, _dir: dir };
        for i in 0..size {
            ensemble.launch(i);
        }
        ensemble.wait_for_quorum(size, Duration::from_secs(60));
        ensemble
    }

    /// The connection string naming every server.
    pub fn connect(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many servers there are.
    pub fn size(&self) -> usize {
        self.servers.len()
    }

    /// What server `i` (from 0) says of itself.
    pub fn mode(&self, i: usize) -> Mode {
        srvr_mode(self.servers[i].client_port)
    }

    /// The index of the leader, if a quorum has one.
    pub fn leader(&self) -> Option<usize> {
        (0..self.servers.len()).find(|&i| self.mode(i) == Mode::Leader)
    }

    /// Kills server `i` (SIGKILL), keeping its data.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            kill(&mut child);
        }
    }

    /// Starts server `i` again, on its ports, with its data.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.launch(i);
    }

    /// Waits until `serving` servers are leader or follower; panics with their modes after
    /// `deadline`.
    pub fn wait_for_quorum(&self, serving: usize, deadline: Duration) {
        let ready = wait_until("a ZooKeeper quorum", deadline, || {
            (0..self.servers.len())
                .filter(|&i| matches!(self.mode(i), Mode::Leader | Mode::Follower))
                .count()
                >= serving
        });
        if let Err(e) = ready {
            let modes: Vec<Mode> = (0..self.servers.len()).map(|i| self.mode(i)).collect();
            panic!(
                "{e}: server modes {modes:?}; logs in {}",
                self.servers[0].dir.display()
            );
        }
    }

    fn launch(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let child = spawn_server(
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            &server.dir.join("zoo.cfg"),
            &server.dir.join("zookeeper.log"),
        )
        .unwrap_or_else(|e| panic!("ZooKeeper server {}: {e}", server.id));
        server.child = Some(child);
    }
}

fn srvr_mode(port: u16) -> Mode {
    match four_letter(port, "srvr") {
        None => Mode::Down,
        Some(answer) if answer.contains("Mode: leader") => Mode::Leader,
        Some(answer) if answer.contains("Mode: follower") => Mode::Follower,
        Some(_) => Mode::NotServing,
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}
