//! Serving HTTP over TLS for the admission webhook: rustls with ring (TLS 1.2 and 1.3), HTTP/1.1,
//! the certificate re-read when its files change (cert-manager and Secret volumes rotate them
//! in place), and a graceful stop that lets requests in flight finish.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Why the webhook could not serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate or key file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The key does not suit the certificate, or rustls refused the configuration.
    #[error("TLS configuration")]
    Config(#[from] rustls::Error),
    /// The address could not be bound.
    #[error("binding {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// How often, at most, the certificate files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(10);
/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn load(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let pem = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| TlsError::Pem {
            path,
            message: e.to_string(),
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(pem(cert_file))?
        .collect::<Result<_, _>>()
        .map_err(pem(cert_file))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert_file.to_path_buf(),
            message: "no certificate in the file".to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(pem(key_file))?;
    let signing_key = provider.key_provider.load_private_key(key)?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match()?;
    Ok(certified)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The serving certificate, re-read when either file's modification time changes. A rotation
/// that leaves unreadable files keeps the previous certificate and logs why.
#[derive(Debug)]
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>, Option<SystemTime>)>,
    last_check: Mutex<Instant>,
}

impl ReloadingCert {
    fn new(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let key = load(cert_file, key_file, &provider)?;
        Ok(Self {
            current: RwLock::new((Arc::new(key), modified(cert_file), modified(key_file))),
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            last_check: Mutex::new(Instant::now()),
        })
    }

    fn reload_if_changed(&self) {
        {
            let mut last = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < RELOAD_CHECK {
                return;
            }
            *last = Instant::now();
        }
        let stamps = (modified(&self.cert_file), modified(&self.key_file));
        let unchanged = {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            (current.1, current.2) == stamps
        };
        if unchanged {
            return;
        }
        match load(&self.cert_file, &self.key_file, &self.provider) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) =
                    (Arc::new(key), stamps.0, stamps.1);
                tracing::info!(cert = %self.cert_file.display(), "webhook certificate reloaded");
            }
            Err(error) => {
                tracing::warn!(%error, "webhook certificate changed but cannot be loaded; keeping the previous one");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.reload_if_changed();
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .clone(),
        )
    }
}

/// A TLS acceptor for the certificate and key in these PEM files.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = ReloadingCert::new(cert_file, key_file, provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds `addr`; the listener is returned so callers learn bind errors before serving.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, TlsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| TlsError::Bind { addr, source })
}

/// Serves `router` over TLS until `shutdown`, then lets open requests finish (bounded).
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a webhook connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("webhook requests still open after the drain timeout");
    }
}
