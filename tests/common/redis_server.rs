//! A throwaway `redis-server` on a loopback port: the shared store of the
//! `[cluster]` tests. Every write is in its append-only file before it is
//! answered, so a server killed and started again on the same port (an
//! outage) comes back with what it held.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require_program, wait_for_port};

pub struct RedisServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `requirepass`, when the store wants a password.
    pub password: Option<String>,
    /// `appendfsync`: `always` for tests (nothing lost to a kill); `no`
    /// for benchmarks: no append-only file at all, as Redis runs by
    /// default.
    fsync: &'static str,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(password: Option<&str>) -> RedisServer {
        Self::start_with(password, "always")
    }

    /// As Redis runs by default: no append-only file.
    pub fn start_for_bench() -> RedisServer {
        Self::start_with(None, "no")
    }

    fn start_with(password: Option<&str>, fsync: &'static str) -> RedisServer {
        let mut server = RedisServer {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            password: password.map(str::to_owned),
            fsync,
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let binary = require_program("redis-server", "redis-server");
        let mut cmd = Command::new(binary);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""]);
        match self.fsync {
            // As Debian's redis.conf has it: no append-only file.
            "no" => cmd.args(["--appendonly", "no"]),
            fsync => cmd.args(["--appendonly", "yes", "--appendfsync", fsync]),
        };
        cmd.arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let mut child = cmd.spawn().expect("starting redis-server");
        wait_for_port(
            ([127, 0, 0, 1], self.port).into(),
            "redis-server",
            &mut child,
        );
        self.child = Some(child);
    }

    /// The server's process id (for benchmarks' CPU accounting).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it (SIGKILL: no goodbye to its clients) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, from its append-only file.
    pub fn restart(&mut self) {
        self.kill();
        std::thread::sleep(Duration::from_millis(100));
        self.launch();
    }

    /// A connection of the test's own, to look at what ldapgate stored.
    pub fn connection(&self) -> redis::Connection {
        let url = match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        };
        redis::Client::open(url)
            .unwrap()
            .get_connection()
            .expect("connecting to the test's redis-server")
    }

    /// The `[cluster]` section for this store, with `key_file` when given
    /// and, when the store wants one, a password file.
    pub fn cluster_section(&self, key_file: Option<&Path>) -> String {
        let mut text = format!("[cluster]\nstore = \"{}\"\n", self.url());
        if let Some(key) = key_file {
            text.push_str(&format!("key_file = \"{}\"\n", key.display()));
        }
        if let Some(p) = &self.password {
            let file = self.dir.path().join("store_password");
            std::fs::write(&file, format!("{p}\n")).unwrap();
            text.push_str(&format!("password_file = \"{}\"\n", file.display()));
        }
        text
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
