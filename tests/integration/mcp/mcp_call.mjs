// Drives an MCP server over stdio as an agent's host does: initialize, then one tools/call of the
// `query` tool per SQL text given, in order. Prints each call's JSON-RPC response on a line.
//   node mcp_call.mjs <server entry .js> <database URL> <sql>...
import { spawn } from "node:child_process";
import readline from "node:readline";

const [entry, databaseUrl, ...queries] = process.argv.slice(2);
const server = spawn(process.execPath, [entry, databaseUrl], { stdio: ["pipe", "pipe", "inherit"] });
const pending = new Map();
readline.createInterface({ input: server.stdout }).on("line", (line) => {
  const message = JSON.parse(line);
  if (message.id !== undefined && pending.has(message.id)) {
    pending.get(message.id)(message);
    pending.delete(message.id);
  }
});
let nextId = 1;
function request(method, params) {
  const id = nextId++;
  server.stdin.write(JSON.stringify({ jsonrpc: "2.0", id, method, params }) + "\n");
  return new Promise((resolve) => pending.set(id, resolve));
}

const timeout = setTimeout(() => { console.error("mcp_call: no answer within 60 s"); process.exit(2); }, 60000);
await request("initialize", {
  protocolVersion: "2024-11-05",
  capabilities: {},
  clientInfo: { name: "pgrail-test", version: "1" },
});
server.stdin.write(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }) + "\n");
for (const sql of queries) {
  const response = await request("tools/call", { name: "query", arguments: { sql } });
  console.log(JSON.stringify(response));
}
clearTimeout(timeout);
server.kill();
process.exit(0);
