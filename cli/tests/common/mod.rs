//! What every test of the built `kubectl-switchyard` needs: running it and finding libvirt's
//! corpus. Each test file uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use switchyard_tests::bins::output_with_stdin;

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the plugin without a cluster: its kubeconfig does not exist.
pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    run_with_kubeconfig("/nonexistent/kubeconfig".as_ref(), args, stdin)
}

/// Runs the plugin against the cluster of `kubeconfig`, never the in-cluster one.
pub fn run_with_kubeconfig(kubeconfig: &OsStr, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-switchyard"));
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST");
    let (output, written) = output_with_stdin(command, stdin.unwrap_or_default().into());
    // A program that exits without reading (a refused argument) closes the pipe before the
    // write: its exit code and messages are what the tests check.
    if let Err(err) = written {
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {err}"
        );
    }
    Output {
        code: output.status.code().expect("exited normally"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `path` inside libvirt's corpus (../shared/corpus/libvirt).
pub fn corpus_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/libvirt")
        .join(path)
}

/// [`corpus_path`] as an argument for the plugin.
pub fn corpus(path: &str) -> String {
    corpus_path(path).to_string_lossy().into_owned()
}
