use secrecy::ExposeSecret;

use super::*;

#[test]
fn blank_values_count_as_unset() {
    let env = Env::from_pairs([("A", "  "), ("B", "x")]);
    assert_eq!(env.get("A"), None);
    assert_eq!(env.get("B"), Some("x"));
    assert_eq!(env.string("A", "default"), "default");
}

#[test]
fn parse_failures_are_collected_with_the_offending_value() {
    let env = Env::from_pairs([("PORT", "eighty"), ("N", "12")]);
    let mut problems = Problems::default();
    let port: u16 = env.parsed("PORT", 80, "a port number", &mut problems);
    let n: u32 = env.parsed("N", 1, "a number", &mut problems);
    assert_eq!((port, n), (80, 12));
    let err = problems.finish(()).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.to_string(), "invalid configuration (1 problem):\n  - PORT: must be a port number (got \"eighty\")");
}

#[test]
fn short_secret_is_reported_without_its_value() {
    let env = Env::from_pairs([("TOKEN", "hunter2")]);
    let mut problems = Problems::default();
    let secret = env.required_secret("TOKEN", 32, "a random string", &mut problems);
    assert_eq!(secret.expose_secret(), "");
    let message = problems.finish(()).unwrap_err().to_string();
    assert!(message.contains("TOKEN: must be at least 32 characters"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}
