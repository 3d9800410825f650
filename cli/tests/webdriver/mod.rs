//! Headless Chromium driven through chromedriver's WebDriver HTTP API (W3C), for the report
//! tests: open a page, run a script in it, move the pointer, and read the browser's console
//! log (`goog:loggingPrefs`: every `console.error`, uncaught exception and blocked resource
//! is a `SEVERE` entry).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium
//! chromium-driver`; `.ci/run` installs them). Without them the tests fail saying so, unless
//! `EB_SKIP_BROWSER_TESTS=1` is set. `CHROMEDRIVER` and `CHROMIUM` override the programs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

/// The environment variable that skips the browser tests when the browser is missing.
pub const SKIP_VAR: &str = "EB_SKIP_BROWSER_TESTS";

/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The program `var` names (if it exists), or the first of `names` on the `PATH`.
fn program(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A running chromedriver with one headless Chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, ...
    pub level: String,
    /// The message, with its source location.
    pub message: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. `Ok(None)`: the browser is not
    /// installed and `EB_SKIP_BROWSER_TESTS` says to skip; not installed otherwise is an error
    /// saying how to install it.
    pub fn start() -> Result<Option<Browser>> {
        let driver = program("CHROMEDRIVER", &["chromedriver"]);
        let chromium = program(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            if std::env::var_os(SKIP_VAR).is_some_and(|v| v != "0" && !v.is_empty()) {
                eprintln!("skipping the browser check: chromium or chromedriver not found and {SKIP_VAR} is set");
                return Ok(None);
            }
            bail!(
                "the report tests need headless Chromium and chromedriver: install them with \
                 `apt-get install -y chromium chromium-driver` (Debian; .ci/run does this), point \
                 CHROMIUM and CHROMEDRIVER at them, or set {SKIP_VAR}=1 to skip these checks"
            );
        };
        Browser::launch(&driver, &chromium).map(Some)
    }

    fn launch(driver_path: &Path, chromium: &Path) -> Result<Browser> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", driver_path.display()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into();
        let profile = tempfile::tempdir()?;
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
            _profile: profile,
        };
        browser.wait_ready()?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--window-size=1200,1600",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let answer = browser.request("POST", "/session", Some(caps))?;
        browser.session = answer["sessionId"]
            .as_str()
            .context("no sessionId in the new-session answer")?
            .to_string();
        Ok(browser)
    }

    /// Waits (at most a minute) until chromedriver answers `/status` with `ready`.
    fn wait_ready(&mut self) -> Result<()> {
        let began = Instant::now();
        loop {
            if let Some(status) = self.driver.try_wait()? {
                bail!("chromedriver exited at start: {status}");
            }
            let ready = self
                .agent
                .get(format!("{}/status", self.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                return Ok(());
            }
            if began.elapsed() > Duration::from_secs(60) {
                bail!("chromedriver did not become ready within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A WebDriver command; its `value`, or the WebDriver error as an `Err`.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call()?,
            ("DELETE", _) => self.agent.delete(&url).call()?,
            (_, Some(body)) => self.agent.post(&url).send_json(body)?,
            (_, None) => self.agent.post(&url).send_json(json!({}))?,
        };
        let status = response.status();
        let v: Value = response
            .body_mut()
            .read_json()
            .with_context(|| format!("{method} {path}: not JSON ({status})"))?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {}", v["value"]);
        }
        Ok(v.get("value").cloned().unwrap_or(v))
    }

    fn session_path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.session)
    }

    /// Opens `file` and waits for its load event.
    pub fn open(&self, file: &Path) -> Result<()> {
        let url = format!("file://{}", file.canonicalize()?.display());
        self.request(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        )?;
        Ok(())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
    pub fn execute(&self, script: &str, args: Value) -> Result<Value> {
        self.request(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The first element matching `css`, as a WebDriver element reference.
    pub fn element(&self, css: &str) -> Result<Value> {
        let v = self.request(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v.get(ELEMENT_KEY).context("no element reference")?;
        Ok(v)
    }

    /// Scrolls `element` into view and moves the mouse to `(dx, dy)` from its centre.
    pub fn hover(&self, element: &Value, dx: i64, dy: i64) -> Result<()> {
        self.execute(
            "arguments[0].scrollIntoView({block: 'center'});",
            json!([element]),
        )?;
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "origin": element, "x": dx, "y": dy}],
        }]});
        self.request("POST", &self.session_path("/actions"), Some(actions))?;
        Ok(())
    }

    /// The console log since the last call (chromedriver clears it as it answers).
    pub fn console(&self) -> Result<Vec<LogEntry>> {
        let v = self.request(
            "POST",
            &self.session_path("/se/log"),
            Some(json!({"type": "browser"})),
        )?;
        Ok(v.as_array()
            .context("the log is not a list")?
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or("").to_string(),
                message: e["message"].as_str().unwrap_or("").to_string(),
            })
            .collect())
    }

    /// The console entries at `SEVERE` level (errors) since the last call.
    pub fn console_errors(&self) -> Result<Vec<LogEntry>> {
        Ok(self
            .console()?
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .collect())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &self.session_path(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
