-- The status scheduler's set-based transitions find due buys by status and
-- flight time without scanning the table: (status, flight_start) exists since
-- migration 6 (media_buys_status_idx); this adds (status, flight_end).
CREATE INDEX media_buys_status_flight_end_idx ON media_buys (status, flight_end);
