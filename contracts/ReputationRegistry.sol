// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// A minimal ERC-8004 Reputation Registry for tests and the devnet. Feedback indexes are
/// 1-based per (agent, client). Agents are not checked against the Identity Registry, so
/// tests can use any agent id.
contract ReputationRegistry {
    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        int128 value,
        uint8 valueDecimals,
        string indexed indexedTag1,
        string tag1,
        string tag2,
        string endpoint,
        string feedbackURI,
        bytes32 feedbackHash
    );
    event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);
    event ResponseAppended(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        address indexed responder,
        string responseURI,
        bytes32 responseHash
    );

    mapping(uint256 => mapping(address => uint64)) public lastIndex;

    function giveFeedback(
        uint256 agentId,
        int128 value,
        uint8 valueDecimals,
        string memory tag1,
        string memory tag2,
        string memory endpoint,
        string memory feedbackURI,
        bytes32 feedbackHash
    ) public {
        require(valueDecimals <= 18, "too many decimals");
        uint64 index = ++lastIndex[agentId][msg.sender];
        emit NewFeedback(agentId, msg.sender, index, value, valueDecimals, tag1, tag1, tag2, endpoint, feedbackURI, feedbackHash);
    }

    /// `count` feedbacks in one transaction, values cycling through 0..99 (bulk test data).
    function giveFeedbackBatch(uint256 firstAgentId, uint256 agents, uint256 count, string calldata tag1) external {
        for (uint256 i = 0; i < count; i++) {
            giveFeedback(firstAgentId + (i % agents), int128(int256(i % 100)), 0, tag1, "", "", "", bytes32(i));
        }
    }

    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        require(feedbackIndex > 0 && feedbackIndex <= lastIndex[agentId][msg.sender], "no such feedback");
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    function appendResponse(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        string calldata responseURI,
        bytes32 responseHash
    ) external {
        emit ResponseAppended(agentId, clientAddress, feedbackIndex, msg.sender, responseURI, responseHash);
    }
}
