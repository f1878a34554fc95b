// The HTTP side both peers share: a plain page at every path (the tests only
// need the WebSocket) and a WebSocket server on the same port, as in the
// chapter, where the chat page and the socket share one server.
import http from 'node:http';
import { WebSocketServer } from 'ws';

// Chat messages are short; a bound keeps a stray client from making the
// peer buffer an arbitrary frame.
const MAX_MESSAGE = 1 << 20;

export function chatServer(onMessage) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('a wire-compatibility peer of topo\n');
  });
  const wss = new WebSocketServer({ server, maxPayload: MAX_MESSAGE });
  wss.on('connection', (ws) => {
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => {
      if (!isBinary) onMessage(data.toString());
    });
  });
  const broadcast = (text) => {
    for (const client of wss.clients) {
      if (client.readyState === client.OPEN) client.send(text);
    }
  };
  const listen = (port) =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
  return { broadcast, listen };
}

/** The one line the tests wait for: every socket of the peer is set up. */
export function ready(port) {
  process.stdout.write(`ready http=${port}\n`);
}
