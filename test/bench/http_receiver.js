// The webhook receiver of make bench's http section (test/bench/http.sh).
//
// A plain Node.js HTTP/1.1 server on 127.0.0.1 with keep-alive: it reads
// each request's body and answers 200 "ok", after the delay in seconds of
// the query parameter `delay` (?delay=0.005) when there is one.  Nothing is
// parsed, checked or logged: the section measures what the dispatcher
// delivers per second, and with the tests' receiver (test/lib/
// webhook_receiver.py: Python, a thread per connection, every request parsed
// and logged) it measured that receiver (about 3,000 requests/s on two
// cores shared with the server).
//
//     node http_receiver.js --port-file FILE [--lifetime SECONDS]
//
// It takes a free port and writes it to FILE once it listens (atomically:
// a temporary file renamed), and ends after --lifetime seconds (default
// 600), on SIGTERM or SIGINT, or when its parent process is gone.
'use strict';

const fs = require('fs');
const http = require('http');

function option(name, fallback) {
	const i = process.argv.indexOf(name);
	return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const portFile = option('--port-file', null);
const lifetime = Number(option('--lifetime', '600'));
if (!portFile || !(lifetime > 0)) {
	process.stderr.write('usage: node http_receiver.js --port-file FILE [--lifetime SECONDS]\n');
	process.exit(2);
}

function answer(res) {
	res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '2' });
	res.end('ok');
}

const server = http.createServer((req, res) => {
	const q = req.url.indexOf('?');
	const delay = q < 0 ? 0 : Number(new URLSearchParams(req.url.slice(q + 1)).get('delay')) || 0;
	req.on('data', () => {});
	req.on('end', () => {
		if (delay > 0)
			setTimeout(answer, delay * 1000, res);
		else
			answer(res);
	});
});
// The dispatcher keeps its connections open between batches.
server.keepAliveTimeout = 120000;
server.headersTimeout = 125000;
server.listen(0, '127.0.0.1', () => {
	fs.writeFileSync(portFile + '.tmp', String(server.address().port));
	fs.renameSync(portFile + '.tmp', portFile);
});

// process.ppid is read once, at start: ask the kernel whether the parent
// is still there (EPERM: it is, and runs as another user, e.g. runuser).
const parent = process.ppid;
setInterval(() => {
	try {
		process.kill(parent, 0);
	} catch (e) {
		if (e.code === 'ESRCH')
			process.exit(0);
	}
}, 1000).unref();
setTimeout(() => process.exit(0), lifetime * 1000).unref();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
