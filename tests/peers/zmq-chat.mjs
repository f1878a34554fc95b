// The chapter's peer-to-peer chat server over ZeroMQ PUB/SUB, written anew
// for topo's wire-compatibility tests:
//
//   node zmq-chat.mjs --http 8080 --pub 5000 --sub 5001 --sub 5002
//
// Wire format (the chapter's): one frame per message, `chat <text>`. The PUB
// socket binds 127.0.0.1:<pub>; the SUB socket connects to 127.0.0.1:<sub>
// for every --sub and subscribes to the prefix `chat`. A message from a
// local client goes to every local client first, then out on PUB. A frame
// from another node is delivered to the local clients without its topic and
// the first space; the whole rest is the text (the chapter's receiver kept
// only the first word, a bug this peer does not reproduce).
import { Publisher, Subscriber } from 'zeromq';
import { parseFlags, port, fail } from './args.mjs';
import { chatServer, ready } from './http.mjs';

const TOPIC = 'chat';

const flags = parseFlags(process.argv.slice(2), ['http', 'pub'], ['sub']);
if (flags.positional.length > 0) fail(`unexpected argument ${flags.positional[0]}`);
if (flags.http === undefined || flags.pub === undefined) fail('--http and --pub are required');
const httpPort = port(flags.http, '--http');
const pubPort = port(flags.pub, '--pub');
const subPorts = flags.sub.map((p) => port(p, '--sub'));

const pub = new Publisher();
const sub = new Subscriber();

// zeromq 6 allows one send in flight per socket: sends wait their turn.
let sending = Promise.resolve();
function publish(text) {
  sending = sending.then(() => pub.send(`${TOPIC} ${text}`)).catch((e) => {
    process.stderr.write(`peer: publish failed: ${e.message}\n`);
  });
}

const chat = chatServer((text) => {
  chat.broadcast(text);
  publish(text);
});

await pub.bind(`tcp://127.0.0.1:${pubPort}`);
for (const p of subPorts) sub.connect(`tcp://127.0.0.1:${p}`);
sub.subscribe(TOPIC);
await chat.listen(httpPort);
ready(httpPort);

for await (const [frame] of sub) {
  const text = frame.toString();
  const space = text.indexOf(' ');
  // A frame without the separator carries no message (only a topic).
  if (space >= 0) chat.broadcast(text.slice(space + 1));
}
