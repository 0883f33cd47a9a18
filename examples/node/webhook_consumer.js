// A webhook receiver for an outbox_saga `http` destination that verifies
// every request with the official Standard Webhooks library before it
// trusts it: `webhook-signature` is an HMAC-SHA256 of
// "<webhook-id>.<webhook-timestamp>.<body>" with the destination's secret,
// and the timestamp must be within five minutes.  A request that fails is
// answered 400 and ignored.  Delivery is at least once: deduplicate on
// `webhook-id` (the event's event_id, the same on every attempt).
//
//   WEBHOOK_SECRET=whsec_... node webhook_consumer.js [port]
//
// It prints "listening on <port>" (port 0: any free port), then one line per
// request: "verified <webhook-id> <type> <data as JSON>" or "rejected: why".
'use strict';
const http = require('http');
const { Webhook } = require('standardwebhooks');

const webhook = new Webhook(process.env.WEBHOOK_SECRET);   // "whsec_..." as configured
const seen = new Set();                                     // use a table in real life

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');   // the raw body, unparsed
    let event;
    try {
      event = webhook.verify(body, req.headers);
    } catch (err) {
      console.log(`rejected: ${err.message}`);
      res.writeHead(400).end();
      return;
    }
    const id = req.headers['webhook-id'];
    if (!seen.has(id)) {
      seen.add(id);
      console.log(`verified ${id} ${event.type} ${JSON.stringify(event.data)}`);
    }
    res.writeHead(204).end();   // any 2xx: delivered
  });
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
