//! What the numbers were measured on.

use std::process::Command;

/// The machine and its load.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `nproc`.
    pub cpus: usize,
    /// The CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// `uname -r`.
    pub kernel: String,
    /// MemTotal, MiB.
    pub memory_mib: u64,
    /// /etc/debian_version or the PRETTY_NAME of /etc/os-release.
    pub os: String,
    /// The commit benchmarked (with `-dirty` when the tree has changes).
    pub commit: String,
}

impl Machine {
    /// Reads it all from /proc, uname and git (best effort).
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
            .unwrap_or("unknown")
            .trim()
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024);
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let commit = output("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
        let dirty = !output(
            "git",
            &["-C", repo, "status", "--porcelain", "--untracked-files=no"],
        )
        .is_empty();
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel: output("uname", &["-r"]),
            memory_mib,
            os,
            commit: if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            },
        }
    }
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
