//! Doing one thing inside the node's network namespace: sysctls under `/proc/sys/net` (which
//! a process sees for the namespace of the thread that opens them), the netlink socket, and
//! the commands (`nft`, `tc`, `dnsmasq`) run through `nsenter --net`, which execs the program
//! in place, so a child's pid is the program's.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

use crate::netlink::NetnsTarget;

/// Runs `work` on a fresh thread that has entered `target`, and returns what it returns.
pub(crate) fn run_in<T, F>(target: &NetnsTarget, work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let target = target.clone();
    std::thread::Builder::new()
        .name("swy-vnet-ns".into())
        .spawn(move || {
            if let NetnsTarget::Path(path) = &target {
                let file = File::open(path)?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            }
            work()
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// Writes sysctls (paths under `/proc/sys`, values) inside `target`; a missing file is
/// skipped when `skip_missing` (libvirt skips `disable_ipv6` when IPv6 is compiled out).
pub(crate) async fn write_sysctls(
    target: &NetnsTarget,
    values: Vec<(PathBuf, &'static str)>,
    skip_missing: bool,
) -> io::Result<()> {
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        run_in(&target, move || {
            for (path, value) in &values {
                match std::fs::write(path, value) {
                    Err(error) if skip_missing && error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(io::Error::new(
                            error.kind(),
                            format!("writing {value} to {}: {error}", path.display()),
                        ));
                    }
                    Ok(()) => {}
                }
            }
            Ok(())
        })
    })
    .await
    .map_err(io::Error::other)?
}

/// A command for `program` that runs inside `target`.
pub(crate) fn command(target: &NetnsTarget, program: &str) -> Command {
    match target {
        NetnsTarget::Current => Command::new(program),
        NetnsTarget::Path(path) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net={}", path.display()))
                .arg("--")
                .arg(program);
            command
        }
    }
}
