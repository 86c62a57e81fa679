//! Password hashing (argon2id), off the async threads and a few at a time: each hash is
//! deliberately slow and takes memory, so a burst of sign-ups or logins queues here instead
//! of taking every core and starving the rest of the API.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

/// Hashes computed at once, per process: one per core.
static TURNS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// Hashes being computed now, and the most ever computed at once.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);
/// Passwords checked with argon2 so far.
static CHECKED: AtomicUsize = AtomicUsize::new(0);

/// A hash of a random password, made once: what an unknown email is checked against, so a
/// login costs the same whether or not the account exists.
static DECOY: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    let password = uuid::Uuid::new_v4().to_string();
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
});

/// Runs `work` on the blocking pool when its turn comes.
async fn in_turn<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let turn = TURNS.acquire().await.map_err(|e| e.to_string())?;
    // The turn goes with the work: a request dropped meanwhile (a client gone) does not
    // give it back before the hash is done.
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST.fetch_max(now, Ordering::SeqCst);
        let result = work();
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        result
    })
    .await
    .map_err(|e| e.to_string())
}

/// An argon2id hash of `password` (PHC string).
pub async fn hash_password(password: String) -> Result<String, String> {
    in_turn(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
    })
    .await?
}

/// Whether `password` matches the stored hash (compared in constant time by argon2). Without
/// a hash (no such account) the password is checked against a decoy all the same, and the
/// answer is no: the work, and so the time, does not tell whether the account exists.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let known = hash.is_some();
    let checked = in_turn(move || {
        let hash = hash.unwrap_or_else(|| DECOY.clone());
        let parsed = PasswordHash::new(&hash);
        CHECKED.fetch_add(1, Ordering::SeqCst);
        parsed.is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .unwrap_or(false);
    known && checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn most_at_once() -> usize {
        MOST.load(Ordering::SeqCst)
    }

    fn turns() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    #[tokio::test]
    async fn hashes_wait_their_turn() {
        let hashes: Vec<_> = (0..8).map(|i| tokio::spawn(hash_password(format!("password {i}")))).collect();
        for hash in hashes {
            assert!(hash.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
        assert!(most_at_once() >= 1);
        assert!(most_at_once() <= turns(), "{} at once, {} turns", most_at_once(), turns());
    }

    #[tokio::test]
    async fn an_unknown_account_is_checked_against_the_decoy_and_refused() {
        let hash = hash_password("correct horse".to_owned()).await.unwrap();
        assert!(verify_password("correct horse".to_owned(), Some(hash.clone())).await);
        assert!(!verify_password("wrong horse".to_owned(), Some(hash)).await);
        // The decoy is a real hash: the check runs it, and the answer is always no.
        assert!(PasswordHash::new(&DECOY).is_ok());
        let before = CHECKED.load(Ordering::SeqCst);
        assert!(!verify_password("correct horse".to_owned(), None).await);
        assert!(CHECKED.load(Ordering::SeqCst) > before, "argon2 ran for the unknown account");
    }
}
