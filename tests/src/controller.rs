//! The switchyard controller as a process, for tests that need it beside their agents.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The controller as a process on a given control plane, webhook off. Killed on drop.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Child,
    metrics: SocketAddr,
    /// Its stdout and stderr; removed on drop.
    log: PathBuf,
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A GET on a loopback address; the status code, or `None` when nothing answers.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

impl ControllerProcess {
    /// Starts the controller on `kubeconfig`'s apiserver and waits until it is ready.
    pub fn start(kubeconfig: &Path) -> Self {
        let metrics = free_addr();
        let log = std::env::temp_dir().join(format!(
            "switchyard-test-controller-{}-{}.log",
            std::process::id(),
            metrics.port()
        ));
        let file = std::fs::File::create(&log).expect("creating the controller's log");
        let mut cmd = Command::new(crate::bins::workspace_binary("switchyard-controller"));
        cmd.env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .env("SWITCHYARD_METRICS_ADDR", metrics.to_string())
            .env("SWITCHYARD_WEBHOOK_ADDR", free_addr().to_string())
            .env_remove("SWITCHYARD_TLS_CERT_FILE")
            .env_remove("SWITCHYARD_TLS_KEY_FILE")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("the log"))
            .stderr(file);
        let child = crate::procs::spawn_tied(cmd).expect("starting switchyard-controller");
        let mut controller = Self {
            child,
            metrics,
            log,
        };
        let start = Instant::now();
        while !controller.ready() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the controller was not ready within 60s:\n{}",
                controller.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        controller
    }

    /// Running, and `/readyz` says 200.
    pub fn ready(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the controller exited ({status}):\n{}", self.logs());
        }
        http_status(self.metrics, "/readyz") == Some(200)
    }

    /// The last 60 lines of its log.
    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- controller log ---\n{}", self.logs());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
