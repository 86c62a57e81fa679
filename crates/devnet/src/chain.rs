//! A local EVM chain: `anvil` (from the npm package `@foundry-rs/anvil`, installed by
//! `scripts/chain-tools.sh`), the project's ERC-8004 registry contracts deployed on it, and
//! calls that emit each event. Tests and `make run` both use it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall;
use tokio::process::{Child, Command};

alloy::sol! {
    interface IdentityRegistry {
        function register(string agentURI) external returns (uint256 agentId);
        function setMetadata(uint256 agentId, string key, bytes value) external;
        function setAgentURI(uint256 agentId, string newURI) external;
        function transferFrom(address from, address to, uint256 agentId) external;
        function approve(address approved, uint256 agentId) external;
    }
    interface ReputationRegistry {
        function giveFeedback(uint256 agentId, int128 value, uint8 valueDecimals, string tag1, string tag2, string endpoint, string feedbackURI, bytes32 feedbackHash) external;
        function giveFeedbackBatch(uint256 firstAgentId, uint256 agents, uint256 count, string tag1) external;
        function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external;
        function appendResponse(uint256 agentId, address clientAddress, uint64 feedbackIndex, string responseURI, bytes32 responseHash) external;
    }
    interface ValidationRegistry {
        function validationRequest(address validatorAddress, uint256 agentId, string requestURI, bytes32 requestHash) external;
        function validationResponse(bytes32 requestHash, uint8 response, string responseURI, bytes32 responseHash, string tag) external;
    }
    interface LegacyFeedbackV04 {
        function feedback(uint256 agentId, uint8 score, bytes32 tag1, bytes32 tag2, string fileuri, bytes32 filehash) external;
        function validationResponse(address validator, uint256 agentId, bytes32 requestHash, uint8 response, string uri, bytes32 responseHash, bytes32 tag) external;
        function uriUpdated(uint256 agentId, string newUri) external;
    }
    interface LogEmitter {
        function emitLog(bytes32[] topics, bytes data) external;
    }
    interface LegacyFeedbackInterim {
        function feedback(uint256 agentId, uint64 feedbackIndex, uint8 score, string tag1, string tag2, string endpoint, string feedbackURI, bytes32 feedbackHash) external;
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The anvil binary: `ANVIL_BIN`, or the one `scripts/chain-tools.sh` installs. The npm
/// package's own `bin/anvil` is a Node.js launcher that would outlive a kill of itself
/// without its child; the platform package's binary is run directly.
fn anvil_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ANVIL_BIN") {
        return PathBuf::from(bin);
    }
    let packages = workspace_root().join("tools/chain/node_modules/@foundry-rs");
    std::fs::read_dir(&packages)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("anvil-"))
        .map(|entry| entry.path().join("bin/anvil"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| workspace_root().join("tools/chain/node_modules/.bin/anvil"))
}

/// The creation bytecode of one of the project's contracts, compiled by
/// `scripts/chain-tools.sh` into `contracts/out`.
pub fn bytecode(contract: &str) -> Bytes {
    let path = workspace_root().join("contracts/out").join(format!("{contract}.bin"));
    let hex = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing ({e}): run scripts/chain-tools.sh (make test does)", path.display()));
    hex.trim().parse().expect("hex bytecode")
}

/// A running anvil, killed when dropped.
pub struct Anvil {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Anvil {
    /// Starts anvil on a free port (chain id 31337, blocks mined per transaction).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts anvil on a free port with extra command-line arguments.
    pub async fn start_with(args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        Self::start_at(port, args).await
    }

    /// Starts anvil on `port`.
    pub async fn start_at(port: u16, args: &[&str]) -> Self {
        let mut anvil = Self { port, child: None, extra: args.iter().map(|a| (*a).to_owned()).collect() };
        anvil.spawn().await;
        anvil
    }

    async fn spawn(&mut self) {
        let child = Command::new(anvil_bin())
            .args(["--port", &self.port.to_string(), "--host", "127.0.0.1", "--silent"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}): run scripts/chain-tools.sh", anvil_bin().display()));
        self.child = Some(child);
        let provider = self.provider();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while provider.get_block_number().await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "anvil did not start on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn provider(&self) -> RootProvider {
        let _ = rustls::crypto::ring::default_provider().install_default();
        RootProvider::new_http(self.url().parse().expect("url"))
    }
}

/// The three registries (and the contracts emitting older layouts) deployed on an anvil.
pub struct Registries {
    pub provider: RootProvider,
    /// The first of anvil's unlocked accounts: it deploys and sends everything.
    pub account: Address,
    pub identity: Address,
    pub reputation: Address,
    pub validation: Address,
}

impl Registries {
    pub async fn deploy(anvil: &Anvil) -> Self {
        let provider = anvil.provider();
        let account = provider.get_accounts().await.expect("accounts")[0];
        let mut registries =
            Self { provider, account, identity: Address::ZERO, reputation: Address::ZERO, validation: Address::ZERO };
        registries.identity = registries.deploy_contract("IdentityRegistry").await;
        registries.reputation = registries.deploy_contract("ReputationRegistry").await;
        registries.validation = registries.deploy_contract("ValidationRegistry").await;
        registries
    }

    /// Deploys one of the project's contracts; its address.
    pub async fn deploy_contract(&self, contract: &str) -> Address {
        let request = TransactionRequest::default().from(self.account).with_deploy_code(bytecode(contract));
        let receipt = self.send(request).await;
        receipt.contract_address.expect("a deployment has an address")
    }

    async fn send(&self, request: TransactionRequest) -> TransactionReceipt {
        let pending = self.provider.send_transaction(request).await.expect("send transaction");
        let receipt = pending.get_receipt().await.expect("receipt");
        assert!(receipt.status(), "the transaction reverted: {receipt:?}");
        receipt
    }

    /// Submits `call` to `to` from the deploying account without waiting for its receipt
    /// (anvil mines it at once); its transaction hash.
    pub async fn submit(&self, to: Address, call: impl SolCall) -> B256 {
        let request = TransactionRequest::default().from(self.account).to(to).with_input(call.abi_encode());
        *self.provider.send_transaction(request).await.expect("send transaction").tx_hash()
    }

    /// Sends `call` to `to` from the deploying account and waits for it to be mined.
    pub async fn call(&self, to: Address, call: impl SolCall) -> TransactionReceipt {
        self.call_from(self.account, to, call).await
    }

    /// Sends `call` to `to` from `from` (one of anvil's unlocked accounts).
    pub async fn call_from(&self, from: Address, to: Address, call: impl SolCall) -> TransactionReceipt {
        let request = TransactionRequest::default().from(from).to(to).with_input(call.abi_encode());
        self.send(request).await
    }

    pub async fn accounts(&self) -> Vec<Address> {
        self.provider.get_accounts().await.expect("accounts")
    }

    pub async fn head(&self) -> u64 {
        self.provider.get_block_number().await.expect("block number")
    }

    /// Mines `blocks` empty blocks.
    pub async fn mine(&self, blocks: u64) {
        let _: serde_json::Value =
            self.provider.raw_request("anvil_mine".into(), (U256::from(blocks),)).await.expect("anvil_mine");
    }

    /// Saves the chain's state; [`Registries::revert`] goes back to it (dropping the blocks
    /// mined since, as a reorg does).
    pub async fn snapshot(&self) -> U256 {
        self.provider.raw_request("evm_snapshot".into(), ()).await.expect("evm_snapshot")
    }

    pub async fn revert(&self, snapshot: U256) {
        let reverted: bool = self.provider.raw_request("evm_revert".into(), (snapshot,)).await.expect("evm_revert");
        assert!(reverted, "evm_revert refused the snapshot");
    }

    /// The block hash of `number` on the chain now.
    pub async fn block_hash(&self, number: u64) -> B256 {
        self.provider.get_block_by_number(number.into()).await.expect("block").expect("the block exists").header.hash
    }
}
