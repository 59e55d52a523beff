// The stock graphql-transport-ws client (npm graphql-ws, from tools/node) as
// tests/notifier/test_graphql_ws.py drives it: one JSON object a line each
// way, commands on stdin, what the client sees on stdout.
//
// Usage: node graphql_client.mjs <ws url>
//
// Commands:
//   {"op":"connect","client":C,"token":T}     createClient (not lazy, no retries,
//                                              connectionParams {token: T}, or none
//                                              when T is null); prints
//                                              {"event":"connected","client":C,"payload":ack payload}
//   {"op":"subscribe","client":C,"sub":S,"query":Q,"variables":V}
//                                              prints {"event":"next","sub":S,"payload":..}
//                                              per result, then {"event":"error","sub":S,"errors":..}
//                                              or {"event":"complete","sub":S}
//   {"op":"unsubscribe","sub":S}              the client completes S (a complete message);
//                                              prints {"event":"unsubscribed","sub":S}
//                                              (the client then ignores S's messages, so
//                                              what the server sends is printed apart:)
//   {"op":"dispose","client":C}               closes the socket (1000)
//   {"op":"exit"}
// Besides: {"event":"closed","client":C,"code":..,"reason":..} when a socket
// closes, {"event":"ping","client":C} on a server ping (the client pongs), and
// {"event":"wire","client":C,"type":..,"id":S} for each next, error and
// complete message on the wire (operation ids are the subs' names).

import { createRequire } from "node:module";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

// Modules come from tools/node (npm ci --prefix tools/node), relative to this
// file, so a fresh clone finds them wherever it lives.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "tools", "node", "package.json"));
const { createClient } = require("graphql-ws");
const WebSocket = require("ws");

const url = process.argv[2];
const clients = new Map();
const subscriptions = new Map();
// The id of the operation being subscribed: the sub's name, so wire messages
// can be told apart by it.
let subscribing = null;

function print(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function connect({ client: name, token }) {
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: token === null ? undefined : { token },
    onNonLazyError: () => {}, // the close is printed by on.closed
    generateID: () => subscribing,
    on: {
      connected: (_socket, payload) => print({ event: "connected", client: name, payload }),
      closed: (event) =>
        print({ event: "closed", client: name, code: event.code, reason: event.reason }),
      ping: (received) => received && print({ event: "ping", client: name }),
      message: (message) =>
        ["next", "error", "complete"].includes(message.type) &&
        print({ event: "wire", client: name, type: message.type, id: message.id }),
    },
  });
  clients.set(name, client);
}

function subscribe({ client: name, sub, query, variables }) {
  subscribing = sub;
  const dispose = clients.get(name).subscribe(
    { query, variables: variables ?? undefined },
    {
      next: (payload) => print({ event: "next", sub, payload }),
      // GraphQL errors (an error message), or the close event that ended it.
      error: (errors) =>
        print({
          event: "error",
          sub,
          errors: Array.isArray(errors) ? errors : [{ message: String(errors.reason ?? errors) }],
        }),
      complete: () => print({ event: "complete", sub }),
    },
  );
  subscriptions.set(sub, dispose);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  switch (command.op) {
    case "connect":
      connect(command);
      break;
    case "subscribe":
      subscribe(command);
      break;
    case "unsubscribe":
      subscriptions.get(command.sub)();
      print({ event: "unsubscribed", sub: command.sub });
      break;
    case "dispose":
      await clients.get(command.client).dispose();
      break;
    case "exit":
      process.exit(0);
    default:
      print({ event: "unknown_op", op: command.op });
  }
}
