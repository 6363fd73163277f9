"""kimchi worker processes: run the long jobs queued by kimchid."""
