use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().copied())
}

#[test]
fn a_known_chain_takes_the_official_registries() {
    let toml = r#"
        [[chains]]
        chain_id = 11155111
        rpc_urls = ["https://rpc.one.example", "https://rpc.two.example"]
    "#;
    let mut problems = Problems::default();
    let chains = chains_from_toml(toml, "chains.toml", &mut problems);
    assert!(problems.is_empty());
    let sepolia = &chains[0];
    assert_eq!(sepolia.name, "Ethereum Sepolia");
    assert_eq!(sepolia.rpc_urls.len(), 2);
    assert_eq!(sepolia.registries, official_registries(11155111).unwrap());
    assert!(sepolia.registries.validation.is_some(), "Sepolia has the Validation registry");
    assert_eq!(sepolia.confirmations, DEFAULT_CONFIRMATIONS);
    let base = official_registries(8453).unwrap();
    assert_eq!(base.identity.to_string(), MAINNET_IDENTITY.to_lowercase());
    assert_eq!(base.validation, None);
}

#[test]
fn every_fault_of_the_file_is_reported_and_no_url_is_shown() {
    let toml = r#"
        [[chains]]
        chain_id = 31337
        rpc_urls = ["ftp://secret-key@rpc.example"]
        max_block_range = 0

        [[chains]]
        chain_id = 84532
        rpc_urls = []
        identity = "0x1234"
    "#;
    let mut problems = Problems::default();
    let chains = chains_from_toml(toml, "chains.toml", &mut problems);
    assert!(chains.is_empty());
    let message = problems.finish(()).unwrap_err().to_string();
    for expected in [
        "chains[0]: RPC URL number 1 is not an http(s) URL",
        "chains[0]: chain 31337 has no official ERC-8004 deployment",
        "chains[0]: max_block_range must be between 1 and 1000000",
        "chains[1]: needs at least one RPC URL",
        "chains[1]: identity is not a 0x address",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    assert!(!message.contains("secret-key"), "{message}");
}

#[test]
fn unknown_keys_and_bad_toml_are_refused() {
    let mut problems = Problems::default();
    chains_from_toml("[[chains]]\nchain_id = 1\nrpc_urls = []\nrpc = 'x'", "f.toml", &mut problems);
    chains_from_toml("chains = [", "g.toml", &mut problems);
    let message = problems.finish(()).unwrap_err().to_string();
    assert!(message.contains("f.toml") && message.contains("g.toml"), "{message}");
}

#[test]
fn one_chain_from_the_environment() {
    let config = IndexerConfig::from_env(&env(&[
        ("CHAIN_ID", "31337"),
        ("CHAIN_RPC_URLS", "http://127.0.0.1:8545, http://127.0.0.1:8546"),
        ("CHAIN_IDENTITY_ADDRESS", "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
        ("CHAIN_REPUTATION_ADDRESS", "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
        ("CHAIN_CONFIRMATIONS", "0"),
        ("INDEXER_CHAINS_FILE", "/nonexistent/chains.toml"),
    ]));
    let message = config.unwrap_err().to_string();
    assert!(message.contains("cannot read /nonexistent/chains.toml"), "{message}");

    let config = IndexerConfig::from_env(&env(&[
        ("CHAIN_ID", "31337"),
        ("CHAIN_RPC_URLS", "http://127.0.0.1:8545, http://127.0.0.1:8546"),
        ("CHAIN_IDENTITY_ADDRESS", "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
        ("CHAIN_REPUTATION_ADDRESS", "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
        ("CHAIN_CONFIRMATIONS", "0"),
    ]))
    .unwrap();
    let chain = &config.chains[0];
    assert_eq!((chain.chain_id.0, chain.confirmations, chain.rpc_urls.len()), (31337, 0, 2));
    assert_eq!(chain.name, "Anvil");

    let bad = IndexerConfig::from_env(&env(&[("CHAIN_ID", "x"), ("CHAIN_START_BLOCK", "-1")])).unwrap_err();
    assert!(bad.to_string().contains("CHAIN_ID"), "{bad}");
}

#[test]
fn the_example_file_is_valid() {
    let mut problems = Problems::default();
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/chains.example.toml"));
    let chains = chains_from_file(path, &mut problems);
    assert!(problems.is_empty(), "{:?}", problems.finish(()));
    assert_eq!(chains.len(), 2);
    assert_eq!(
        chains[1].registries.validation.map(|a| a.to_string()).as_deref(),
        Some("0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0")
    );
}

#[test]
fn a_chain_shown_in_a_log_never_shows_its_rpc_urls() {
    let url = url::Url::parse("https://eth.example/v2/secret-key").unwrap();
    let chain = ChainConfig::local(url, official_registries(11155111).unwrap(), 100);
    let shown = format!("{chain:?}");
    assert!(!shown.contains("secret-key") && shown.contains("1 URL(s)"), "{shown}");
}
