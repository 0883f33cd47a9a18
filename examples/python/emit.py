#!/usr/bin/python3
"""Emit an event in the same transaction as the business write, with psycopg2.

The order and its event commit together or not at all.  Connection: the
usual libpq environment variables (PGHOST, PGPORT, PGUSER, PGDATABASE,
PGPASSWORD).  The role needs INSERT on public.orders and EXECUTE on
outbox.emit (README, "Grants for your application role").

    python3 emit.py <customer> <total>
"""
import sys

import psycopg2
from psycopg2.extras import Json


def place_order(conn, customer, total):
    # "with conn" is one transaction: COMMIT at the end, ROLLBACK on an
    # exception (neither the order nor its event then).
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO public.orders (customer, total) VALUES (%s, %s) RETURNING id",
                    (customer, total))
        (order_id,) = cur.fetchone()
        cur.execute("SELECT outbox.emit('orders', 'order.created', %s, %s)",
                    (Json({"order_id": order_id, "customer": customer, "total": total,
                           "client": "python"}), str(order_id)))
        (event_id,) = cur.fetchone()
    return order_id, event_id


def main():
    customer = sys.argv[1] if len(sys.argv) > 1 else "bob"
    total = sys.argv[2] if len(sys.argv) > 2 else "17.50"
    conn = psycopg2.connect("")   # everything from the environment
    try:
        order_id, event_id = place_order(conn, customer, total)
        print(f"python: order {order_id} committed with event {event_id}")
    finally:
        conn.close()


if __name__ == "__main__":
    main()
