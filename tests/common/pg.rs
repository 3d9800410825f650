//! PostgreSQL test support: a throwaway database per test and a loopback TCP proxy the test
//! can cut, restore, stall (it keeps reading, so both connections stay alive, and forwards
//! nothing until resumed: a hung proxy or server), or arm to swallow the reply to the next
//! COMMIT.
//!
//! The server is the local one (`127.0.0.1:5432`, trust auth, user `root`); `EB_PG_ADMIN_URL`
//! overrides the admin URL used to create and drop databases.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

pub const PG_HOST: &str = "127.0.0.1";
pub const PG_PORT: u16 = 5432;

fn admin_url() -> String {
    std::env::var("EB_PG_ADMIN_URL")
        .unwrap_or_else(|_| format!("postgres://root@{PG_HOST}:{PG_PORT}/postgres"))
}

fn admin() -> PgConnection {
    let url = admin_url();
    PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL must be running for these tests ({url}): {e}\n\
             start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    })
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A database created for one test and dropped (`WITH (FORCE)`) when this guard drops, also
/// when the test panics.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn create(tag: &str) -> TestDb {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "eb_test_{tag}_{}_{nanos}_{}",
            std::process::id(),
            N.fetch_add(1, SeqCst)
        );
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        TestDb { name }
    }

    /// Direct URL of the database.
    pub fn url(&self) -> String {
        self.url_via(PG_PORT)
    }

    /// URL of the database through a proxy listening on `port`.
    pub fn url_via(&self, port: u16) -> String {
        format!(
            "postgres://root@{PG_HOST}:{port}/{}?connect_timeout=2",
            self.name
        )
    }

    /// URL of the database at another address (a network path of the test's own).
    pub fn url_at(&self, host: impl std::fmt::Display, port: u16) -> String {
        format!("postgres://root@{host}:{port}/{}", self.name)
    }

    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url()).expect("connect to the test database")
    }

    /// `SELECT <expr>` as an i64 (wrap aggregates with `::bigint`).
    pub fn scalar(&self, sql: &str) -> i64 {
        diesel::sql_query(format!("SELECT ({sql})::bigint AS n"))
            .get_result::<N>(&mut self.conn())
            .expect(sql)
            .n
    }

    /// Rows of `events WHERE ...` (or any table expression).
    pub fn count(&self, from: &str) -> i64 {
        self.scalar(&format!("SELECT count(*) FROM {from}"))
    }

    /// Terminates every other backend connected to this database; returns how many.
    pub fn kill_connections(&self) -> i64 {
        self.scalar(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&admin_url()) {
            if let Err(e) = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )) {
                eprintln!("could not drop test database {}: {e}", self.name);
            }
        }
    }
}

/// A loopback TCP proxy to the PostgreSQL server.
pub struct Proxy {
    pub port: u16,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// Cut: new connections are closed at once, existing ones were shut down.
    cut: AtomicBool,
    /// Stalled: what arrives is read (the kernel acknowledges it) and held, not forwarded.
    stalled: AtomicBool,
    /// Armed: the next COMMIT is forwarded, its reply swallowed, and the connection closed.
    trap_commit: AtomicBool,
    /// How many COMMIT replies were swallowed.
    commits_trapped: AtomicU64,
    /// Both ends of every live connection, to shut them down on `cut`.
    live: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let listener = TcpListener::bind((PG_HOST, 0)).expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if st.cut.load(SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect((PG_HOST, PG_PORT)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut live = st.live.lock().unwrap();
                    live.push(client.try_clone().unwrap());
                    live.push(server.try_clone().unwrap());
                }
                let swallow = Arc::new(AtomicBool::new(false));
                pump(
                    st.clone(),
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Some(swallow.clone()),
                );
                pump_back(st.clone(), server, client, swallow);
            }
        });
        Proxy { port, state }
    }

    /// Drops every connection and closes new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, SeqCst);
        for s in self.state.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.state.cut.store(false, SeqCst);
    }

    /// From now on nothing is forwarded either way, and every connection stays open: the
    /// peer of each end keeps acknowledging, as a hung proxy or server does.
    pub fn stall(&self) {
        self.state.stalled.store(true, SeqCst);
    }

    /// Forwards what was held, and everything after it.
    pub fn resume(&self) {
        self.state.stalled.store(false, SeqCst);
    }

    /// The next COMMIT reaches the server but its reply never reaches the client, whose
    /// connection is then closed: a commit with an unknown outcome.
    pub fn trap_next_commit(&self) {
        self.state.trap_commit.store(true, SeqCst);
    }

    pub fn commits_trapped(&self) -> u64 {
        self.state.commits_trapped.load(SeqCst)
    }
}

/// Client -> server, watching for the armed COMMIT.
fn pump(
    st: Arc<ProxyState>,
    mut from: TcpStream,
    mut to: TcpStream,
    swallow: Option<Arc<AtomicBool>>,
) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            hold_while_stalled(&st);
            let trapped = st.trap_commit.load(SeqCst)
                && chunk.windows(7).any(|w| w == b"COMMIT\0")
                && st.trap_commit.swap(false, SeqCst);
            if trapped {
                if let Some(s) = &swallow {
                    s.store(true, SeqCst);
                }
            }
            if to.write_all(chunk).is_err() {
                break;
            }
            if trapped {
                st.commits_trapped.fetch_add(1, SeqCst);
                // Let the server run the COMMIT, then close both ends without a reply.
                std::thread::sleep(Duration::from_millis(300));
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// Holds the chunk just read while the proxy is stalled.
fn hold_while_stalled(st: &ProxyState) {
    while st.stalled.load(SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Server -> client, dropping everything once `swallow` is set.
fn pump_back(
    st: Arc<ProxyState>,
    mut from: TcpStream,
    mut to: TcpStream,
    swallow: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            hold_while_stalled(&st);
            if swallow.load(SeqCst) {
                continue;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
