// Emit an event in the same transaction as the business write, with
// database/sql and lib/pq.  The order and its event commit together or not
// at all.
//
// Connection: the usual libpq environment variables (PGHOST, PGPORT, PGUSER,
// PGDATABASE, PGPASSWORD), which lib/pq reads too.  The role needs INSERT on
// public.orders and EXECUTE on outbox.emit (README, "Grants for your
// application role").
//
//	go run . <customer> <total>
package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	_ "github.com/lib/pq"
)

func placeOrder(db *sql.DB, customer, total string) (orderID int64, eventID string, err error) {
	tx, err := db.Begin()
	if err != nil {
		return 0, "", err
	}
	defer tx.Rollback() // a no-op after Commit; otherwise neither row stays

	if err = tx.QueryRow(`INSERT INTO public.orders (customer, total) VALUES ($1, $2) RETURNING id`,
		customer, total).Scan(&orderID); err != nil {
		return 0, "", err
	}
	payload, _ := json.Marshal(map[string]any{
		"order_id": orderID, "customer": customer, "total": total, "client": "go"})
	if err = tx.QueryRow(`SELECT outbox.emit('orders', 'order.created', $1::jsonb, $2)`,
		string(payload), strconv.FormatInt(orderID, 10)).Scan(&eventID); err != nil {
		return 0, "", err
	}
	return orderID, eventID, tx.Commit()
}

func main() {
	customer, total := "carol", "99.90"
	if len(os.Args) > 2 {
		customer, total = os.Args[1], os.Args[2]
	}
	db, err := sql.Open("postgres", "") // everything from the environment
	if err != nil {
		fmt.Fprintln(os.Stderr, "go:", err)
		os.Exit(1)
	}
	defer db.Close()
	orderID, eventID, err := placeOrder(db, customer, total)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go:", err)
		os.Exit(1)
	}
	fmt.Printf("go: order %d committed with event %s\n", orderID, eventID)
}
