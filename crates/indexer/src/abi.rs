//! The registry events as Solidity declares them (SPEC 1.1): the final interface and every
//! older layout still found in testnet logs. Decoding goes by topic0, so each layout is
//! recognised wherever it was emitted.
//!
//! A `string` is decoded lossily by the ABI decoder, which would lose the bytes a hostile
//! contract emitted. Each layout with text therefore has a twin in [`raw`] that declares the
//! same arguments with `bytes` in place of every non-indexed `string` (the two encode
//! identically); the twin decodes the log, and the declaration here names its topic0.

#![allow(missing_docs)]

/// ERC-8004 v1.0, final interface.
pub mod current {
    alloy::sol! {
        event Registered(uint256 indexed agentId, string agentURI, address indexed owner);
        event MetadataSet(uint256 indexed agentId, string indexed indexedMetadataKey, string metadataKey, bytes metadataValue);
        event URIUpdated(uint256 indexed agentId, string newURI, address indexed updatedBy);
        event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
        event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, int128 value, uint8 valueDecimals, string indexed indexedTag1, string tag1, string tag2, string endpoint, string feedbackURI, bytes32 feedbackHash);
        event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);
        event ResponseAppended(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, address indexed responder, string responseURI, bytes32 responseHash);
        event ValidationRequest(address indexed validatorAddress, uint256 indexed agentId, string requestURI, bytes32 indexed requestHash);
        event ValidationResponse(address indexed validatorAddress, uint256 indexed agentId, bytes32 indexed requestHash, uint8 response, string responseURI, bytes32 responseHash, string tag);
    }
}

/// October 2025 (v0.4).
pub mod v04 {
    alloy::sol! {
        event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint8 score, bytes32 indexed tag1, bytes32 tag2, string fileuri, bytes32 filehash);
        event ValidationResponse(address indexed validatorAddress, uint256 indexed agentId, bytes32 indexed requestHash, uint8 response, string responseUri, bytes32 responseHash, bytes32 tag);
        event UriUpdated(uint256 indexed agentId, string newUri, address indexed updatedBy);
    }
}

/// January 2026 interim, with only the hash of tag1 in the logs.
pub mod interim_hashed_tag {
    alloy::sol! {
        event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, uint8 score, string indexed tag1, string tag2, string endpoint, string feedbackURI, bytes32 feedbackHash);
    }
}

/// January 2026 interim, with the text of tag1 beside its hash.
pub mod interim_text_tag {
    alloy::sol! {
        event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, uint8 score, string indexed indexedTag1, string tag1, string tag2, string endpoint, string feedbackURI, bytes32 feedbackHash);
    }
}

/// The layouts above with their text read as bytes; only their data layout is used.
pub mod raw {
    pub mod current {
        alloy::sol! {
            event Registered(uint256 indexed agentId, bytes agentURI, address indexed owner);
            event MetadataSet(uint256 indexed agentId, string indexed indexedMetadataKey, bytes metadataKey, bytes metadataValue);
            event URIUpdated(uint256 indexed agentId, bytes newURI, address indexed updatedBy);
            event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, int128 value, uint8 valueDecimals, string indexed indexedTag1, bytes tag1, bytes tag2, bytes endpoint, bytes feedbackURI, bytes32 feedbackHash);
            event ResponseAppended(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, address indexed responder, bytes responseURI, bytes32 responseHash);
            event ValidationRequest(address indexed validatorAddress, uint256 indexed agentId, bytes requestURI, bytes32 indexed requestHash);
            event ValidationResponse(address indexed validatorAddress, uint256 indexed agentId, bytes32 indexed requestHash, uint8 response, bytes responseURI, bytes32 responseHash, bytes tag);
        }
    }

    pub mod v04 {
        alloy::sol! {
            event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint8 score, bytes32 indexed tag1, bytes32 tag2, bytes fileuri, bytes32 filehash);
            event ValidationResponse(address indexed validatorAddress, uint256 indexed agentId, bytes32 indexed requestHash, uint8 response, bytes responseUri, bytes32 responseHash, bytes32 tag);
            event UriUpdated(uint256 indexed agentId, bytes newUri, address indexed updatedBy);
        }
    }

    pub mod interim_hashed_tag {
        alloy::sol! {
            event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, uint8 score, string indexed tag1, bytes tag2, bytes endpoint, bytes feedbackURI, bytes32 feedbackHash);
        }
    }

    pub mod interim_text_tag {
        alloy::sol! {
            event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, uint8 score, string indexed indexedTag1, bytes tag1, bytes tag2, bytes endpoint, bytes feedbackURI, bytes32 feedbackHash);
        }
    }
}

/// Events the registry contracts emit that the product does not use: ERC-4906 metadata
/// updates (the official Identity registry emits one on every URI change), ERC-721
/// approvals, and the proxies' upgrade, initialization and ownership events. They are
/// counted, not reported one by one.
pub mod unused {
    alloy::sol! {
        event MetadataUpdate(uint256 tokenId);
        event BatchMetadataUpdate(uint256 fromTokenId, uint256 toTokenId);
        event Approval(address indexed owner, address indexed approved, uint256 indexed tokenId);
        event ApprovalForAll(address indexed owner, address indexed operator, bool approved);
        event Upgraded(address indexed implementation);
        event AdminChanged(address previousAdmin, address newAdmin);
        event BeaconUpgraded(address indexed beacon);
        event Initialized(uint64 version);
        event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    }

    /// Older proxies initialize with a `uint8` version.
    pub mod v4 {
        alloy::sol! {
            event Initialized(uint8 version);
        }
    }
}
