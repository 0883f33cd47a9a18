// Emit an event in the same transaction as the business write, with the
// `pg` client.  The order and its event commit together or not at all: a
// consumer never hears of an order that does not exist.
//
// Connection: the usual libpq environment variables (PGHOST, PGPORT,
// PGUSER, PGDATABASE, PGPASSWORD).  The role needs INSERT on public.orders
// and EXECUTE on outbox.emit (README, "Grants for your application role").
//
//   node emit.js <customer> <total>
'use strict';
const { Client } = require('pg');

async function placeOrder(client, customer, total) {
  await client.query('BEGIN');
  try {
    const { rows: [order] } = await client.query(
      'INSERT INTO public.orders (customer, total) VALUES ($1, $2) RETURNING id',
      [customer, total]);
    const { rows: [event] } = await client.query(
      "SELECT outbox.emit('orders', 'order.created', $1::jsonb, $2) AS event_id",
      // (pg returns a bigint as a string: no precision is lost)
      [JSON.stringify({ order_id: order.id, customer, total, client: 'node' }), String(order.id)]);
    await client.query('COMMIT');
    return { orderId: order.id, eventId: event.event_id };
  } catch (err) {
    await client.query('ROLLBACK');   // neither the order nor its event
    throw err;
  }
}

async function main() {
  const [customer = 'alice', total = '42.00'] = process.argv.slice(2);
  const client = new Client();
  await client.connect();
  try {
    const { orderId, eventId } = await placeOrder(client, customer, total);
    console.log(`node: order ${orderId} committed with event ${eventId}`);
  } finally {
    await client.end();
  }
}

main().catch((err) => {
  console.error(`node: ${err.message}`);
  process.exit(1);
});
