//! The command line. Every setting also reads from the environment (clap `env`), so the same
//! binary is configured by flags on a laptop and by a ConfigMap in Kubernetes.

use clap::{Args, Parser, Subcommand};
use opsync_shared::scim::{AddressPolicy, ClientConfig, PagingLimits, RetryPolicy};
use opsync_shared::secret::{BearerToken, TokenSourceError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "opsync", version, about = "Viio's 1Password connector: reads SCIM bridges, keeps the directory, reports changes", after_help = crate::exit::HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a SCIM bridge URL and token: find the SCIM base, read the version, list every user.
    #[command(after_help = crate::exit::HELP)]
    Verify(VerifyArgs),
}

impl Command {
    /// Commands print their own results; logs below warnings would only clutter a terminal.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Verify(_) => "warn",
        }
    }
}

/// Where the bearer token comes from. Never a plain argument: it would land in shell history
/// and in `ps` output.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct TokenSource {
    /// File holding the bridge's bearer token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Name of an environment variable holding the bearer token.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
}

impl TokenSource {
    pub fn read(&self) -> Result<BearerToken, TokenSourceError> {
        match (&self.token_file, &self.token_env) {
            (Some(f), _) => BearerToken::from_file(f),
            (None, Some(v)) => BearerToken::from_env(v),
            (None, None) => Err(TokenSourceError::Empty),
        }
    }
}

/// How we talk to bridges.
#[derive(Args, Debug, Clone)]
pub struct BridgeArgs {
    /// Users asked for per page.
    #[arg(long, env = "OPSYNC_PAGE_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub page_size: u64,
    /// Most requests per second to one bridge (0: no limit, for benchmarks only).
    #[arg(long, env = "OPSYNC_RATE_LIMIT", default_value_t = 10.0)]
    pub rate_limit: f64,
    /// Seconds one request (body included) may take.
    #[arg(long, env = "OPSYNC_REQUEST_TIMEOUT", default_value_t = 30)]
    pub request_timeout: u64,
    /// Seconds a connection may take to open.
    #[arg(long, env = "OPSYNC_CONNECT_TIMEOUT", default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds within which a failing request is retried.
    #[arg(long, env = "OPSYNC_RETRY_DEADLINE", default_value_t = 120)]
    pub retry_deadline: u64,
    /// Largest page body accepted, in bytes.
    #[arg(long, env = "OPSYNC_MAX_RESPONSE_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_response_bytes: u64,
    /// PEM file with extra CA certificates to trust (a bridge behind a private CA).
    #[arg(long, env = "OPSYNC_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Allow http:// bridge URLs (tests and demos only: the token would travel in clear).
    #[arg(long, env = "OPSYNC_ALLOW_HTTP")]
    pub allow_http: bool,
    /// Allow bridges on loopback, private and link-local addresses (tests and demos only).
    #[arg(long, env = "OPSYNC_ALLOW_PRIVATE_ADDRESSES")]
    pub allow_private_addresses: bool,
}

impl BridgeArgs {
    pub fn client_config(&self) -> std::io::Result<ClientConfig> {
        let extra_ca_pem = self.ca_file.as_ref().map(std::fs::read).transpose()?;
        Ok(ClientConfig {
            connect_timeout: Duration::from_secs(self.connect_timeout),
            request_timeout: Duration::from_secs(self.request_timeout),
            max_response_bytes: self.max_response_bytes,
            paging: PagingLimits {
                page_size: self.page_size,
                ..PagingLimits::default()
            },
            rate_limit_per_sec: self.rate_limit.max(0.0),
            retry: RetryPolicy {
                deadline: Duration::from_secs(self.retry_deadline),
                ..RetryPolicy::default()
            },
            allow_http: self.allow_http,
            address_policy: AddressPolicy {
                allow_private: self.allow_private_addresses,
            },
            extra_ca_pem,
        })
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The SCIM bridge URL as the customer gave it, e.g. https://scim.example.com
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub token: TokenSource,
    #[command(flatten)]
    pub bridge: BridgeArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
