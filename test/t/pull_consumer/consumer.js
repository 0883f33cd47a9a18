// A pull consumer for test/t/100_pull_consumers.pl (and test/bench/pull.sh):
// takes batches of a pull destination with outbox.next_batch(), records
// each event in public.pull_acked in the transaction that calls
// outbox.finish_batch(), so an event is recorded once per finished batch.
//
//   node consumer.js NAME DESTINATION TOTAL [STALL_AFTER] [BATCH] [LEASE]
//
// Connection from PGHOST/PGPORT/PGDATABASE/PGUSER.  Exits once
// public.pull_acked has TOTAL rows.  With STALL_AFTER > 0 it takes batch
// number STALL_AFTER, prints "stalled <batch id>" and never finishes it
// (the test kills it then).  A batch whose lease ended meanwhile cannot be
// finished (55000): its transaction rolls back and the batch's events come
// again to whoever takes it.
'use strict';
const { Client } = require('pg');

const [name, destination, totalArg, stallArg, batchArg, leaseArg] = process.argv.slice(2);
const total = Number(totalArg);
const stallAfter = Number(stallArg || 0);
const batchSize = Number(batchArg || 500);
const lease = leaseArg || '5 seconds';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const c = new Client();
  await c.connect();
  let batches = 0;
  let lost = 0;
  let taken = 0;
  for (;;) {
    const r = await c.query('SELECT * FROM outbox.next_batch($1, $2, $3::interval)',
      [destination, batchSize, lease]);
    if (r.rows.length === 0) {
      const n = await c.query('SELECT count(*)::int AS n FROM public.pull_acked');
      if (n.rows[0].n >= total) break;
      await sleep(5);
      continue;
    }
    batches++;
    taken += r.rows.length;
    const batchId = r.rows[0].batch_id;
    if (stallAfter > 0 && batches === stallAfter) {
      console.log(`stalled ${batchId}`);
      await new Promise(() => {});
    }
    try {
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO public.pull_acked (event_id, aggregate_id, seq, consumer, batch_id)
         SELECT e, a, s, $4, $5 FROM unnest($1::uuid[], $2::text[], $3::int[]) AS u(e, a, s)`,
        [r.rows.map((x) => x.event_id), r.rows.map((x) => x.aggregate_id),
          r.rows.map((x) => Number(x.payload.seq)), name, batchId]);
      await c.query('SELECT outbox.finish_batch($1)', [batchId]);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK');
      lost++;
      console.log(`batch ${batchId} not finished: ${e.message}`);
    }
  }
  console.log(`done ${name} batches=${batches} taken=${taken} unfinished=${lost}`);
  await c.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
