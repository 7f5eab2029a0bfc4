"""Traffic replay: drive the live service with a shift scenario, labels later, and record
what the monitor saw."""
