//! NATS test support: `nats-server -js` processes on free loopback ports, each with its own
//! storage directory, killed when dropped (also when the test panics); a three-node cluster.
//!
//! `nats-server` must be on the PATH (`.ci/run` installs Debian's package when it is missing).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback TCP port (bound and released: another process may take it, rarely).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `nats-server -js` process.
pub struct NatsServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// A single server with JetStream on a free port.
    pub fn start() -> NatsServer {
        Self::start_with(free_port(), Vec::new())
    }

    /// A single server with JetStream on `port` (one a client was already pointed at).
    pub fn start_on(port: u16) -> NatsServer {
        Self::start_with(port, Vec::new())
    }

    fn start_with(port: u16, extra: Vec<String>) -> NatsServer {
        let dir = tempfile::tempdir().expect("a storage directory");
        let mut args = vec![
            "-js".to_string(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            dir.path().display().to_string(),
            // its log, for a failing test to show ([`NatsServer::log_tail`])
            "-l".into(),
            dir.path().join("nats-server.log").display().to_string(),
        ];
        args.extend(extra);
        let mut server = NatsServer {
            port,
            dir,
            args,
            child: None,
        };
        server.resume();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL); its storage stays for [`NatsServer::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and storage, and waits until it listens.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (apt-get install nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The last `lines` lines of the server's log (also after [`NatsServer::stop`]).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("nats-server.log"))
            .unwrap_or_else(|e| format!("(no log: {e})"));
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three JetStream servers clustered on loopback (routes on free ports).
pub struct Cluster {
    pub nodes: Vec<NatsServer>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, r)| format!("nats-route://127.0.0.1:{r}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (client, route))| {
                NatsServer::start_with(
                    *client,
                    vec![
                        "-n".into(),
                        format!("n{i}"),
                        "--cluster_name".into(),
                        "eb".into(),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{route}"),
                        "--routes".into(),
                        routes.clone(),
                    ],
                )
            })
            .collect();
        Cluster { nodes }
    }

    /// The tail of every node's log, each under its name.
    pub fn log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| format!("== nats-server on port {}:\n{}", n.port, n.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every node's URL, comma separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
