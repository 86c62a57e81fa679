//! Applies the schema migrations to the configured database and says what it did.

use std::process::ExitCode;

use shared::config::{DatabaseConfig, Env, Problems};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let env = match Env::load() {
        Ok(env) => env,
        Err(err) => {
            eprintln!("migrate: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut problems = Problems::default();
    let database = DatabaseConfig::from_env(&env, &mut problems);
    let database = match problems.finish(database) {
        Ok(database) => database,
        Err(err) => {
            eprintln!("migrate: {err}");
            return ExitCode::FAILURE;
        }
    };
    match shared::db::connect_and_migrate(&database).await {
        Ok(pool) => {
            let applied: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(&pool).await;
            let applied = applied.map(|n| n.to_string()).unwrap_or_else(|_| "?".to_owned());
            println!("migrate: {} is up to date ({applied} migrations applied)", database.describe());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("migrate: {}", shared::startup::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}
