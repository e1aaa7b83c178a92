// node dist-bench/src/fcgi-min.js PORT — the minimal FastCGI authorizer of the Apache benchmark's `fcgi-min`
// variant: answers every check "Status: 200" without looking at it, so its run measures what mod_authnz_fcgi
// itself costs (a TCP connection per check, the FastCGI exchange), the ceiling for plexer authd.
//
// The answer goes out at the end of PARAMS: mod_authnz_fcgi sends no STDIN to an authorizer (the responder
// owns the request body), so waiting for one would hang every check. The connection is closed after the
// answer, as mod_authnz_fcgi never sets FCGI_KEEP_CONN.
import net from 'node:net';
import { encodeEndRequest, encodeStream, ProtocolStatus, RecordDecoder, RecordType } from '../../dist/fastcgi/protocol.js';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('usage: fcgi-min.js PORT\n');
  process.exit(2);
}

const ANSWER = Buffer.from('Status: 200\r\n\r\n');

const server = net.createServer((socket) => {
  const decoder = new RecordDecoder();
  socket.on('data', (chunk: Buffer) => {
    let records;
    try {
      records = decoder.push(chunk);
    } catch {
      return socket.destroy(); // not FastCGI 1.0: nothing to answer
    }
    for (const r of records) {
      if (r.type === RecordType.Params && r.content.length === 0) {
        socket.end(
          Buffer.concat([
            ...encodeStream(RecordType.Stdout, r.requestId, ANSWER),
            encodeEndRequest(r.requestId, 0, ProtocolStatus.RequestComplete),
          ]),
        );
      }
    }
  });
  socket.on('error', () => socket.destroy());
});
server.listen(port, '127.0.0.1', () => process.stderr.write(`fcgi-min listening on 127.0.0.1:${port}\n`));
