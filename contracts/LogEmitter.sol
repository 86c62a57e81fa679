// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Emits any log: the topics and data given, as they are. A registry address can emit
/// anything a contract can; tests stand this contract in for one to send the indexer what
/// the project's registries never would (text that is not UTF-8, data that does not decode).
contract LogEmitter {
    function emitLog(bytes32[] calldata topics, bytes calldata data) external {
        bytes memory body = data;
        uint256 n = topics.length;
        require(n <= 4, "at most four topics");
        bytes32 t0 = n > 0 ? topics[0] : bytes32(0);
        bytes32 t1 = n > 1 ? topics[1] : bytes32(0);
        bytes32 t2 = n > 2 ? topics[2] : bytes32(0);
        bytes32 t3 = n > 3 ? topics[3] : bytes32(0);
        assembly {
            let start := add(body, 32)
            let size := mload(body)
            switch n
            case 0 { log0(start, size) }
            case 1 { log1(start, size, t0) }
            case 2 { log2(start, size, t0, t1) }
            case 3 { log3(start, size, t0, t1, t2) }
            default { log4(start, size, t0, t1, t2, t3) }
        }
    }
}
