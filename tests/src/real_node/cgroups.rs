//! The node's cgroup root `/<id>`, in every hierarchy of the host: the kubelet's
//! `--cgroup-root` (its pods go under `/<id>/kubepods`) and, in the `pids` hierarchy,
//! `/<id>/node` for containerd, its shims and the kubelet. Every process of the node is under
//! `/<id>`, so it can be found and killed there even when the test process was killed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_FS: &str = "/sys/fs/cgroup";

/// The host's cgroup hierarchies: the mount points under /sys/fs/cgroup of type `cgroup` or
/// `cgroup2`, as `/proc/self/mounts` lists them.
pub fn hierarchies() -> io::Result<Vec<PathBuf>> {
    Ok(hierarchies_in(&fs::read_to_string("/proc/self/mounts")?))
}

/// [`hierarchies`] of a mount table's text.
pub fn hierarchies_in(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (matches!(kind, "cgroup" | "cgroup2") && dir.starts_with(CGROUP_FS))
                .then(|| PathBuf::from(dir))
        })
        .collect()
}

/// Creates `/<id>` in every v1 hierarchy (the kubelet refuses a cgroup root that does not
/// exist), with the parent's cpus and memory nodes in `cpuset`, and `/<id>/node` in `pids`.
pub fn create(id: &str) -> io::Result<()> {
    for hierarchy in hierarchies()? {
        if hierarchy.ends_with("unified") {
            continue;
        }
        let root = hierarchy.join(id);
        fs::create_dir_all(&root)?;
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let parent = fs::read_to_string(hierarchy.join(file))?;
                fs::write(root.join(file), parent.trim())?;
            }
        }
        if hierarchy.ends_with("pids") {
            fs::create_dir_all(root.join("node"))?;
        }
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), out);
            }
        }
    }
}

/// Every cgroup directory of `/<id>`, in every hierarchy, parents before children.
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for hierarchy in hierarchies().unwrap_or_default() {
        let root = hierarchy.join(id);
        if root.is_dir() {
            walk(&root, &mut dirs);
        }
    }
    dirs
}

/// The processes in `/<id>` and below, in any hierarchy.
pub fn processes(id: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_dirs(id)
        .iter()
        .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[allow(unsafe_code)]
fn kill(pid: i32) {
    // SAFETY: kill(2) with a pid read from the node's own cgroups and a constant signal.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills (SIGKILL) every process under `/<id>` until none is left, then removes `/<id>` from
/// every hierarchy, children first.
pub fn kill_and_remove(id: &str, timeout: Duration) -> io::Result<()> {
    let start = Instant::now();
    loop {
        let pids = processes(id);
        if pids.is_empty() {
            break;
        }
        if start.elapsed() > timeout {
            return Err(io::Error::other(format!(
                "processes {pids:?} of cgroup /{id} survived SIGKILL for {timeout:?}"
            )));
        }
        pids.into_iter().for_each(kill);
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut dirs = cgroup_dirs(id);
    dirs.reverse();
    for dir in dirs {
        // A cgroup whose last task just exited can be busy for a moment.
        let mut tries = 0;
        loop {
            match fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) if tries < 100 => {
                    let _ = e;
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("removing cgroup {}: {e}", dir.display()),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The ids of node cgroup roots (`<prefix><label>-<pid>-<n>`) whose test process is gone.
pub fn stale_roots(prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for hierarchy in hierarchies().unwrap_or_default() {
        let Ok(entries) = fs::read_dir(&hierarchy) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || ids.contains(&name) {
                continue;
            }
            let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                ids.push(name);
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_are_the_cgroup_mounts_under_sys_fs_cgroup() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\nproc /proc proc rw 0 0\ncgroup /elsewhere cgroup rw 0 0\n";
        assert_eq!(
            hierarchies_in(mounts),
            [
                PathBuf::from("/sys/fs/cgroup/cpu"),
                PathBuf::from("/sys/fs/cgroup/unified")
            ]
        );
    }
}
