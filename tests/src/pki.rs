//! Throwaway certificates for servers on 127.0.0.1 (the apiserver, the webhook), made with
//! openssl as an administrator would.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

/// A CA and a serving certificate signed by it.
#[derive(Debug, Clone)]
pub struct ServingCertificate {
    /// The CA certificate (PEM): what clients trust.
    pub ca_cert: PathBuf,
    /// The serving certificate (PEM), for IP 127.0.0.1 and DNS localhost.
    pub cert: PathBuf,
    /// Its ECDSA P-256 private key (PEM).
    pub key: PathBuf,
}

impl ServingCertificate {
    /// Creates `ca.crt`, `tls.crt` and `tls.key` (and their working files) in `dir`; the CA is
    /// named `<name>-ca`. Valid for three days.
    pub fn generate(dir: &Path, name: &str) -> io::Result<Self> {
        Self::generate_for(dir, name, &[])
    }

    /// Like [`ServingCertificate::generate`], the certificate also valid for `extra_ips` (a
    /// real node's pods reach the apiserver at the `kubernetes` Service's address).
    pub fn generate_for(dir: &Path, name: &str, extra_ips: &[IpAddr]) -> io::Result<Self> {
        let p = |file: &str| dir.join(file).display().to_string();
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &p("ca.key"),
        ])?;
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &p("ca.key"),
            "-subj",
            &format!("/CN={name}-ca"),
            "-days",
            "3",
            "-out",
            &p("ca.crt"),
        ])?;
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &p("tls.key"),
        ])?;
        openssl(&[
            "req",
            "-new",
            "-key",
            &p("tls.key"),
            "-subj",
            "/CN=127.0.0.1",
            "-out",
            &p("tls.csr"),
        ])?;
        std::fs::write(
            dir.join("tls.ext"),
            format!(
                "subjectAltName=IP:127.0.0.1,DNS:localhost{}\nextendedKeyUsage=serverAuth\n",
                extra_ips
                    .iter()
                    .map(|ip| format!(",IP:{ip}"))
                    .collect::<String>()
            ),
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("tls.csr"),
            "-CA",
            &p("ca.crt"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "3",
            "-extfile",
            &p("tls.ext"),
            "-out",
            &p("tls.crt"),
        ])?;
        Ok(Self {
            ca_cert: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        })
    }

    /// The CA certificate, base64-encoded, as a webhook configuration's `caBundle` wants it.
    pub fn ca_bundle(&self) -> io::Result<String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(std::fs::read(&self.ca_cert)?))
    }
}

/// Runs openssl; its standard error becomes the error.
pub fn openssl(args: &[&str]) -> io::Result<()> {
    let out = Command::new("openssl").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
