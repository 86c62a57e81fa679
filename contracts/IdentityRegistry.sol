// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// A minimal ERC-8004 Identity Registry for tests and the devnet: agents are ERC-721-style
/// tokens numbered from 0, with a URI and metadata. It emits exactly the events of the
/// final interface.
contract IdentityRegistry {
    event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
    event MetadataSet(uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue);
    event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);
    event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
    // ERC-721's, not a registry event of SPEC 1.1: the indexer counts and skips it.
    event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);

    uint256 public nextAgentId;
    mapping(uint256 => address) public ownerOf;
    mapping(uint256 => string) public tokenURI;

    function register(string calldata agentURI) external returns (uint256 agentId) {
        agentId = nextAgentId++;
        ownerOf[agentId] = msg.sender;
        tokenURI[agentId] = agentURI;
        emit Transfer(address(0), msg.sender, agentId);
        emit Registered(agentId, agentURI, msg.sender);
    }

    function setMetadata(uint256 agentId, string calldata key, bytes calldata value) external {
        require(ownerOf[agentId] == msg.sender, "not the owner");
        emit MetadataSet(agentId, key, key, value);
    }

    function setAgentURI(uint256 agentId, string calldata newURI) external {
        require(ownerOf[agentId] == msg.sender, "not the owner");
        tokenURI[agentId] = newURI;
        emit URIUpdated(agentId, newURI, msg.sender);
    }

    function approve(address approved, uint256 agentId) external {
        require(ownerOf[agentId] == msg.sender, "not the owner");
        emit Approval(msg.sender, approved, agentId);
    }

    function transferFrom(address from, address to, uint256 agentId) external {
        require(ownerOf[agentId] == from && from == msg.sender, "not the owner");
        ownerOf[agentId] = to;
        emit Transfer(from, to, agentId);
    }
}
