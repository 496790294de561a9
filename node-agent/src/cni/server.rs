//! The socket: one call per connection, a JSON line each way ([`switchyard_cni::wire`]).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use switchyard_cni::wire::{Reply, Request};
use switchyard_cni::{Call, CniError, error};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use super::{Cni, attach};

/// The largest request read: a configuration with a long `prevResult` or a GC list of every
/// attachment on a node fits many times over.
const MAX_REQUEST: u64 = 16 << 20;

/// Binds the socket in a root-only directory: the directory 0700, the socket 0600. A socket
/// file left by a killed agent is replaced.
pub(super) fn bind(socket: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(socket) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub(super) async fn serve(cni: Arc<Cni>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(cni.clone(), stream));
            }
            Err(error) => {
                warn!(%error, "accepting a CNI connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(cni: Arc<Cni>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await;
    let reply = match read {
        Err(error) => {
            debug!(%error, "reading a CNI request");
            return;
        }
        Ok(_) => handle(&cni, &line).await,
    };
    let mut text = serde_json::to_vec(&reply).unwrap_or_default();
    text.push(b'\n');
    if let Err(error) = write.write_all(&text).await {
        // The shim is gone (its runtime timed out): the records say what was done.
        debug!(%error, "writing a CNI reply");
    }
}

async fn handle(cni: &Cni, line: &str) -> Reply {
    let request: Request = match serde_json::from_str(line) {
        Ok(request) => request,
        Err(why) => {
            return Reply::Failure {
                error: CniError::new(
                    error::DECODE_FAILURE,
                    "decoding failure",
                    format!("the agent could not read the shim's request: {why}"),
                ),
            };
        }
    };
    let call = match Call::parse(&request.env, &request.stdin) {
        Ok(call) => call,
        Err(error) => return Reply::Failure { error },
    };
    Reply::from_outcome(attach::dispatch(cni, &call).await)
}
