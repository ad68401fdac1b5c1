"""Everything that talks to model servers: backend kinds and their HTTP clients, endpoint pools,
health, breakers, GPU slots, and what replicas share through Redis."""
