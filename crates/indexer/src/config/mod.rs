//! Which chains to index and how (SPEC 5): a TOML file (`INDEXER_CHAINS_FILE`, by default
//! `config/chains.toml` when it exists) and/or one chain from the environment (`CHAIN_ID`,
//! `CHAIN_RPC_URLS`, ...). Everything is checked at start and every problem reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shared::config::{ConfigError, DatabaseConfig, Env, Problems};
use shared::domain::{Address, ChainId};
use url::Url;

/// The official deployments (SPEC 1.1): the same addresses on every chain of a kind.
const MAINNET_IDENTITY: &str = "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432";
const MAINNET_REPUTATION: &str = "0x8004BAa17C55a88189AE136b182e5fdA19dE9b63";
const TESTNET_IDENTITY: &str = "0x8004A818BFB912233c491871b3d84c89A494BD9e";
const TESTNET_REPUTATION: &str = "0x8004B663056A597Dffe9eCcC1965A193B7388713";
const SEPOLIA_VALIDATION: &str = "0x8004Cb1BF31DAf7788923b405b754f57acEB4272";

const MAINNETS: &[u64] = &[1, 10, 137, 8453, 42161];
const TESTNETS: &[u64] = &[11155111, 84532];

/// The registry addresses of the official deployment on `chain`, when there is one.
pub fn official_registries(chain: u64) -> Option<Registries> {
    let parse = |a: &str| a.parse::<Address>().ok();
    if MAINNETS.contains(&chain) {
        Some(Registries {
            identity: parse(MAINNET_IDENTITY)?,
            reputation: parse(MAINNET_REPUTATION)?,
            validation: None,
        })
    } else if TESTNETS.contains(&chain) {
        let validation = if chain == 11155111 { parse(SEPOLIA_VALIDATION) } else { None };
        Some(Registries { identity: parse(TESTNET_IDENTITY)?, reputation: parse(TESTNET_REPUTATION)?, validation })
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registries {
    pub identity: Address,
    pub reputation: Address,
    pub validation: Option<Address>,
}

impl Registries {
    pub fn addresses(&self) -> Vec<Address> {
        [Some(self.identity), Some(self.reputation), self.validation].into_iter().flatten().collect()
    }
}

/// One chain to index. Its `Debug` names the RPC URLs by number: a URL may carry an API key.
#[derive(Clone)]
pub struct ChainConfig {
    pub chain_id: ChainId,
    pub name: String,
    /// Tried in order; the next one takes over when one fails.
    pub rpc_urls: Vec<Url>,
    pub registries: Registries,
    /// The first block to read when the chain has no checkpoint yet.
    pub start_block: u64,
    /// How far behind the head to read; 0 follows the head itself (reorgs are then handled
    /// by marking dropped events removed).
    pub confirmations: u64,
    /// Most blocks per `eth_getLogs`; ranges shrink below it when the node refuses them.
    pub max_block_range: u64,
    pub poll_interval: Duration,
}

impl std::fmt::Debug for ChainConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainConfig")
            .field("chain_id", &self.chain_id)
            .field("name", &self.name)
            .field("rpc_urls", &format_args!("{} URL(s), not shown", self.rpc_urls.len()))
            .field("registries", &self.registries)
            .field("start_block", &self.start_block)
            .field("confirmations", &self.confirmations)
            .field("max_block_range", &self.max_block_range)
            .field("poll_interval", &self.poll_interval)
            .finish()
    }
}

impl ChainConfig {
    /// A local chain (anvil, chain id 31337) read from block 0 with no confirmation delay,
    /// polled every 50 ms: what the devnet's tests and benchmarks index.
    pub fn local(rpc_url: Url, registries: Registries, max_block_range: u64) -> Self {
        Self {
            chain_id: ChainId(31337),
            name: "Anvil".into(),
            rpc_urls: vec![rpc_url],
            registries,
            start_block: 0,
            confirmations: 0,
            max_block_range,
            poll_interval: Duration::from_millis(50),
        }
    }
}

/// Everything the indexer reads at start.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    pub database: DatabaseConfig,
    pub chains: Vec<ChainConfig>,
    pub metrics_addr: Option<SocketAddr>,
}

/// A chain as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainEntry {
    chain_id: u64,
    name: Option<String>,
    rpc_urls: Vec<String>,
    identity: Option<String>,
    reputation: Option<String>,
    validation: Option<String>,
    start_block: Option<u64>,
    confirmations: Option<u64>,
    max_block_range: Option<u64>,
    poll_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainsFile {
    #[serde(default)]
    chains: Vec<ChainEntry>,
}

const DEFAULT_CONFIRMATIONS: u64 = 12;
const DEFAULT_MAX_BLOCK_RANGE: u64 = 2_000;
const DEFAULT_POLL_MS: u64 = 4_000;

impl ChainEntry {
    /// Checks the entry; `source` names where it was written, for messages.
    fn check(self, source: &str, problems: &mut Problems) -> Option<ChainConfig> {
        let before = problems.len();
        if self.chain_id == 0 || i64::try_from(self.chain_id).is_err() {
            problems.push(source, format!("chain_id {} is not a valid chain id", self.chain_id));
        }
        let mut rpc_urls = Vec::new();
        if self.rpc_urls.is_empty() {
            problems.push(source, "needs at least one RPC URL");
        }
        for raw in &self.rpc_urls {
            match Url::parse(raw.trim()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => rpc_urls.push(url),
                // The URL may hold an API key: name the chain, never the URL.
                _ => problems.push(source, format!("RPC URL number {} is not an http(s) URL", rpc_urls.len() + 1)),
            }
        }
        let address = |name: &str, value: Option<&String>, problems: &mut Problems| -> Option<Address> {
            let parsed = value.map(|v| v.trim().parse::<Address>());
            match parsed {
                Some(Ok(address)) => Some(address),
                Some(Err(_)) => {
                    problems.push(source, format!("{name} is not a 0x address of 20 bytes"));
                    None
                }
                None => None,
            }
        };
        let official = official_registries(self.chain_id);
        let identity = address("identity", self.identity.as_ref(), problems).or(official.as_ref().map(|o| o.identity));
        let reputation =
            address("reputation", self.reputation.as_ref(), problems).or(official.as_ref().map(|o| o.reputation));
        let validation =
            address("validation", self.validation.as_ref(), problems).or(official.as_ref().and_then(|o| o.validation));
        if identity.is_none() || reputation.is_none() {
            problems.push(
                source,
                format!(
                    "chain {} has no official ERC-8004 deployment: give the identity and reputation addresses",
                    self.chain_id
                ),
            );
        }
        let max_block_range = self.max_block_range.unwrap_or(DEFAULT_MAX_BLOCK_RANGE);
        if max_block_range == 0 || max_block_range > 1_000_000 {
            problems.push(source, "max_block_range must be between 1 and 1000000");
        }
        let poll_ms = self.poll_interval_ms.unwrap_or(DEFAULT_POLL_MS);
        if poll_ms == 0 {
            problems.push(source, "poll_interval_ms must be at least 1");
        }
        if problems.len() > before {
            return None;
        }
        Some(ChainConfig {
            chain_id: ChainId(self.chain_id),
            name: self.name.unwrap_or_else(|| shared::render::chain_name(self.chain_id)),
            rpc_urls,
            registries: Registries { identity: identity?, reputation: reputation?, validation },
            start_block: self.start_block.unwrap_or(0),
            confirmations: self.confirmations.unwrap_or(DEFAULT_CONFIRMATIONS),
            max_block_range,
            poll_interval: Duration::from_millis(poll_ms),
        })
    }
}

/// The chain given by `CHAIN_*` variables, if `CHAIN_ID` is set.
fn chain_from_env(env: &Env, problems: &mut Problems) -> Option<ChainEntry> {
    let raw_id = env.get("CHAIN_ID")?;
    let Ok(chain_id) = raw_id.trim().parse::<u64>() else {
        problems.push("CHAIN_ID", "must be a positive whole number");
        return None;
    };
    let number = |name: &str, problems: &mut Problems| -> Option<u64> {
        let raw = env.get(name)?;
        match raw.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(name, "must be a whole number");
                None
            }
        }
    };
    let rpc_urls = env
        .get("CHAIN_RPC_URLS")
        .map(|urls| urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    Some(ChainEntry {
        chain_id,
        name: env.get("CHAIN_NAME").map(str::to_owned),
        rpc_urls,
        identity: env.get("CHAIN_IDENTITY_ADDRESS").map(str::to_owned),
        reputation: env.get("CHAIN_REPUTATION_ADDRESS").map(str::to_owned),
        validation: env.get("CHAIN_VALIDATION_ADDRESS").map(str::to_owned),
        start_block: number("CHAIN_START_BLOCK", problems),
        confirmations: number("CHAIN_CONFIRMATIONS", problems),
        max_block_range: number("CHAIN_MAX_BLOCK_RANGE", problems),
        poll_interval_ms: number("CHAIN_POLL_INTERVAL_MS", problems),
    })
}

/// Reads and checks the chains of a TOML file.
pub fn chains_from_file(path: &Path, problems: &mut Problems) -> Vec<ChainConfig> {
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            problems.push("INDEXER_CHAINS_FILE", format!("cannot read {name}: {err}"));
            return Vec::new();
        }
    };
    chains_from_toml(&text, &name, problems)
}

/// Reads and checks the chains of a TOML document; `name` says where it came from.
pub fn chains_from_toml(text: &str, name: &str, problems: &mut Problems) -> Vec<ChainConfig> {
    let file: ChainsFile = match toml::from_str(text) {
        Ok(file) => file,
        Err(err) => {
            problems.push(name, format!("not a valid chain list: {}", err.message()));
            return Vec::new();
        }
    };
    file.chains
        .into_iter()
        .enumerate()
        .filter_map(|(i, entry)| entry.check(&format!("{name}: chains[{i}]"), problems))
        .collect()
}

impl IndexerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut problems = Problems::default();
        let file = match env.get("INDEXER_CHAINS_FILE") {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from("config/chains.toml")).filter(|p| p.exists()),
        };
        let mut chains = file.map(|path| chains_from_file(&path, &mut problems)).unwrap_or_default();
        if let Some(entry) = chain_from_env(env, &mut problems)
            && let Some(chain) = entry.check("CHAIN_*", &mut problems)
        {
            // The environment's chain replaces the file's entry for the same id.
            chains.retain(|c| c.chain_id != chain.chain_id);
            chains.push(chain);
        }
        let mut seen = std::collections::HashSet::new();
        for chain in &chains {
            if !seen.insert(chain.chain_id) {
                problems.push("INDEXER_CHAINS_FILE", format!("chain {} is listed twice", chain.chain_id));
            }
        }
        let metrics_addr =
            env.address_or_off("INDEXER_METRICS_ADDR", SocketAddr::from(([0, 0, 0, 0], 9103)), &mut problems);
        let config = Self { database: DatabaseConfig::from_env(env, &mut problems), chains, metrics_addr };
        problems.finish(config)
    }
}

#[cfg(test)]
mod tests;
