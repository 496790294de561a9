//! The workspace's own binaries, for tests in crates that do not build them.
//!
//! Cargo gives a test `CARGO_BIN_EXE_<name>` only for the binaries of its own package. Tests
//! that drive another package's binary (the controller from a node-agent test, the CLI from
//! the end-to-end crate) find it beside their own executable: `target/<profile>/deps/<test>`
//! sits under `target/<profile>/`, where `cargo build --workspace --bins` puts every binary.

use std::path::PathBuf;

/// The path of workspace binary `name` in the profile directory this test was built into.
///
/// Panics with what to run when it was not built: `cargo test -p X` builds only X's binaries
/// (scripts/test.sh builds the whole workspace first).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own executable path");
    // target/<profile>/deps/<test>-<hash>: up two levels is target/<profile>.
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.file_name().is_some_and(|n| n == "deps"))
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| {
            panic!(
                "{} is not in a cargo target/<profile>/deps directory; cannot find {name}",
                exe.display()
            )
        });
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{name} has not been built: {} does not exist. Run `cargo build --workspace --bins` \
         (with the same profile and CARGO_TARGET_DIR as the tests) first; scripts/test.sh does.",
        binary.display()
    );
    binary
}

/// The cargo target directory this program was built into: above `target/<profile>/` (a
/// binary) or `target/<profile>/deps/` (a test).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the program's own executable path");
    let mut dir = exe.parent().expect("an executable has a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("deps/ is in a profile directory");
    }
    dir.parent()
        .unwrap_or_else(|| panic!("{} is not in a cargo target directory", exe.display()))
        .to_path_buf()
}

/// Where the image's binaries are: `target/<image profile>/` of this build's target directory
/// (see [`crate::images::IMAGE_PROFILE`]). Panics with the command to run when one is missing.
pub fn image_binary_dir() -> PathBuf {
    let dir = target_dir().join(crate::images::IMAGE_PROFILE);
    for name in crate::images::SWITCHYARD_BINARIES {
        assert!(
            dir.join(name).is_file(),
            "{name} has not been built into {}: run `{}` (scripts/test.sh does)",
            dir.display(),
            crate::images::build_command()
        );
    }
    dir
}

/// Runs `command` to its end with `stdin` piped in and stdout and stderr captured.
///
/// The input is written from a thread of its own, so that a program printing more than a pipe
/// holds before it has read all of it cannot deadlock the test. Returns the output and how
/// writing went: a program may stop reading early (and the caller decide whether that is fine).
pub fn output_with_stdin(
    mut command: std::process::Command,
    stdin: Vec<u8>,
) -> (std::process::Output, std::io::Result<()>) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
    let mut pipe = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || pipe.write_all(&stdin));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {:?}: {e}", command.get_program()));
    let written = writer.join().expect("the stdin writer");
    (output, written)
}
