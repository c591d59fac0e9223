"""dback-redis: several dback processes sharing one event stream and one snapshot in Redis."""
