// A Lambda Invoke endpoint that answers every invocation at once with `null`, in its own
// process: what the coordinator sees of Lambda when functions are instant. For bench/dispatch.ts.
import { createServer } from 'node:http';

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 4 });
    res.end('null');
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.send?.(server.address().port));
