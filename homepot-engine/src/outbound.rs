//! The HTTP client for calls homepot makes itself (alert notifications, remote write
//! forwarding): rustls with ring and the system's root certificates, one user agent.

use std::sync::Arc;
use std::time::Duration;

/// A client whose requests time out after `timeout`.
///
/// # Errors
/// When the client cannot be built.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .user_agent(concat!("homepot/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// A `Retry-After` in seconds, as receivers send it.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
