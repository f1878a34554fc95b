// The chapter's chat server scaled out through Redis pub/sub, written anew
// for topo's wire-compatibility tests:
//
//   REDIS_URL=redis://127.0.0.1:6379 node redis-chat.mjs 8080
//
// Wire format (the chapter's): the text of a chat message is published as
// is on the channel `chat_messages`. As in the chapter, a message from a
// local client is only published; local clients get it when it comes back
// through the subscription, like everyone else's. Two connections: one
// subscribes, one publishes (a subscribed connection cannot publish).
import { createClient } from 'redis';
import { parseFlags, port, fail } from './args.mjs';
import { chatServer, ready } from './http.mjs';

const CHANNEL = 'chat_messages';

const flags = parseFlags(process.argv.slice(2), [], []);
if (flags.positional.length !== 1) fail('usage: redis-chat.mjs HTTP_PORT');
const httpPort = port(flags.positional[0], 'HTTP_PORT');
const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379';

const subscriber = createClient({ url });
const publisher = createClient({ url });
for (const client of [subscriber, publisher]) {
  // A lost server ends the peer: the test that runs it then fails visibly.
  client.on('error', (e) => fail(`redis ${url}: ${e.message}`));
}
await Promise.all([subscriber.connect(), publisher.connect()]);

const chat = chatServer((text) => {
  publisher.publish(CHANNEL, text).catch((e) => fail(`publish: ${e.message}`));
});
await subscriber.subscribe(CHANNEL, (text) => chat.broadcast(text));
await chat.listen(httpPort);
ready(httpPort);
