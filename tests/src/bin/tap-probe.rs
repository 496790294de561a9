//! Runs as a VM pod's container on the real node (see `switchyard_tests::tap_probe`): for
//! every tap character device the container was given, says whether it opens read-write, its
//! major:minor, and the link of that ifindex in the pod's network namespace (the container's
//! `/sys` is a sysfs of that namespace) with its MAC and the major:minor sysfs gives its tap
//! device. Prints one JSON line, then sleeps until it is killed (the pod stays Running, its
//! log holds the line).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn major_minor(rdev: u64) -> String {
    // glibc's gnu_dev_major/gnu_dev_minor.
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    format!("{major}:{minor}")
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The link with `ifindex` in this network namespace: its name and MAC.
fn link(ifindex: u32) -> Option<(String, Option<String>)> {
    fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let dir = entry.path();
            (read(&dir.join("ifindex"))? == ifindex.to_string()).then(|| {
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    read(&dir.join("address")),
                )
            })
        })
}

fn probe(path: &Path) -> serde_json::Value {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ifindex: Option<u32> = name.strip_prefix("tap").and_then(|n| n.parse().ok());
    let device = fs::metadata(path).ok().map(|m| major_minor(m.rdev()));
    let open = match fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => "ok".to_string(),
        Err(error) => error.to_string(),
    };
    let link = ifindex.and_then(link);
    let sysfs_device = match (&link, ifindex) {
        (Some((link, _)), Some(ifindex)) => read(
            &Path::new("/sys/class/net")
                .join(link)
                .join(format!("tap{ifindex}/dev")),
        ),
        _ => None,
    };
    serde_json::json!({
        "path": path.display().to_string(),
        "ifindex": ifindex,
        "device": device,
        "open": open,
        "link": link.as_ref().map(|(name, _)| name),
        "mac": link.as_ref().and_then(|(_, mac)| mac.clone()),
        "sysfsDevice": sysfs_device,
    })
}

fn main() {
    let mut taps: Vec<_> = fs::read_dir("/dev")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("tap"))
                .filter(|e| e.file_type().is_ok_and(|t| t.is_char_device()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    taps.sort();
    let report = serde_json::json!({"taps": taps.iter().map(|p| probe(p)).collect::<Vec<_>>()});
    // The pod's log is the report.
    #[allow(clippy::print_stdout)]
    {
        println!("{report}");
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
