-- The W3C trace context (traceparent, tracestate) of the sync that produced an event, so the
-- relay can put it in the event's AMQP headers whichever worker publishes it.
ALTER TABLE events ADD COLUMN trace_context json;
