//! A fresh database per test, cloned from a migrated template.

use std::str::FromStr;

use shared::config::DatabaseConfig;
use shared::db::MIGRATOR;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection};

/// Names of databases the suite creates; `make test` drops leftovers of killed runs by it.
pub const TEST_DATABASE_PREFIX: &str = "erc8004_test_";
const TEMPLATE_PREFIX: &str = "erc8004_tmpl_";
const TEMPLATE_LOCK: i64 = 8_004_001;

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    pub pool: PgPool,
    pub config: DatabaseConfig,
    name: String,
}

/// The server tests run against: `TEST_DATABASE_URL`, or the machine's PostgreSQL as
/// `postgres` on 127.0.0.1.
pub fn admin_options() -> PgConnectOptions {
    let url =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    PgConnectOptions::from_str(&url).expect("TEST_DATABASE_URL is a postgres URL")
}

impl TestDb {
    /// The database as `DB_*` variables, for a service started as a process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let admin = admin_options();
        vec![
            ("DB_HOST", admin.get_host().to_owned()),
            ("DB_PORT", admin.get_port().to_string()),
            ("DB_USER", admin.get_username().to_owned()),
            ("DB_NAME", self.name.clone()),
        ]
    }

    /// Creates `erc8004_test_<random>` from the template of the current migrations.
    pub async fn new() -> Self {
        let admin = admin_options();
        let template = template_name();
        let name = format!("{TEST_DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin).await.expect("connect to the test PostgreSQL");
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(TEMPLATE_LOCK)
            .execute(&mut conn)
            .await
            .expect("take the template lock");
        ensure_template(&mut conn, &admin, &template).await;
        exec(&mut conn, &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")).await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(TEMPLATE_LOCK)
            .execute(&mut conn)
            .await
            .expect("release the template lock");
        conn.close().await.ok();

        let config = DatabaseConfig::new(admin.database(&name));
        let pool = shared::db::connect(&config).await.expect("connect to the test database");
        Self { pool, config, name }
    }

    /// A database with no schema at all (for testing the migrations themselves).
    pub async fn empty() -> Self {
        let admin = admin_options();
        let name = format!("{TEST_DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin).await.expect("connect to the test PostgreSQL");
        exec(&mut conn, &format!("CREATE DATABASE \"{name}\"")).await;
        conn.close().await.ok();
        let config = DatabaseConfig::new(admin.database(&name));
        let pool = shared::db::connect(&config).await.expect("connect to the test database");
        Self { pool, config, name }
    }

    /// Every row of every table of the schema as text, for searching what is stored anywhere.
    pub async fn dump(&self) -> String {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .expect("list the tables");
        let mut text = String::new();
        for table in tables {
            let sql = format!("SELECT COALESCE(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
            let rows: String =
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await.expect("read a table");
            text.push_str(&format!("== {table}\n{rows}\n"));
        }
        text
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropping needs async I/O; do it on a runtime of its own so it works from any test.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect_with(&admin_options()).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.ok();
                        conn.close().await.ok();
                    }
                });
            }
        });
        dropper.join().ok();
    }
}

/// The template's name changes with the migrations, so an edited migration never meets a
/// stale template.
fn template_name() -> String {
    // FNV-1a over every migration's version and checksum.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in MIGRATOR.iter() {
        for byte in migration.version.to_le_bytes().iter().chain(migration.checksum.iter()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{TEMPLATE_PREFIX}{hash:016x}")
}

async fn ensure_template(conn: &mut PgConnection, admin: &PgConnectOptions, template: &str) {
    let ready: Option<bool> = sqlx::query_scalar("SELECT datistemplate FROM pg_database WHERE datname = $1")
        .bind(template)
        .fetch_optional(&mut *conn)
        .await
        .expect("look up the template database");
    match ready {
        Some(true) => return,
        // Left half-built by a killed run.
        Some(false) => exec(conn, &format!("DROP DATABASE \"{template}\" WITH (FORCE)")).await,
        None => {}
    }
    // Templates of earlier migration sets are of no further use.
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1 AND datname <> $2")
            .bind(format!("{TEMPLATE_PREFIX}%"))
            .bind(template)
            .fetch_all(&mut *conn)
            .await
            .expect("list template databases");
    for old in stale {
        exec(conn, &format!("ALTER DATABASE \"{old}\" WITH IS_TEMPLATE false")).await;
        exec(conn, &format!("DROP DATABASE \"{old}\" WITH (FORCE)")).await;
    }
    exec(conn, &format!("CREATE DATABASE \"{template}\"")).await;
    let mut template_conn =
        PgConnection::connect_with(&admin.clone().database(template)).await.expect("connect to the template database");
    MIGRATOR.run(&mut template_conn).await.expect("migrate the template database");
    template_conn.close().await.expect("disconnect from the template database");
    exec(conn, &format!("ALTER DATABASE \"{template}\" WITH IS_TEMPLATE true")).await;
}

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(conn).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// The write transactions open on the server, oldest first: a diagnosis for tests that time
/// out waiting for rows to settle.
pub async fn open_transactions() -> String {
    let Ok(mut conn) = PgConnection::connect_with(&admin_options()).await else {
        return "(the server cannot be reached)".to_owned();
    };
    let rows: Result<Vec<(String, String, String, String)>, _> = sqlx::query_as(
        "SELECT COALESCE(datname, ''), COALESCE(state, ''), (now() - xact_start)::text, left(COALESCE(query, ''), 120)
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY xact_start",
    )
    .fetch_all(&mut conn)
    .await;
    match rows {
        Ok(rows) if rows.is_empty() => "none".to_owned(),
        Ok(rows) => rows.iter().map(|(db, state, age, query)| format!("[{db} {state} for {age}: {query}]")).collect(),
        Err(err) => format!("(cannot list them: {err})"),
    }
}
