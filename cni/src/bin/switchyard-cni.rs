//! switchyard-cni: the CNI plugin a container runtime (or Multus) runs. It holds no logic of
//! its own: it forwards the call to the node agent over the agent's unix socket and prints the
//! answer, as Multus's thick shim does.
//!
//! - VERSION is answered here, without the agent.
//! - ADD and CHECK wait for the agent to serve its socket (`agentWaitSeconds`, 30 by default),
//!   then fail with code 11 (try again later).
//! - DEL succeeds when the agent cannot be reached: the kernel removes a pod's links with its
//!   network namespace, and the agent's own sweep releases the rest when it is back.
//! - STATUS says 50 (not available) when the agent cannot be reached.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use switchyard_cni::wire::{Reply, Request, cni_env};
use switchyard_cni::{Call, CniError, Command, DEFAULT_SOCKET, error, version};

/// How long ADD and CHECK wait for the agent by default (an agent restarting recovers first).
const DEFAULT_AGENT_WAIT: Duration = Duration::from_secs(30);
/// How long one call may take once sent: ADD talks to the Kubernetes API.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let env = cni_env(std::env::vars());
    let mut stdin = String::new();
    let is_version = env.get("CNI_COMMAND").map(String::as_str) == Some("VERSION");
    if !is_version && let Err(error) = std::io::stdin().read_to_string(&mut stdin) {
        let error = CniError::new(
            error::IO_FAILURE,
            "I/O failure",
            format!("reading the network configuration from stdin: {error}"),
        );
        return fail(&error, version::CURRENT);
    }
    let call = match Call::parse(&env, &stdin) {
        Ok(call) => call,
        Err(error) => return fail(&error, &answer_version(&stdin)),
    };
    if call.command == Command::Version {
        return print(&version::version_result());
    }
    let cni_version = call.config.cni_version.clone();
    let socket = call
        .config
        .socket
        .clone()
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
    let request = Request { env, stdin };
    match forward(&call, &socket, &request) {
        Ok(Reply::Success {
            output: Some(output),
        }) => print(&output),
        Ok(Reply::Success { output: None }) => ExitCode::SUCCESS,
        Ok(Reply::Failure { error }) => fail(&error, &cni_version),
        Err(why) => match call.command {
            Command::Del => {
                eprintln!(
                    "switchyard-cni: DEL of {} {}: the node agent could not be reached ({why}); \
                     succeeding, as the agent releases the attachment itself when it is back",
                    call.container_id.as_deref().unwrap_or("?"),
                    call.ifname.as_deref().unwrap_or("?"),
                );
                ExitCode::SUCCESS
            }
            Command::Status => fail(
                &CniError::new(
                    error::PLUGIN_NOT_AVAILABLE,
                    "plugin not available",
                    format!("the switchyard node agent is not serving {socket}: {why}"),
                ),
                &cni_version,
            ),
            _ => fail(
                &CniError::try_again(format!(
                    "the switchyard node agent is not serving {socket} ({why}); check that the \
                     switchyard-node-agent pod runs on this node and is ready"
                )),
                &cni_version,
            ),
        },
    }
}

/// Sends the call and reads the reply; `Err` when the agent could not be reached or hung up.
fn forward(call: &Call, socket: &str, request: &Request) -> Result<Reply, String> {
    let wait = match call.command {
        Command::Add | Command::Check => call
            .config
            .agent_wait_seconds
            .map_or(DEFAULT_AGENT_WAIT, Duration::from_secs),
        _ => Duration::ZERO,
    };
    let mut stream = connect(socket, wait)?;
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(CALL_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| format!("sending the call: {e}"))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .map_err(|e| format!("reading the answer: {e}"))?;
    if answer.is_empty() {
        return Err("the agent closed the connection without answering".into());
    }
    serde_json::from_str(&answer).map_err(|e| format!("the agent's answer is not valid: {e}"))
}

/// Connects to the socket, retrying for `wait` while nothing listens there yet.
fn connect(socket: &str, wait: Duration) -> Result<UnixStream, String> {
    let start = Instant::now();
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(format!(
                    "{error}: only root can call the agent; the runtime must run plugins as root"
                ));
            }
            Err(error) if start.elapsed() >= wait => {
                return Err(if wait.is_zero() {
                    error.to_string()
                } else {
                    format!("{error}, for {}s", wait.as_secs())
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The version to answer an unparsable call in: its `cniVersion` if it has a usable one.
fn answer_version(stdin: &str) -> String {
    serde_json::from_str::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| version::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| version::CURRENT.to_string())
}

fn print(value: &serde_json::Value) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{value}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Prints the error result on stdout (where runtimes read it) and a line on stderr (their log).
fn fail(error: &CniError, cni_version: &str) -> ExitCode {
    eprintln!("switchyard-cni: {error}");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", error.to_json(cni_version));
    let _ = out.flush();
    ExitCode::FAILURE
}
