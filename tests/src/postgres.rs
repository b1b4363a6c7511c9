//! A real PostgreSQL server for a test: initdb into its own temp directory, listening on a free
//! loopback port, killed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::process::{free_port, kill, running_as_root, user_ids, wait_until};

/// A running PostgreSQL.
pub struct Postgres {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    ids: Option<(u32, u32)>,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("postgres").exists());
    versions.sort();
    match versions.pop() {
        Some(bin) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): run ./scripts/test, or `apt-get install -y postgresql`"
        ),
    }
}

impl Postgres {
    /// Creates a cluster and starts the server; the database `overmind` is ready for user
    /// `overmind` without a password.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("overmind-pg-")
            .tempdir()
            .expect("temp dir");
        // The server refuses to run as root: run it as the `postgres` system user then.
        let ids = if running_as_root() {
            let ids = user_ids("postgres")
                .expect("a `postgres` system user (created by the postgresql package)");
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))
                .expect("chown the data directory");
            Some(ids)
        } else {
            None
        };
        let mut pg = Self {
            child: None,
            port: 0,
            dir,
            bin,
            ids,
        };
        let data = pg.dir.path().join("data");
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "overmind", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for attempt in 0..5 {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => break,
                Err(e) if attempt < 4 => eprintln!(
                    "PostgreSQL did not start on port {} ({e}); retrying",
                    pg.port
                ),
                Err(e) => panic!("PostgreSQL did not start: {e}"),
            }
        }
        let out = pg
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "overmind",
                "overmind",
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.ids {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("postgres.log"))
            .map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(self.dir.path().join("postgres.log"), Some(uid), Some(gid))
                .map_err(|e| e.to_string())?;
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=200"])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run postgres: {e}"))?;
        self.child = Some(child);
        let isready = self.bin.join("pg_isready");
        let port = self.port.to_string();
        let mut exited = false;
        let ready = wait_until("PostgreSQL", Duration::from_secs(30), || {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                exited = true;
                return true;
            }
            Command::new(&isready)
                .args(["-h", "127.0.0.1", "-p", &port, "-q"])
                .status()
                .is_ok_and(|s| s.success())
        });
        if exited {
            self.child = None;
            return Err("the server exited".into());
        }
        ready
    }

    /// A connection URL for the `overmind` database.
    pub fn url(&self) -> String {
        format!("postgres://overmind@127.0.0.1:{}/overmind", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGQUIT: immediate shutdown that also stops the server's own children; SIGKILL
            // would orphan them.
            crate::process::signal(child.id(), "QUIT");
            let stopped = wait_until("PostgreSQL to stop", Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if stopped.is_err() {
                kill(&mut child);
            }
        }
    }
}
