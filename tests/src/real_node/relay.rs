//! The only ways between the host's loopback and the node's network namespace, run by the
//! test process itself:
//!
//! - the `kubernetes` Service address inside the node (on its loopback), relayed to the
//!   apiserver on the host's 127.0.0.1: kubelet and pods reach the API as in a cluster;
//! - an HTTP CONNECT proxy on a unix socket, the apiserver's `cluster` egress: it dials
//!   kubelets and webhook endpoints from inside the node's namespace.
//!
//! Sockets of the node's namespace are made by a short-lived thread that entered it; a socket
//! stays in the namespace it was made in, so the relay's runtime itself runs on the host.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `f` on a new thread that has entered the network namespace at `netns`.
pub fn in_netns<T, F>(netns: &Path, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let file = File::open(netns)?;
    std::thread::spawn(move || {
        enter_netns(&file)?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("the thread in the node's namespace panicked"))?
}

#[allow(unsafe_code)]
fn enter_netns(file: &File) -> io::Result<()> {
    // SAFETY: setns(2) on a valid descriptor, for this thread only (network namespaces are
    // per thread); the thread ends when its work is done.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The target of an HTTP CONNECT request head (`CONNECT 10.244.0.5:8443 HTTP/1.1`): an IP
/// address and port, as the apiserver sends; host names are refused (nothing resolves them).
pub fn connect_target(head: &str) -> Result<SocketAddr, String> {
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("CONNECT"), Some(target), Some(version)) if version.starts_with("HTTP/1.") => target
            .parse()
            .map_err(|_| format!("CONNECT target {target:?} is not an IP address and port")),
        _ => Err(format!("not an HTTP CONNECT request: {line:?}")),
    }
}

/// The running relays; dropping them closes every listener and connection.
#[derive(Debug)]
pub struct Relays {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    egress_socket: PathBuf,
}

impl Relays {
    /// Listens on `api_in_node` inside `netns` (relayed to `apiserver` on the host) and on the
    /// unix socket `egress_socket` (connections dialled inside `netns`).
    pub fn start(
        netns: &Path,
        api_in_node: SocketAddr,
        apiserver: SocketAddr,
        egress_socket: &Path,
    ) -> io::Result<Self> {
        let api_listener = in_netns(netns, move || {
            let listener = TcpListener::bind(api_in_node)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })?;
        let _ = std::fs::remove_file(egress_socket);
        let egress_listener = std::os::unix::net::UnixListener::bind(egress_socket)?;
        egress_listener.set_nonblocking(true)?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let netns = netns.to_path_buf();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("real-node-relays".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let api = tokio::net::TcpListener::from_std(api_listener)
                        .expect("registering the API relay");
                    let egress = tokio::net::UnixListener::from_std(egress_listener)
                        .expect("registering the egress proxy");
                    tokio::select! {
                        _ = stopped => {}
                        _ = relay_api(api, apiserver) => {}
                        _ = proxy_egress(egress, netns) => {}
                    }
                });
            })?;
        Ok(Self {
            shutdown: Some(shutdown),
            thread: Some(thread),
            egress_socket: egress_socket.to_path_buf(),
        })
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.egress_socket);
    }
}

async fn relay_api(listener: tokio::net::TcpListener, apiserver: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(apiserver).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

async fn proxy_egress(listener: tokio::net::UnixListener, netns: PathBuf) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let netns = netns.clone();
        tokio::spawn(async move {
            let _ = serve_connect(stream, netns).await;
        });
    }
}

/// Reads one CONNECT request, dials its target inside the node, answers 200 and copies both
/// ways; answers 400 or 502 when the request is bad or the dial fails.
async fn serve_connect(mut client: tokio::net::UnixStream, netns: PathBuf) -> io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: the client speaks TLS right after the empty line, nothing may be lost.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let target = match connect_target(&String::from_utf8_lossy(&head)) {
        Ok(target) => target,
        Err(_) => {
            client
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    let dialled = tokio::task::spawn_blocking(move || {
        in_netns(&netns, move || {
            let stream = TcpStream::connect_timeout(&target, Duration::from_secs(10))?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        })
    })
    .await
    .map_err(io::Error::other)?;
    let stream = match dialled {
        Ok(stream) => stream,
        Err(_) => {
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    let mut upstream = tokio::net::TcpStream::from_std(stream)?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_target_takes_ip_and_port_and_refuses_the_rest() {
        assert_eq!(
            connect_target("CONNECT 10.244.0.5:8443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            Ok("10.244.0.5:8443".parse().unwrap())
        );
        assert!(
            connect_target("CONNECT node1:10250 HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .contains("not an IP address")
        );
        assert!(
            connect_target("GET / HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .contains("not an HTTP CONNECT")
        );
        assert!(connect_target("").is_err());
    }
}
