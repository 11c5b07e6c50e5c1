//! Per-test infrastructure on the real services: each test gets its own Postgres database and
//! its own RabbitMQ vhost, so tests run in parallel and leave nothing behind.
//!
//! The services come from `DATABASE_URL` (any database on the server; used to create and drop
//! the per-test ones) and `AMQP_URL` (its vhost is replaced; the management API at
//! `RABBITMQ_MANAGEMENT_URL`, default `http://127.0.0.1:15672`, creates and deletes vhosts).
//! `make test` sets them to the local services. When both are unset and Docker answers (a
//! laptop without the services), Postgres and RabbitMQ run in containers instead
//! (testcontainers, see [`containers`]).

use rand::Rng;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Containers only when neither service is configured: a half-configured environment is a
/// mistake to report, not to paper over.
fn from_containers() -> Option<&'static containers::Services> {
    if var("DATABASE_URL").is_some() || var("AMQP_URL").is_some() {
        return None;
    }
    containers::get()
}

pub fn database_url() -> String {
    var("DATABASE_URL")
        .or_else(|| from_containers().map(|s| s.database_url.clone()))
        .unwrap_or_else(|| {
            panic!("DATABASE_URL is not set and Docker is not available: run the tests with `make test`, or point it at a Postgres server (any database; tests create their own)")
        })
}

pub fn amqp_url() -> String {
    var("AMQP_URL")
        .or_else(|| from_containers().map(|s| s.amqp_url.clone()))
        .unwrap_or_else(|| {
            panic!(
                "AMQP_URL is not set and Docker is not available: run the tests with `make test`, or point it at a RabbitMQ server"
            )
        })
}

fn management_url() -> String {
    var("RABBITMQ_MANAGEMENT_URL")
        .or_else(|| from_containers().map(|s| s.management_url.clone()))
        .unwrap_or_else(|| "http://127.0.0.1:15672".into())
}

/// Postgres and RabbitMQ in Docker, for a machine without them: started once per test
/// process, on first use. The containers are reusable (fixed names, testcontainers'
/// `reusable-containers`): the next test process, and the next `cargo test`, find them
/// running instead of paying the start-up again; `docker rm -f opsync-test-postgres
/// opsync-test-rabbitmq` removes them. Their images are pinned: the modules' defaults are old.
pub mod containers {
    use std::sync::OnceLock;

    pub struct Services {
        pub database_url: String,
        pub amqp_url: String,
        pub management_url: String,
    }

    static SERVICES: OnceLock<Option<Services>> = OnceLock::new();

    pub fn get() -> Option<&'static Services> {
        SERVICES
            // Its own thread: the blocking runner has a runtime of its own, which must not
            // start inside a test's tokio runtime.
            .get_or_init(|| std::thread::spawn(start).join().ok().flatten())
            .as_ref()
    }

    fn docker_answers() -> bool {
        std::process::Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn start() -> Option<Services> {
        use testcontainers::core::{IntoContainerPort, ReuseDirective, WaitFor};
        use testcontainers::runners::SyncRunner;
        use testcontainers::{ContainerRequest, GenericImage, ImageExt};
        use testcontainers_modules::postgres::Postgres;
        if !docker_answers() {
            return None;
        }
        let pg: ContainerRequest<Postgres> = Postgres::default()
            .with_tag("16-alpine")
            .with_container_name("opsync-test-postgres")
            .with_reuse(ReuseDirective::Always);
        // A generic image: the module's readiness check waits for the exact plugin count of
        // its own old default image.
        let mq: ContainerRequest<GenericImage> = GenericImage::new("rabbitmq", "4.1-management")
            .with_exposed_port(5672.tcp())
            .with_exposed_port(15672.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
            .with_container_name("opsync-test-rabbitmq")
            .with_reuse(ReuseDirective::Always);
        let pg = match pg.start() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot start Postgres in Docker ({e}); set DATABASE_URL and AMQP_URL to running services instead"
            ),
        };
        let mq = match mq.start() {
            Ok(c) => c,
            Err(e) => panic!(
                "cannot start RabbitMQ in Docker ({e}); set DATABASE_URL and AMQP_URL to running services instead"
            ),
        };
        let port = |c: u16, p: Result<u16, testcontainers::TestcontainersError>| {
            p.unwrap_or_else(|e| panic!("no host port for container port {c}: {e}"))
        };
        let services = Services {
            database_url: format!(
                "postgres://postgres:postgres@127.0.0.1:{}/postgres",
                port(5432, pg.get_host_port_ipv4(5432))
            ),
            amqp_url: format!(
                "amqp://guest:guest@127.0.0.1:{}/%2f",
                port(5672, mq.get_host_port_ipv4(5672))
            ),
            management_url: format!(
                "http://127.0.0.1:{}",
                port(15672, mq.get_host_port_ipv4(15672))
            ),
        };
        // Reused containers outlive this process by design: dropping the handles must not
        // stop them.
        std::mem::forget(pg);
        std::mem::forget(mq);
        Some(services)
    }
}

fn unique(prefix: &str) -> String {
    let n: u64 = rand::rng().random();
    format!("{prefix}_{n:016x}")
}

/// Replaces the database name of a postgres URL.
fn with_database(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL is a URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// The credentials of AMQP_URL, for the management API.
fn amqp_credentials() -> (String, String) {
    let u = url::Url::parse(&amqp_url()).expect("AMQP_URL is a URL");
    let user = if u.username().is_empty() {
        "guest".to_string()
    } else {
        u.username().to_string()
    };
    (user, u.password().unwrap_or("guest").to_string())
}

/// A database of its own, migrated, dropped when the value is dropped.
pub struct TestDb {
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::create(true).await
    }

    /// A database without migrations (for the migration tests).
    pub async fn empty() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrate: bool) -> TestDb {
        let name = unique("opsync_t");
        let admin = database_url();
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("connect to DATABASE_URL");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let db = TestDb {
            url: with_database(&admin, &name),
            name,
        };
        if migrate {
            let pool = db.pool();
            opsync_shared::store::migrate(&pool)
                .await
                .expect("migrate the test database");
        }
        db
    }

    pub fn pool(&self) -> deadpool_postgres::Pool {
        opsync_shared::store::pool(&self.url, 8).expect("pool")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = database_url();
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee: use a thread with its own small runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A client per call: each test has its own tokio runtime, and a pooled connection made on one
/// runtime dies with it ("runtime dropped the dispatch task" in the next test that reuses it).
fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// A RabbitMQ vhost of its own, deleted (with everything in it) when dropped.
pub struct TestVhost {
    pub name: String,
    pub url: String,
}

impl TestVhost {
    pub async fn new() -> TestVhost {
        let name = unique("opsync_t");
        let (user, pass) = amqp_credentials();
        let mgmt = management_url();
        let r = http()
            .put(format!("{mgmt}/api/vhosts/{name}"))
            .basic_auth(&user, Some(&pass))
            .send()
            .await
            .expect("management API reachable (rabbitmq_management plugin)");
        assert!(r.status().is_success(), "create vhost: {}", r.status());
        let r = http()
            .put(format!("{mgmt}/api/permissions/{name}/{user}"))
            .basic_auth(&user, Some(&pass))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "set permissions: {}", r.status());
        let mut u = url::Url::parse(&amqp_url()).unwrap();
        u.set_path(&format!("/{name}"));
        TestVhost {
            url: u.to_string(),
            name,
        }
    }

    pub async fn connect(&self) -> lapin::Connection {
        lapin::Connection::connect(&self.url, lapin::ConnectionProperties::default())
            .await
            .expect("connect to the test vhost")
    }

    /// Messages ready in a queue (a passive declare answers with the count).
    pub async fn queue_len(&self, queue: &str) -> i64 {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue}: {e}"));
        let _ = conn.close(200, "".into()).await;
        q.message_count() as i64
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let name = self.name.clone();
        let (user, pass) = amqp_credentials();
        let mgmt = management_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = reqwest::Client::new()
                    .delete(format!("{mgmt}/api/vhosts/{name}"))
                    .basic_auth(&user, Some(&pass))
                    .send()
                    .await;
            });
        })
        .join();
    }
}
