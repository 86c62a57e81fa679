// Compiles every contracts/*.sol with the pinned solc package and writes, per contract,
// contracts/out/<Name>.bin (creation bytecode, hex) and contracts/out/<Name>.abi.json.
import { readFileSync, readdirSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const solc = require("solc");

const root = join(import.meta.dirname, "..", "..");
const sources = join(root, "contracts");
const out = join(sources, "out");

const input = {
  language: "Solidity",
  sources: Object.fromEntries(
    readdirSync(sources)
      .filter((name) => name.endsWith(".sol"))
      .map((name) => [name, { content: readFileSync(join(sources, name), "utf8") }]),
  ),
  settings: {
    evmVersion: "cancun",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);

mkdirSync(out, { recursive: true });
let count = 0;
for (const file of Object.values(output.contracts)) {
  for (const [name, contract] of Object.entries(file)) {
    writeFileSync(join(out, `${name}.bin`), contract.evm.bytecode.object);
    writeFileSync(join(out, `${name}.abi.json`), JSON.stringify(contract.abi, null, 2));
    count++;
  }
}
console.log(`compiled ${count} contracts with solc ${solc.version()} into contracts/out`);
