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
    /// Apply the database migrations (idempotent).
    Migrate(DbArgs),
    /// Declare the RabbitMQ exchanges and queues (idempotent; the worker does it too).
    Setup(SetupArgs),
    /// Manage integrations (a bridge URL, its token, seats).
    #[command(subcommand)]
    Integration(IntegrationCommand),
    /// Put sync jobs on the queue.
    Enqueue(EnqueueArgs),
    /// Run one sync now, in this process, and print its summary.
    Sync(SyncArgs),
    /// Run the worker: consume sync jobs, write the directory, relay events.
    Worker(WorkerArgs),
    /// Print a new random token-encryption key for OPSYNC_TOKEN_KEY.
    Keygen,
    /// Dead-lettered jobs: list them, replay them.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Seat allocation and provisioning reports (as of each integration's last successful sync).
    #[command(subcommand)]
    Report(ReportCommand),
    /// List an integration's members.
    Users(UsersArgs),
    /// One member: its stored state and provisioning timeline.
    User(UserArgs),
}

/// How a listing prints: a table on a terminal, or JSON / CSV for machines.
#[derive(Args, Debug, Clone, Copy)]
pub struct FormatArgs {
    /// Print JSON on stdout.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (RFC 4180, with a header row) on stdout.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Subcommand, Debug)]
pub enum ReportCommand {
    /// Purchased seats, active and suspended members, utilization, unused seats and their cost,
    /// over-allocation, days to renewal and the projection at renewal.
    Seats(ReportSeatsArgs),
    /// Members worth a look before renewal: suspended, suspended again after a reactivation,
    /// removed from the bridge; each with its evidence.
    Reclaim(ReportIdArgs),
    /// Per week: members added, deactivated, reactivated, removed and active at week end.
    Trend(ReportTrendArgs),
}

#[derive(Args, Debug)]
pub struct ReportSeatsArgs {
    /// One integration (default: all of them).
    pub id: Option<uuid::Uuid>,
    /// Also write a self-contained HTML page with the summary and a chart (needs ID).
    #[arg(long, value_name = "FILE", requires = "id")]
    pub html: Option<PathBuf>,
    /// Weeks of history in the HTML chart (at most; fewer when the history is shorter).
    #[arg(long, default_value_t = 26, value_parser = clap::value_parser!(u32).range(1..=520))]
    pub chart_weeks: u32,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct ReportIdArgs {
    pub id: uuid::Uuid,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct ReportTrendArgs {
    pub id: uuid::Uuid,
    /// Weeks to show, ending with the current one.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=520))]
    pub weeks: u32,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct UsersArgs {
    pub id: uuid::Uuid,
    /// Only members in this state.
    #[arg(long, value_parser = ["active", "suspended", "removed"])]
    pub state: Option<String>,
    /// Only members whose user name, email or display name contains TEXT (any case).
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct UserArgs {
    pub id: uuid::Uuid,
    /// The member's SCIM id (see `opsync users ID`).
    pub scim_id: String,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Show every dead job with its reason, attempts and age (the queue is left as it was).
    List(DlqListArgs),
    /// Send dead jobs back to opsync.jobs with trigger `replay` and attempts reset.
    Replay(DlqReplayArgs),
}

#[derive(Args, Debug)]
pub struct DlqListArgs {
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[group(id = "which", required = true, multiple = true, args = ["job", "integration", "kind", "all"])]
pub struct DlqReplayArgs {
    /// A job id to replay (repeatable).
    #[arg(long)]
    pub job: Vec<uuid::Uuid>,
    /// Every dead job of this integration.
    #[arg(long)]
    pub integration: Option<uuid::Uuid>,
    /// Every dead job with this error kind (e.g. auth_rejected).
    #[arg(long)]
    pub kind: Option<String>,
    /// Every dead job.
    #[arg(long)]
    pub all: bool,
    /// Say what would be replayed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// Commands print their own results; logs below warnings would only clutter a terminal.
    /// The worker is a service: its logs are its output.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Worker(_) => "info",
            _ => "warn",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Postgres connection string.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct AmqpArgs {
    /// RabbitMQ connection string.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Base64 of 32 bytes: the key that encrypts bearer tokens at rest.
    #[arg(long = "token-key", env = "OPSYNC_TOKEN_KEY", hide_env_values = true)]
    pub current: String,
    /// Older keys, comma-separated, still accepted for decryption during a rotation.
    #[arg(
        long = "token-key-previous",
        env = "OPSYNC_TOKEN_KEY_PREVIOUS",
        hide_env_values = true
    )]
    pub previous: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RetryArgs {
    /// Delays between attempts of a failed job (their count is the number of retries).
    #[arg(long, env = "OPSYNC_RETRY_DELAYS", value_delimiter = ',', default_value = "30s,2m,10m,30m", value_parser = humantime::parse_duration)]
    pub retry_delays: Vec<Duration>,
}

/// When a sync may remove members.
#[derive(Args, Debug, Clone)]
pub struct RemovalArgs {
    /// A run removing more than this many members and more than --removal-max-ratio of the
    /// directory holds its removals for an operator (`integration release-removals`).
    #[arg(long, env = "OPSYNC_REMOVAL_MAX_COUNT", default_value_t = 10)]
    pub removal_max_count: usize,
    #[arg(long, env = "OPSYNC_REMOVAL_MAX_RATIO", default_value_t = 0.10)]
    pub removal_max_ratio: f64,
    /// `GET /Users/{id}` confirmations per run (a removal needs the bridge's 404).
    #[arg(long, env = "OPSYNC_REMOVAL_CHECKS", default_value_t = 100)]
    pub removal_checks: usize,
}

impl RemovalArgs {
    pub fn policy(&self) -> opsync_shared::directory::RemovalPolicy {
        opsync_shared::directory::RemovalPolicy {
            max_count: self.removal_max_count,
            max_ratio: self.removal_max_ratio,
            max_checks: self.removal_checks,
        }
    }
}

#[derive(Args, Debug)]
pub struct SetupArgs {
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
}

#[derive(Subcommand, Debug)]
pub enum IntegrationCommand {
    /// Check the bridge like `opsync verify`, then save it with its token encrypted.
    Add(AddArgs),
    /// List integrations.
    List(ListArgs),
    /// Show one integration and its recent sync runs.
    Show(IdArgs),
    /// Replace the bearer token (after "Regenerate credentials" in 1Password).
    UpdateToken(UpdateTokenArgs),
    /// Set the number of purchased seats (omit N to clear it).
    SetSeats(SetSeatsArgs),
    /// Set the subscription facts the seat report uses (only the ones given change).
    SetPlan(SetPlanArgs),
    /// Stop syncing an integration.
    Disable(IdArgs),
    /// Sync an integration again (also after fixing its bridge).
    Enable(IdArgs),
    /// Delete an integration with its directory and history.
    Remove(IdArgs),
    /// Accept a held mass removal: the next sync removes the members (each still confirmed by a 404).
    ReleaseRemovals(IdArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// A descriptive name, e.g. "1Password Production".
    #[arg(long)]
    pub name: String,
    /// The SCIM bridge URL, e.g. https://scim.example.com
    #[arg(long)]
    pub url: String,
    #[command(flatten)]
    pub token: TokenSource,
    /// Purchased seats.
    #[arg(long)]
    pub seats: Option<u32>,
    /// Save without checking the bridge first.
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub bridge: BridgeArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    pub id: uuid::Uuid,
    #[command(flatten)]
    pub db: DbArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct UpdateTokenArgs {
    pub id: uuid::Uuid,
    #[command(flatten)]
    pub token: TokenSource,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SetSeatsArgs {
    pub id: uuid::Uuid,
    pub seats: Option<u32>,
    #[command(flatten)]
    pub db: DbArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[group(id = "plan", required = true, multiple = true, args = ["seats", "price_per_seat", "billing", "renewal"])]
pub struct SetPlanArgs {
    pub id: uuid::Uuid,
    /// Purchased seats.
    #[arg(long)]
    pub seats: Option<u32>,
    /// Price of one seat for one billing period, e.g. 7.99 (with --currency).
    #[arg(long, value_name = "AMOUNT", requires = "currency", value_parser = parse_amount)]
    pub price_per_seat: Option<String>,
    /// ISO 4217 currency of the price, e.g. EUR.
    #[arg(long, requires = "price_per_seat", value_parser = parse_currency)]
    pub currency: Option<String>,
    /// How often the subscription is billed (and renews).
    #[arg(long, value_parser = ["monthly", "annual"])]
    pub billing: Option<String>,
    /// The next renewal date, YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub renewal: Option<chrono::NaiveDate>,
    #[command(flatten)]
    pub db: DbArgs,
    #[arg(long)]
    pub json: bool,
}

fn parse_amount(s: &str) -> Result<String, String> {
    opsync_shared::report::parse_amount(s)
}

fn parse_currency(s: &str) -> Result<String, String> {
    opsync_shared::report::parse_currency(s)
}

#[derive(Args, Debug)]
#[group(id = "targets", required = true, multiple = false, args = ["ids", "all", "due"])]
pub struct EnqueueArgs {
    /// Integrations to sync.
    pub ids: Vec<uuid::Uuid>,
    /// Every active integration.
    #[arg(long)]
    pub all: bool,
    /// Active integrations not synced within --interval.
    #[arg(long, requires = "interval")]
    pub due: bool,
    /// With --due: e.g. 1h, 30m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// The job's trigger field.
    #[arg(long, default_value = "manual", value_parser = ["scheduled", "manual", "initial", "replay"])]
    pub trigger: String,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    pub id: uuid::Uuid,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub bridge: BridgeArgs,
    #[command(flatten)]
    pub removals: RemovalArgs,
    /// Also publish the outbox to RabbitMQ afterwards (else a worker's relay does it).
    #[arg(long)]
    pub publish: bool,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub bridge: BridgeArgs,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub removals: RemovalArgs,
    /// Jobs run at once (also the consumer prefetch).
    #[arg(long, env = "OPSYNC_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Seconds running jobs get to finish after SIGTERM (keep it below Kubernetes' grace period).
    #[arg(long, env = "OPSYNC_SHUTDOWN_DEADLINE", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_deadline: Duration,
    /// Database connections.
    #[arg(long, env = "OPSYNC_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: usize,
    /// Where /healthz and /readyz answer.
    #[arg(long, env = "OPSYNC_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
    pub health_addr: std::net::SocketAddr,
    /// Do not relay the outbox from this process (when a separate relay runs it).
    #[arg(long, env = "OPSYNC_NO_RELAY")]
    pub no_relay: bool,
    /// How often the relay looks for events left unpublished.
    #[arg(long, env = "OPSYNC_RELAY_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub relay_interval: Duration,
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
