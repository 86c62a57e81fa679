//! Seals every action's secrets anew under the current `SECRETS_KEY`: the middle step of a
//! key rotation (README, "Secrets at rest"). Reads the database settings and the keys as the
//! gateway does; prints how many actions it sealed anew and how many are left under another
//! key (none once it succeeds).

use std::process::ExitCode;

use shared::config::{DatabaseConfig, Problems};
use shared::secrets::Keyring;
use shared::store::triggers::{self, Reseal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let parsed = shared::startup::configure("reseal-secrets", |env| {
        let mut problems = Problems::default();
        let database = DatabaseConfig::from_env(env, &mut problems);
        let keyring = Keyring::from_env(env, &mut problems);
        problems.finish((database, keyring))
    });
    let Ok((database, keyring)) = parsed else {
        return ExitCode::FAILURE;
    };
    match reseal(&database, &keyring).await {
        Ok((sealed, left)) => {
            println!("sealed anew: {sealed} action(s); left under another key: {left}");
            if left == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(err) => {
            eprintln!("reseal-secrets: {}", shared::startup::error_chain(&*err));
            ExitCode::FAILURE
        }
    }
}

async fn reseal(database: &DatabaseConfig, keyring: &Keyring) -> Result<(usize, i64), Box<dyn std::error::Error>> {
    let pool = shared::db::connect_and_migrate(database).await?;
    let mut conn = pool.acquire().await?;
    let sealed = triggers::reseal(&mut conn, keyring, Reseal::NotCurrent).await?;
    let left = triggers::count_not_under(&mut conn, keyring).await?;
    Ok((sealed, left))
}
