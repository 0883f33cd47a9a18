-- The capture variant: outbox_saga's C trigger, attached the documented way.
-- Separate from setup.sql so that the other variants run without it.
\set ON_ERROR_STOP 1
SELECT outbox.capture_table('public.orders_capture', topic => 'orders');
