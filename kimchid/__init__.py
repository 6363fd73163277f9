"""kimchid: the kimchi daemon."""
