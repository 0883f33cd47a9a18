// Emit an event in the same transaction as the business write, from a Spring
// service (Spring Boot with spring-boot-starter-jdbc and the PostgreSQL JDBC
// driver; Jackson for the payload).  Not run by `make test`: an example to
// copy.
//
// @Transactional makes the INSERT and outbox.emit one transaction: the order
// and its event commit together or not at all.  Call placeOrder through the
// Spring bean (a call from inside the same class bypasses the proxy and so
// the transaction).  The role needs INSERT on public.orders and EXECUTE on
// outbox.emit (README, "Grants for your application role").
package com.example.orders;

import java.math.BigDecimal;
import java.util.Map;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.stereotype.Service;
import org.springframework.transaction.annotation.Transactional;

@Service
public class OrderService {

    private final JdbcTemplate jdbc;
    private final ObjectMapper json;

    public OrderService(JdbcTemplate jdbc, ObjectMapper json) {
        this.jdbc = jdbc;
        this.json = json;
    }

    /** Inserts the order and its order.created event; returns the event id. */
    @Transactional
    public String placeOrder(String customer, BigDecimal total) {
        Long orderId = jdbc.queryForObject(
                "INSERT INTO public.orders (customer, total) VALUES (?, ?) RETURNING id",
                Long.class, customer, total);
        String payload;
        try {
            payload = json.writeValueAsString(
                    Map.of("order_id", orderId, "customer", customer, "total", total, "client", "java"));
        } catch (JsonProcessingException e) {
            // unchecked, so that @Transactional rolls the order back too
            throw new IllegalStateException("cannot serialize the event", e);
        }
        return jdbc.queryForObject(
                "SELECT outbox.emit('orders', 'order.created', ?::jsonb, ?)::text",
                String.class, payload, orderId.toString());
    }
}
