// The chapter's first chat server, written anew: one process, every message
// from a client goes to every client of this process, nothing else.
//
//   node single-chat.mjs 8080
//
// Not used by the tests (topo's single node has no wire to be compatible
// with); bench/compare.sh loads it beside topo.
import { parseFlags, port, fail } from './args.mjs';
import { chatServer, ready } from './http.mjs';

const flags = parseFlags(process.argv.slice(2), [], []);
if (flags.positional.length !== 1) fail('usage: single-chat.mjs HTTP_PORT');
const httpPort = port(flags.positional[0], 'HTTP_PORT');

const chat = chatServer((text) => chat.broadcast(text));
await chat.listen(httpPort);
ready(httpPort);
