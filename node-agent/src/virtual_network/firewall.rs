//! The node's nftables table, loaded as one `nft -f -` transaction inside the node's
//! namespace, and libvirt's DHCP checksum fix, which is best-effort: it needs the kernel's
//! `act_csum`, and a kernel without it only loses the fix for old DHCP clients.

use std::process::Stdio;

use switchyard_libvirt::firewall::{Command, Program};
use tracing::{debug, info};

use super::VirtualNetworkError;
use super::netns::command;
use crate::netlink::NetnsTarget;

/// Loads `script` with `nft -f -`: all of it, or (on any error) nothing.
pub async fn load(target: &NetnsTarget, script: &str) -> Result<(), VirtualNetworkError> {
    use std::io::Write;
    let mut child = command(target, "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| VirtualNetworkError::Io {
            what: "running nft".into(),
            message: error.to_string(),
        })?;
    let script = script.to_string();
    let output = tokio::task::spawn_blocking(move || {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let written = stdin.write_all(script.as_bytes());
        drop(stdin);
        let output = child.wait_with_output();
        (written, output, script.lines().count())
    })
    .await
    .map_err(|error| VirtualNetworkError::Io {
        what: "waiting for nft".into(),
        message: error.to_string(),
    })?;
    let (written, output, lines) = output;
    let output = output.map_err(|error| VirtualNetworkError::Io {
        what: "waiting for nft".into(),
        message: error.to_string(),
    })?;
    if !output.status.success() || written.is_err() {
        return Err(VirtualNetworkError::Firewall(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    debug!(lines, "nftables table loaded");
    Ok(())
}

/// Whether the checksum fix is in place on `bridge` after trying libvirt's tc commands: the
/// htb root qdisc, then the csum filter. When the filter fails the qdisc added for it is
/// taken away again, so a kernel without `act_csum` keeps the bridge as it was.
pub async fn checksum_fix(target: &NetnsTarget, commands: &[Command]) -> Result<(), String> {
    let tc: Vec<&Command> = commands
        .iter()
        .filter(|c| c.program == Program::Tc && !c.is_query())
        .collect();
    let Some(bridge) = tc
        .first()
        .and_then(|c| c.args.iter().skip_while(|a| *a != "dev").nth(1))
        .cloned()
    else {
        return Ok(());
    };
    let mut added_qdisc = false;
    for command in &tc {
        let output = tokio::process::Command::from(super::netns::command(target, "tc"))
            .args(&command.args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|error| format!("running tc: {error}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        let is_qdisc = command.args.first().is_some_and(|a| a == "qdisc");
        if output.status.success() {
            added_qdisc |= is_qdisc;
            continue;
        }
        // A qdisc left from an earlier run (an agent restart) is what was wanted.
        if is_qdisc && stderr.contains("File exists") {
            continue;
        }
        if added_qdisc {
            let _ = tokio::process::Command::from(super::netns::command(target, "tc"))
                .args(["qdisc", "del", "dev", &bridge, "root", "handle", "1:"])
                .output()
                .await;
        }
        return Err(format!("`tc {}`: {stderr}", command.args.join(" ")));
    }
    info!(%bridge, "DHCP checksum fix applied");
    Ok(())
}
