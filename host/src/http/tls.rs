//! HTTPS (`TLS_CERT_FILE`, `TLS_KEY_FILE`): rustls, HTTP/1.1 and HTTP/2 by
//! ALPN, and a certificate renewed on disk served from the next handshake
//! on, without a restart.
//!
//! Invariants:
//! - A renewal is picked up whole or not at all: the pair is read and
//!   checked before it replaces the one in service; a renewal that does
//!   not read (half written, key and certificate apart) leaves the old pair
//!   serving and is tried again at the next look.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;

use crate::background::Ticks;

/// The certificate and key files HTTPS serves, and the rustls
/// configuration made of them.
#[derive(Clone)]
pub struct Https {
    pub config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
}

impl Https {
    /// Reads the pair; a clear error when it does not make a configuration.
    pub async fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let config = RustlsConfig::from_pem_file(cert, key).await.with_context(|| {
            format!("cannot serve HTTPS with TLS_CERT_FILE {} and TLS_KEY_FILE {}", cert.display(), key.display())
        })?;
        Ok(Self { config, cert: cert.to_path_buf(), key: key.to_path_buf() })
    }

    /// Every `every` until `shutdown`: when either file changed since it
    /// was last read, serves the pair they hold now.
    pub async fn follow_renewals(self, every: Duration, shutdown: CancellationToken) {
        let mut served = self.modified();
        let mut ticks = Ticks::new(every, shutdown);
        while ticks.next().await {
            let now = self.modified();
            if now == served {
                continue;
            }
            match self.config.reload_from_pem_file(&self.cert, &self.key).await {
                Ok(()) => {
                    served = now;
                    tracing::info!(cert = %self.cert.display(), "serving the renewed TLS certificate");
                }
                Err(error) => {
                    tracing::warn!(cert = %self.cert.display(), %error, "the renewed TLS certificate does not load; the old one serves")
                }
            }
        }
    }

    fn modified(&self) -> [Option<SystemTime>; 2] {
        let time = |path: &Path| std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok();
        [time(&self.cert), time(&self.key)]
    }
}
