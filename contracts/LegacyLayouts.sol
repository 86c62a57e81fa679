// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Emits the older event layouts still found in testnet logs, so the indexer's decoding of
/// them is tested against real logs.
contract LegacyFeedbackV04 {
    // October 2025 (v0.4).
    event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint8 score, bytes32 indexed tag1, bytes32 tag2, string fileuri, bytes32 filehash);
    event ValidationResponse(address indexed validatorAddress, uint256 indexed agentId, bytes32 indexed requestHash, uint8 response, string responseUri, bytes32 responseHash, bytes32 tag);
    event UriUpdated(uint256 indexed agentId, string newUri, address indexed updatedBy);

    function feedback(uint256 agentId, uint8 score, bytes32 tag1, bytes32 tag2, string calldata fileuri, bytes32 filehash) external {
        emit NewFeedback(agentId, msg.sender, score, tag1, tag2, fileuri, filehash);
    }

    function validationResponse(address validator, uint256 agentId, bytes32 requestHash, uint8 response, string calldata uri, bytes32 responseHash, bytes32 tag) external {
        emit ValidationResponse(validator, agentId, requestHash, response, uri, responseHash, tag);
    }

    function uriUpdated(uint256 agentId, string calldata newUri) external {
        emit UriUpdated(agentId, newUri, msg.sender);
    }
}

/// January 2026 interim: only the hash of tag1 reached the logs.
contract LegacyFeedbackHashedTag {
    event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, uint8 score, string indexed tag1, string tag2, string endpoint, string feedbackURI, bytes32 feedbackHash);

    function feedback(uint256 agentId, uint64 feedbackIndex, uint8 score, string calldata tag1, string calldata tag2, string calldata endpoint, string calldata feedbackURI, bytes32 feedbackHash) external {
        emit NewFeedback(agentId, msg.sender, feedbackIndex, score, tag1, tag2, endpoint, feedbackURI, feedbackHash);
    }
}

/// January 2026 interim with the tag's text beside its hash.
contract LegacyFeedbackTextTag {
    event NewFeedback(uint256 indexed agentId, address indexed clientAddress, uint64 feedbackIndex, uint8 score, string indexed indexedTag1, string tag1, string tag2, string endpoint, string feedbackURI, bytes32 feedbackHash);

    function feedback(uint256 agentId, uint64 feedbackIndex, uint8 score, string calldata tag1, string calldata tag2, string calldata endpoint, string calldata feedbackURI, bytes32 feedbackHash) external {
        emit NewFeedback(agentId, msg.sender, feedbackIndex, score, tag1, tag1, tag2, endpoint, feedbackURI, feedbackHash);
    }
}
