//! Demo traffic: agents registering, clients giving feedback with varied values and tags
//! (now and then a bad one, so that triggers on low values or falling averages fire), and
//! validations, one transaction at a time.

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use rand::Rng;

use crate::chain::{IdentityRegistry, Registries, ReputationRegistry, ValidationRegistry};

const TAGS: &[&str] = &["uptime", "latency", "accuracy"];

/// Sends one demo transaction every `interval`, for ever.
pub async fn run(registries: &Registries, interval: Duration) {
    let accounts = registries.accounts().await;
    let mut agents: u64 = 0;
    for round in 0u64.. {
        let mut rng = rand::thread_rng();
        let client = accounts[1 + (round as usize % (accounts.len() - 1))];
        let sent = if agents < 3 || round % 20 == 0 {
            agents += 1;
            let uri = format!("ipfs://demo-agent-{agents}");
            registries.call(registries.identity, IdentityRegistry::registerCall { agentURI: uri }).await;
            format!("registered agent {}", agents - 1)
        } else if round % 7 == 0 {
            validation(registries, client, rng.gen_range(0..agents), rng.gen_range(40..=100), round).await
        } else {
            let agent = rng.gen_range(0..agents);
            // Mostly good, sometimes poor: a falling average shows up within a few rounds.
            let value: i128 =
                if rng.gen_bool(0.2) { rng.gen_range(1_000..5_000) } else { rng.gen_range(9_000..10_000) };
            let tag = TAGS[rng.gen_range(0..TAGS.len())];
            let call = ReputationRegistry::giveFeedbackCall {
                agentId: U256::from(agent),
                value,
                valueDecimals: 2,
                tag1: tag.into(),
                tag2: String::new(),
                endpoint: format!("https://agent-{agent}.example/mcp"),
                feedbackURI: String::new(),
                feedbackHash: B256::ZERO,
            };
            registries.call_from(client, registries.reputation, call).await;
            format!("feedback {}.{:02} ({tag}) for agent {agent}", value / 100, value % 100)
        };
        tracing::info!(round, "{sent}");
        tokio::time::sleep(interval).await;
    }
}

async fn validation(registries: &Registries, validator: Address, agent: u64, response: u8, round: u64) -> String {
    let hash = B256::from(U256::from(round));
    let request = ValidationRegistry::validationRequestCall {
        validatorAddress: validator,
        agentId: U256::from(agent),
        requestURI: format!("ipfs://validation-{round}"),
        requestHash: hash,
    };
    registries.call(registries.validation, request).await;
    let answer = ValidationRegistry::validationResponseCall {
        requestHash: hash,
        response,
        responseURI: String::new(),
        responseHash: B256::ZERO,
        tag: "demo".into(),
    };
    registries.call_from(validator, registries.validation, answer).await;
    format!("validation of agent {agent}: {response}")
}
