// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// A minimal ERC-8004 Validation Registry for tests and the devnet. A response (0..100) may
/// be sent several times for one request.
contract ValidationRegistry {
    event ValidationRequest(address indexed validatorAddress, uint256 indexed agentId, string requestURI, bytes32 indexed requestHash);
    event ValidationResponse(
        address indexed validatorAddress,
        uint256 indexed agentId,
        bytes32 indexed requestHash,
        uint8 response,
        string responseURI,
        bytes32 responseHash,
        string tag
    );

    mapping(bytes32 => address) public validatorOf;
    mapping(bytes32 => uint256) public agentOf;

    function validationRequest(address validatorAddress, uint256 agentId, string calldata requestURI, bytes32 requestHash) external {
        validatorOf[requestHash] = validatorAddress;
        agentOf[requestHash] = agentId;
        emit ValidationRequest(validatorAddress, agentId, requestURI, requestHash);
    }

    function validationResponse(
        bytes32 requestHash,
        uint8 response,
        string calldata responseURI,
        bytes32 responseHash,
        string calldata tag
    ) external {
        require(validatorOf[requestHash] == msg.sender, "not the validator");
        require(response <= 100, "response is 0..100");
        emit ValidationResponse(msg.sender, agentOf[requestHash], requestHash, response, responseURI, responseHash, tag);
    }
}
