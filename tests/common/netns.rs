//! A network path to the local PostgreSQL server that a test can partition like a real
//! network: packets are dropped, nobody acknowledges anything, no connection is reset.
//!
//! The path is a network namespace of the test's own (`ip netns add`) joined to this one by a
//! veth pair, with a TCP forwarder listening inside it (its socket made by a thread that
//! entered the namespace with `setns`) and connecting out to `127.0.0.1:5432` from here. The
//! client connects to the forwarder's address on the veth; [`NetPath::cut`] takes the
//! namespace's end of the veth down, so the client's packets are dropped at the veth and the
//! forwarder's cannot leave; [`NetPath::restore`] brings it up again. Nothing of this touches
//! the machine's own interfaces, routes or firewall, and the namespace and its veth pair go
//! away with the guard.
//!
//! Needs root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`) and iproute2's `ip`; [`NetPath::to_postgres`]
//! says loudly why it cannot and returns `None` elsewhere.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Mutex;

/// One path at a time per process: the addresses come from the process id.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct NetPath {
    ns: String,
    ns_if: String,
    /// The forwarder's address and port (inside the namespace).
    pub addr: Ipv4Addr,
    pub port: u16,
    _one: std::sync::MutexGuard<'static, ()>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetPath {
    /// A path to `127.0.0.1:pg_port`, or `None` (with a message on stderr saying why) where
    /// network namespaces cannot be made.
    pub fn to_postgres(pg_port: u16) -> Option<NetPath> {
        match NetPath::make(pg_port) {
            Ok(path) => Some(path),
            Err(e) => {
                eprintln!(
                    "\n!!!!!!!! SKIPPED: this test needs a network namespace of its own (root and \
                     iproute2's `ip`; .ci/run runs as root and has them): {e} !!!!!!!!\n"
                );
                None
            }
        }
    }

    fn make(pg_port: u16) -> Result<NetPath, String> {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        // 10.0.0.0/8 has room for a /30 per process id (22 bits); the machine's own networks
        // are elsewhere, and this /30 is routed only into the veth.
        let pid = std::process::id() & 0x3f_ffff;
        let base = pid << 2;
        let octets = |last: u32| {
            Ipv4Addr::new(
                10,
                (base >> 16) as u8,
                (base >> 8) as u8,
                (base + last) as u8,
            )
        };
        let (host_addr, ns_addr) = (octets(1), octets(2));
        let ns = format!("eb-test-{pid}");
        let (host_if, ns_if) = (format!("ebh{pid}"), format!("ebn{pid}"));
        let _ = ip(&["netns", "del", &ns]); // a leftover of a killed run with this pid
        ip(&["netns", "add", &ns])?;
        let mut path = NetPath {
            ns: ns.clone(),
            ns_if: ns_if.clone(),
            addr: ns_addr,
            port: 0,
            _one: one,
        };
        let ns_mac = "02:eb:00:00:00:02";
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns,
            "address", ns_mac,
        ])?;
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        // A fixed neighbour entry: while the path is cut, packets are sent and lost, as on a
        // real network, instead of failing at once on an address that stopped resolving.
        ip(&[
            "neigh",
            "replace",
            &ns_addr.to_string(),
            "lladdr",
            ns_mac,
            "dev",
            &host_if,
            "nud",
            "permanent",
        ])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ns_addr}/30"),
            "dev",
            &ns_if,
        ])?;
        ip(&["-n", &ns, "link", "set", &ns_if, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        path.port = forward(&ns, ns_addr, pg_port)?;
        Ok(path)
    }

    /// Partitions the path: every packet either way is dropped from now on.
    pub fn cut(&self) {
        ip(&["-n", &self.ns, "link", "set", &self.ns_if, "down"]).expect("cut the path");
    }

    /// Heals the partition.
    pub fn restore(&self) {
        ip(&["-n", &self.ns, "link", "set", &self.ns_if, "up"]).expect("restore the path");
    }
}

impl Drop for NetPath {
    /// Deletes the namespace; its end of the veth goes with it, and so the pair.
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("could not delete network namespace {}: {e}", self.ns);
        }
    }
}

/// Starts the forwarder: listens on `addr` inside namespace `ns` (a thread that entered it),
/// connects each client on to `127.0.0.1:pg_port` from this namespace. Returns its port.
fn forward(ns: &str, addr: Ipv4Addr, pg_port: u16) -> Result<u16, String> {
    let netns = std::fs::File::open(format!("/run/netns/{ns}"))
        .map_err(|e| format!("cannot open the namespace: {e}"))?;
    let (clients_tx, clients_rx) = mpsc::channel::<TcpStream>();
    let (port_tx, port_rx) = mpsc::channel::<Result<u16, String>>();
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a valid namespace descriptor.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            let _ = port_tx.send(Err(format!("setns: {}", std::io::Error::last_os_error())));
            return;
        }
        let listener = match TcpListener::bind((addr, 0)) {
            Ok(l) => l,
            Err(e) => {
                let _ = port_tx.send(Err(format!("bind in the namespace: {e}")));
                return;
            }
        };
        let _ = port_tx.send(Ok(listener.local_addr().unwrap().port()));
        for client in listener.incoming().flatten() {
            if clients_tx.send(client).is_err() {
                break;
            }
        }
    });
    // Outgoing connections from a thread started here, in this namespace.
    std::thread::spawn(move || {
        for client in clients_rx {
            let Ok(server) = TcpStream::connect(("127.0.0.1", pg_port)) else {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            pump(client.try_clone().unwrap(), server.try_clone().unwrap());
            pump(server, client);
        }
    });
    port_rx
        .recv()
        .map_err(|_| "the forwarder did not start".to_string())?
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
