//! A real ZooKeeper server for a test: its own temp directory, a free port on loopback,
//! killed when dropped.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::process::{free_port, kill, wait_until};

const JARS: [&str; 2] = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-simple.jar",
];

/// Panics with what to do if Debian's ZooKeeper is not installed.
pub(crate) fn require_installed() {
    if let Some(missing) = JARS.iter().find(|j| !Path::new(j).exists()) {
        panic!(
            "ZooKeeper is not installed ({missing} is missing): run ./scripts/test, or `apt-get install -y zookeeper`"
        );
    }
}

/// Starts a ZooKeeper JVM running `main_class` (a standalone server or a quorum peer) on
/// `config`, its output appended to `log`.
pub(crate) fn spawn_server(main_class: &str, config: &Path, log: &Path) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    Command::new("java")
        .args(["-Xmx96m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .arg("-Dzookeeper.jmx.log4j.disable=true")
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-cp")
        .arg(JARS.join(":"))
        .arg(main_class)
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run java: {e}"))
}

/// Sends a four-letter command to the server on `port` and returns its answer.
pub(crate) fn four_letter(port: u16, command: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = String::new();
    s.write_all(command.as_bytes()).ok()?;
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// A running ZooKeeper.
pub struct ZooKeeper {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl ZooKeeper {
    /// Starts a server and waits until it answers `ruok`.
    pub fn start() -> Self {
        require_installed();
        let mut dir = tempfile::Builder::new()
            .prefix("overmind-zk-")
            .tempdir()
            .expect("temp dir");
        for attempt in 0..5 {
            let port = free_port();
            let mut zk = Self {
                child: None,
                port,
                dir,
            };
            match zk.launch() {
                Ok(()) => return zk,
                Err(e) if attempt < 4 => {
                    eprintln!("ZooKeeper did not start on port {port} ({e}); trying another port");
                    dir = zk.take_dir();
                }
                Err(e) => panic!("ZooKeeper did not start: {e}; see {}", zk.log().display()),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("zookeeper.log")
    }

    fn launch(&mut self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let cfg = self.dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr,mntr\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n",
                data.display(),
                self.port
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = spawn_server(
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            &cfg,
            &self.log(),
        )?;
        self.child = Some(child);
        let port = self.port;
        let mut exited = None;
        let ready = wait_until("ZooKeeper", Duration::from_secs(30), || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                exited = Some(status);
                return true;
            }
            ruok(port)
        });
        match (ready, exited) {
            (_, Some(status)) => Err(format!("the server exited: {status}")),
            (Err(e), None) => Err(e),
            (Ok(()), None) => Ok(()),
        }
    }

    /// The connection string.
    pub fn connect(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Kills the server, deletes everything in its data directory (snapshots, transaction
    /// logs: every znode and session), and starts it again on the same port: ZooKeeper's data
    /// lost or replaced.
    pub fn wipe(&mut self) {
        self.kill();
        let data = self.dir.path().join("data");
        if let Err(e) = std::fs::remove_dir_all(&data) {
            panic!("cannot delete ZooKeeper's data in {}: {e}", data.display());
        }
        if let Err(e) = self.launch() {
            panic!(
                "ZooKeeper did not start after its data was wiped: {e}; see {}",
                self.log().display()
            );
        }
    }

    /// Starts the server again on the same port with the same data (sessions survive if it
    /// comes back within their timeout).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.launch() {
            panic!(
                "ZooKeeper did not restart: {e}; see {}",
                self.log().display()
            );
        }
    }
}

fn ruok(port: u16) -> bool {
    four_letter(port, "ruok").is_some_and(|answer| answer == "imok")
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.kill();
    }
}
